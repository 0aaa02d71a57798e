"""Training continued from a trained artifact (`train.init_from`): the model a continued run
starts from answers exactly as the artifact does, trains, and saves a loadable artifact; for
encoder LoRA and full fine-tuning and for causal LoRA SFT and full pretraining."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tasks.data.load import DataSpec, load
from tasks.models import artifacts
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizeSpec, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import load_tokenizer as load_causal_tokenizer
from tasks.training.causal.runner import prepare_model as prepare_causal
from tasks.training.causal.runner import train_causal
from tasks.training.encoder.runner import count_parameters, prepare_model, train_classifier
from tests.conftest import EXAMPLE_DATA
from tests.methods.test_causal_methods import data_spec

SPEC = TrainSpec(max_steps=3, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0)
TEXTS = ["a lovely film", "an awful meal", "the staff were great", "poor service"]


@pytest.mark.parametrize(
    "name, settings",
    [("lora", {"r": 2, "lora_alpha": 4, "target_modules": ["query", "value"]}), ("full", {})],
)
def test_classifier_continues_from_artifact(
    name: str, settings: dict, tiny_encoder: Path, tmp_path: Path
) -> None:
    labels = ["negative", "positive"]
    data = load(DataSpec(train=str(EXAMPLE_DATA / "train"), eval=str(EXAMPLE_DATA / "eval.jsonl")))
    base = BaseModelSpec(path=str(tiny_encoder))
    tok = tokenize(data, base, TokenizeSpec(max_length=64))
    method = METHODS[name].config(**settings)
    first = train_classifier(tok, base, method, SPEC, labels, 64, tmp_path / "v1")

    trained, tokenizer, _ = artifacts.load_classifier(first.path)
    expected = artifacts.predict_proba(trained, tokenizer, TEXTS, 64)
    start = prepare_model(base, method, labels, seed=7, steps=3, init=first.path)
    start.eval()
    assert count_parameters(start)[0] > 0, "nothing to train"
    got = artifacts.predict_proba(start, tokenizer, TEXTS, 64)
    assert got == pytest.approx(expected, abs=1e-6)  # v1's weights, not the base's
    # and the base's are not v1's: compared weight by weight (three small steps can move the
    # predictions of a tiny encoder by less than any tolerance a prediction check could use)
    fresh = prepare_model(base, method, labels, seed=7, steps=3)
    v1_weights = dict(start.named_parameters())
    differ = [
        n
        for n, w in fresh.named_parameters()
        if w.requires_grad and not torch.equal(w, v1_weights[n])
    ]
    # ...beyond the classifier head (initialised from another seed): v1 trained the encoder side
    # (LoRA's B matrices start at zero; full fine-tuning moves the base weights)
    encoder_side = [n for n in differ if "classifier" not in n]
    assert encoder_side, f"v1 differs from the base only in its head: {differ}"

    second = train_classifier(
        tok, base, method, SPEC, labels, 64, tmp_path / "v2", None, first.path
    )
    assert second.steps == 3 and math.isfinite(second.train_loss)
    model, _, manifest = artifacts.load_classifier(second.path)
    assert manifest["kind"] == first.artifact
    assert artifacts.predict_proba(model, tokenizer, TEXTS, 64) != pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "name, kind, fmt, settings",
    [
        ("sft", "alpaca", "alpaca", {"r": 4, "lora_alpha": 8}),
        ("pretrain", "corpus", "text", {"weights": "full"}),
    ],
)
def test_causal_continues_from_artifact(
    name: str, kind: str, fmt: str, settings: dict, tiny_causal_lm: Path, tmp_path: Path
) -> None:
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS[name].config(**settings)
    data = load(data_spec(kind, fmt))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    spec = SPEC.model_copy(update={"batch_size": 4, "eval_loss_points": 0})
    first = train_causal(tok, base, method, spec, data.format, 96, tmp_path / "v1")

    trained, tokenizer, _ = artifacts.load_causal(first.path)
    ids = torch.tensor([tokenizer("the river in Ashford")["input_ids"]])
    with torch.inference_mode():
        expected = trained(input_ids=ids).logits
    start = prepare_causal(base, method, load_causal_tokenizer(base), 7, 3, first.path)
    start.eval()
    assert count_parameters(start)[0] > 0, "nothing to train"
    with torch.inference_mode():
        assert torch.allclose(start(input_ids=ids).logits, expected, atol=1e-5)

    second = train_causal(
        tok, base, method, spec, data.format, 96, tmp_path / "v2", None, first.path
    )
    assert second.steps == 3 and math.isfinite(second.train_loss)
    model, _, manifest = artifacts.load_causal(second.path)
    assert manifest["kind"] == first.artifact
    with torch.inference_mode():
        assert not torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
