"""The base model's side of a causal evaluation is measured once per base model, eval data and
settings, and read back on the next run; other eval data is measured afresh."""

from __future__ import annotations

import json
from pathlib import Path

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
