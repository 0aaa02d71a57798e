"""Every classification method in the registry, trained a few steps on a tiny encoder."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tasks.data.load import DataSpec, load
from tasks.models import artifacts
from tasks.models.artifacts import save_artifact
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizeSpec, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.encoder.runner import (
    count_parameters,
    fit_method,
    prepare_model,
    train_classifier,
)
from tests.conftest import EXAMPLE_DATA

# Method-specific settings that make a few steps on a tiny model meaningful.
CONFIGS: dict[str, dict] = {
    "probe": {"max_iter": 200},
    "last_layers": {"n_layers": 1},
    "full": {},
    "lora": {"r": 2, "lora_alpha": 4, "target_modules": ["query", "value"]},
    "adalora": {"init_r": 4, "target_r": 2, "tinit": 0.0, "tfinal": 0.25},
    "ia3": {},
    "prefix_tuning": {"num_virtual_tokens": 4},
    "prompt_tuning": {"num_virtual_tokens": 4},
}


CLASSIFIERS = sorted(n for n, spec in METHODS.items() if "classification" in spec.tasks)


def test_matrix_covers_every_registered_method() -> None:
    assert set(CONFIGS) == set(CLASSIFIERS)


@pytest.fixture()
def tokenized(tiny_encoder: Path):
    data = load(
        DataSpec(
            train=str(EXAMPLE_DATA / "train"),
            eval=str(EXAMPLE_DATA / "eval.jsonl"),
            labels=["negative", "positive"],
        )
    )
    base = BaseModelSpec(path=str(tiny_encoder))
    return data, base, tokenize(data, base, TokenizeSpec(max_length=64))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_method_trains_changes_only_trainable_params_and_loads_back(
    name: str, tokenized, tmp_path: Path
) -> None:
    data, base, tok = tokenized
    method = METHODS[name].config(**CONFIGS[name])
    model = prepare_model(base, method, data.labels, seed=0, steps=4)
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = TrainSpec(max_steps=4, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    stats = fit_method(model, tokenizer, tok, method, spec, tmp_path, 64)
    if METHODS[name].fit is None:
        assert stats.steps == 4
    assert math.isfinite(stats.train_loss)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed, "no parameter changed"
    assert changed <= trainable_names, f"frozen parameters changed: {changed - trainable_names}"

    manifest = {
        "task": "classification",
        "kind": METHODS[name].artifact,
        "method": method.model_dump(),
        "labels": data.labels,
        "max_length": 64,
        "base": {"path": str(base.path), "kind": "local"},
    }
    target = tmp_path / "artifact"
    save_artifact(model, tokenizer, target, manifest, base, stats.history)
    loaded, loaded_tok, _ = artifacts.load_classifier(target)
    texts = ["a wonderful evening", "a dreadful evening"]
    model.eval()
    expected = artifacts.predict_proba(model, tokenizer, texts, 64)
    got = artifacts.predict_proba(loaded, loaded_tok, texts, 64)
    assert got.shape == (2, 2)
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-5)


def test_train_classifier_reports_its_figures(tokenized, tmp_path: Path) -> None:
    data, base, tok = tokenized
    result = train_classifier(
        tok,
        base,
        METHODS["lora"].config(**CONFIGS["lora"]),
        TrainSpec(max_steps=3, batch_size=8),
        data.labels,
        64,
        tmp_path,
    )
    assert result.steps == 3 and result.artifact == "adapter"
    assert 0 < result.trainable_share < 1
    assert 0 <= result.padding_share < 1 and result.tokens_per_second > 0
    assert (Path(result.path) / "tuneline.json").is_file()
    assert not list(tmp_path.glob(".*partial")), "staging folder left behind"
