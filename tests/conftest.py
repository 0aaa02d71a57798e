"""Shared fixtures: an isolated TUNELINE_HOME per test, a tiny encoder built locally, example data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DATA = REPO / "deployments" / "data" / "sentiment"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True)
def tuneline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TUNELINE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def example_rows() -> dict[str, list[dict]]:
    return {
        "train": read_jsonl(EXAMPLE_DATA / "train.jsonl"),
        "eval": read_jsonl(EXAMPLE_DATA / "eval.jsonl"),
    }


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory, example_rows: dict) -> Path:
    from tasks.tiny import build_tiny_encoder

    texts = [r["text"] for r in example_rows["train"] + example_rows["eval"]]
    return build_tiny_encoder(tmp_path_factory.mktemp("models") / "tiny-bert", texts)


@pytest.fixture()
def tiny_recipe(tmp_path: Path, tiny_encoder: Path, example_rows: dict) -> Path:
    """A recipe file for the tiny encoder on the example data, a few optimiser steps."""
    write_jsonl(tmp_path / "data" / "train.jsonl", example_rows["train"])
    write_jsonl(tmp_path / "data" / "eval.jsonl", example_rows["eval"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: tiny-sentiment
base_model: {{path: {tiny_encoder}}}
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
  labels: [negative, positive]
tokenize: {{max_length: 64}}
method: {{name: lora, r: 4, lora_alpha: 8, target_modules: [query, value]}}
train: {{max_steps: 6, batch_size: 16, learning_rate: 5.0e-3}}
register: {{gate: {{metric: accuracy, beat_base: false}}}}
"""
    )
    return recipe
