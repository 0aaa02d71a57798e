"""Every causal-LM method in the registry, trained a few steps on a tiny causal LM built
locally: finite loss, only trainable parameters change, and the saved artifact loads back and
generates (or scores) exactly as the trained model does."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from tasks.data.load import DataSpec, load
from tasks.models import artifacts
from tasks.models.artifacts import save_artifact
from tasks.models.base import BaseModelSpec
from tasks.models.inference import generate, reward_scores
from tasks.tokenization.encoding import TokenizeSpec, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import (
    count_parameters,
    fit,
    load_tokenizer,
    prepare_model,
    train_causal,
)
from tests.conftest import ASSISTANT_DATA, wait_for_file, work_that_sleeps

CAUSAL = sorted(n for n, spec in METHODS.items() if "causal-lm" in spec.tasks)

# (data files, format, method settings) per method; each data format appears at least once.
CASES: dict[str, tuple[str, str, dict]] = {
    "pretrain": ("corpus", "text", {"weights": "full"}),
    "sft": ("alpaca", "alpaca", {"r": 4, "lora_alpha": 8}),
    "dpo": ("hh", "preference", {"r": 4, "lora_alpha": 8}),
    "kto": ("preference", "preference", {"r": 4, "lora_alpha": 8}),
    "reward": ("preference", "preference", {"weights": "full"}),
    "rlhf": ("prompt_completion", "prompt-completion", {"num_generations": 2}),
}
FIELDS = {"hh": {"chosen": "conversation_a", "rejected": "conversation_b"}}


def test_matrix_covers_every_causal_method() -> None:
    assert set(CASES) == set(CAUSAL)


def data_spec(kind: str, fmt: str) -> DataSpec:
    if kind == "corpus":
        return DataSpec(
            train=str(ASSISTANT_DATA / "corpus"),
            eval=str(ASSISTANT_DATA / "eval.corpus.txt"),
            format="text",
        )
    return DataSpec(
        train=str(ASSISTANT_DATA / f"train.{kind}.jsonl"),
        eval=str(ASSISTANT_DATA / f"eval.{kind}.jsonl"),
        format=fmt,
        fields=FIELDS.get(kind, {}),
    )


SPEC = TrainSpec(max_steps=3, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def reward_artifact(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model trained two steps, for the rlhf case to score with."""
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["reward"].config(weights="full")
    data = load(data_spec("preference", "preference"))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    out = tmp_path_factory.mktemp("reward")
    spec = TrainSpec(max_steps=2, batch_size=4, eval_loss_points=0)
    return Path(train_causal(tok, base, method, spec, data.format, 96, out).path)


# rlhf samples completions and trains a reward model first: the slow tier
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "rlhf" else n for n in CAUSAL]
)
def test_causal_method_trains_and_loads_back(
    name: str, tiny_causal_lm: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kind, fmt, settings = CASES[name]
    if name == "rlhf":
        settings = {**settings, "reward_model": str(request.getfixturevalue("reward_artifact"))}
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS[name].config(**settings)
    data = load(data_spec(kind, fmt))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    tokenizer = load_tokenizer(base)
    model = prepare_model(base, method, tokenizer, seed=0, steps=3)
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    stats = fit(model, tokenizer, tok, method, SPEC, tmp_path, 96, base)

    assert stats.steps == 3
    assert math.isfinite(stats.train_loss)
    # (DPO adds a frozen "ref" copy of the adapter while training: only the original ones count)
    now = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], now[n].detach())}
    trainable_names = {n for n in before if now[n].requires_grad}
    assert changed, "no parameter changed"
    assert changed <= trainable_names, f"frozen parameters changed: {changed - trainable_names}"

    objective = METHODS[name].objective
    manifest = {
        "task": "causal-lm",
        "kind": "adapter" if method.weights == "lora" else "weights",
        "objective": objective,
        "method": method.model_dump(),
        "max_length": 96,
        "base": {"path": str(base.path), "kind": "local"},
    }
    target = tmp_path / "artifact"
    save_artifact(model, tokenizer, target, manifest, base, stats.history)
    loaded, loaded_tok, _ = artifacts.load_causal(target)
    model.eval()
    texts = ["Give the opposite of this word.\nhot\n", "Tell me about the river in Ashford.\n"]
    if objective == "score":
        expected = reward_scores(model, tokenizer, texts, 96, 2)
        got = reward_scores(loaded, loaded_tok, texts, 96, 2)
        assert got == pytest.approx(expected, abs=1e-4)
    else:
        ids = tokenizer(texts[0], return_tensors="pt")
        with torch.inference_mode():
            expected_logits = model(**ids).logits
            got_logits = loaded(**ids).logits
        assert torch.allclose(expected_logits, got_logits, atol=1e-4)
        answers = generate(loaded, loaded_tok, texts, 5, 96, 2)
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_train_causal_reports_its_figures(tiny_causal_lm: Path, tmp_path: Path) -> None:
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["sft"].config(weights="lora", r=4, packing=False)
    data = load(data_spec("chat", "chat"))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    result = train_causal(tok, base, method, SPEC, data.format, 96, tmp_path)
    assert result.steps == 3 and result.artifact == "adapter"
    assert 0 < result.trainable_share < 1
    assert 0 <= result.padding_share < 1 and result.tokens_per_second > 0
    # the PyTorch threads it trained with (logged to MLflow with the other figures)
    assert 1 <= result.extra["torch_threads"] <= torch.get_num_threads()
    # the steps alone, as the trainer times them: inside the whole train() call
    assert 0 < result.extra["train_loop_seconds"] <= result.train_seconds
    manifest = artifacts.read_manifest(result.path)
    assert manifest["prompt_style"] == "chat" and manifest["objective"] == "lm"
    assert (Path(result.path) / "base" / "config.json").is_file(), "a local base travels along"
    assert not list(tmp_path.glob(".*partial")), "staging folder left behind"


def test_training_stops_the_work_ahead_first(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """Work ahead still running when training begins (the base model's answers on a busy
    machine) is stopped before the steps: training takes every core, and no stage later waits
    on a process other jobs starve. Its cleanup runs; the stage that reads its cache does the
    rest."""
    import time

    from tasks.core.ahead import ahead
    from tasks.training.launch import train

    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["sft"].config(weights="lora", r=4, packing=False)
    data = load(data_spec("chat", "chat"))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    with ahead(work_that_sleeps(started, stopped)) as pid:
        assert pid is not None
        wait_for_file(started)
        began = time.time()
        result = train(
            tok, base, method, SPEC, tmp_path / "out", None, data_format=data.format, max_length=96
        )
        assert stopped.exists(), "training ran beside the work ahead"  # it slept for 120 s
        assert float(stopped.read_text()) >= began
        with pytest.raises(ChildProcessError):  # reaped by training, not left to the block
            os.waitpid(pid, os.WNOHANG)
    assert result.steps == 3


def test_labelled_positions_only_changes_cost_not_results(tiny_causal_lm: Path) -> None:
    """trl's fused LM head restricted to labelled positions on CPU: same loss, gradients and
    metrics as its every-position path (and the switch really is on inside the context)."""
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils

    from tasks.training.causal.lm_head import labelled_positions_only

    cpu = torch.device("cpu")
    assert not trl_utils._use_triton(cpu)  # trl's own choice on CPU: every position
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (4, 40), generator=generator)
    labels = ids.clone()
    labels[:, :30] = -100  # a prompt
    labels[0, 35:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[0, 35:] = 0

    def run() -> tuple[torch.Tensor, ...]:
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return out.loss.detach(), out.entropy.detach(), out.is_top1.detach(), grads

    every = run()
    with labelled_positions_only():
        assert trl_utils._use_triton(cpu)
        labelled = run()
    assert not trl_utils._use_triton(cpu)  # restored
    for a, b in zip(every, labelled, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)
