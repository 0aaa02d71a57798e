"""The base model's side of a causal evaluation is measured once per base model, eval data and
settings, and read back on the next run; other eval data is measured afresh."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks.core import settings
from tasks.data.load import DataSpec, load
from tasks.evaluation.causal import evaluate_causal
from tasks.evaluation.classifier import EvaluateSpec
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizeSpec, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import train_causal
from tests.conftest import ASSISTANT_DATA, read_jsonl, write_jsonl


def test_base_side_is_kept_and_reused(tiny_causal_lm: Path, tmp_path: Path) -> None:
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["sft"].config(r=4, lora_alpha=8)
    data = load(
        DataSpec(
            train=str(ASSISTANT_DATA / "train.alpaca.jsonl"),
            eval=str(ASSISTANT_DATA / "eval.alpaca.jsonl"),
            format="alpaca",
        )
    )
    tok = tokenize(data, base, TokenizeSpec(max_length=256), method)
    spec = TrainSpec(max_steps=2, batch_size=4, eval_loss_points=0)
    trained = train_causal(tok, base, method, spec, data.format, 256, tmp_path / "train")
    evaluate = EvaluateSpec(generation_rows=8, max_new_tokens=4, icl_shots=1)

    first = evaluate_causal(trained.path, tok, base, evaluate, 42, tmp_path / "first")
    kept = list(settings.cache_dir("base-eval").glob("*.json"))
    assert len(kept) == 1 and first.base_metrics and first.baselines
    again = evaluate_causal(trained.path, tok, base, evaluate, 42, tmp_path / "again")
    assert again.base_metrics == first.base_metrics
    assert again.baselines == first.baselines
    assert read_jsonl(Path(again.rows_path)) == read_jsonl(Path(first.rows_path))
    assert again.samples == first.samples

    # what is read back is the kept file: a changed one shows through
    side = json.loads(kept[0].read_text())
    side["metrics"]["eval_loss"] = 123.0
    kept[0].write_text(json.dumps(side))
    read_back = evaluate_causal(trained.path, tok, base, evaluate, 42, tmp_path / "read")
    assert read_back.base_metrics["eval_loss"] == 123.0

    # other eval rows: measured afresh, kept beside
    rows = read_jsonl(ASSISTANT_DATA / "eval.alpaca.jsonl")[:-3]
    other = load(
        DataSpec(
            train=str(ASSISTANT_DATA / "train.alpaca.jsonl"),
            eval=str(write_jsonl(tmp_path / "eval.jsonl", rows)),
            format="alpaca",
        )
    )
    other_tok = tokenize(other, base, TokenizeSpec(max_length=256), method)
    fresh = evaluate_causal(trained.path, other_tok, base, evaluate, 42, tmp_path / "other")
    assert fresh.base_metrics["eval_loss"] != 123.0
    assert len(list(settings.cache_dir("base-eval").glob("*.json"))) == 2


def test_what_goes_ahead_is_what_the_stages_read(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tuneline run`'s forked process tokenizes and measures the base before training; the
    stages read exactly that, and the base's figures are those measured after training."""
    from flows.ahead import caches_ahead
    from flows.recipe import load_recipe

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        f"""name: ahead
task: causal-lm
base_model: {{path: "{tiny_causal_lm}"}}
data: {{train: "{ASSISTANT_DATA / "train.alpaca.jsonl"}", eval: "{ASSISTANT_DATA / "eval.alpaca.jsonl"}", format: alpaca}}
tokenize: {{max_length: 256}}
method: {{name: sft, r: 4, lora_alpha: 8}}
train: {{max_steps: 2, batch_size: 4, eval_loss_points: 0}}
evaluate: {{generation_rows: 8, max_new_tokens: 4, icl_shots: 1}}
"""
    )
    recipe = load_recipe(recipe_file, [])
    with caches_ahead(recipe) as pid:
        assert pid is not None
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    data = load(recipe.data, recipe.train.seed)
    tok = tokenize(data, recipe.base_model, recipe.tokenize, recipe.method)
    assert tok.from_cache
    kept = sorted(settings.cache_dir("base-eval").glob("*.json"))
    assert len(kept) == 1
    trained = train_causal(
        tok, recipe.base_model, recipe.method, recipe.train, data.format, 256, tmp_path / "t"
    )
    seed = recipe.train.seed
    read = evaluate_causal(
        trained.path, tok, recipe.base_model, recipe.evaluate, seed, tmp_path / "a"
    )
    assert sorted(settings.cache_dir("base-eval").glob("*.json")) == kept  # read, not measured

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "nothing-ahead"))
    measured = evaluate_causal(
        trained.path, tok, recipe.base_model, recipe.evaluate, seed, tmp_path / "b"
    )
    assert measured.base_metrics == read.base_metrics and measured.base_metrics
    assert measured.baselines == read.baselines
    assert read_jsonl(Path(measured.rows_path)) == read_jsonl(Path(read.rows_path))
