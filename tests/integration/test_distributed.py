"""`train.distributed` runs training under `accelerate launch` with 2 processes (DDP over gloo on
CPU): the same number of optimiser steps as one process (the batch is global), a finite loss,
and one registered version (rank 0 alone writes, the flow alone registers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_run_cli import registered_versions, tuneline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]


def run_json(*args: str) -> dict:
    proc = tuneline("run", *args, "--json")
    # 3: registered, not promoted (one epoch can leave a classifier on one class, which the gate
    # never promotes); these tests are about training and registering
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-8000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_classification_on_two_processes(keyword_recipe: Path) -> None:
    outcome = run_json(
        str(keyword_recipe),
        "--set",
        "train.distributed.processes=2",
        "--set",
        "train.max_steps=-1",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=16",
    )
    assert outcome["train"]["steps"] == math.ceil(240 / 16)  # one process takes the same
    assert math.isfinite(outcome["train"]["train_loss"])
    assert len(registered_versions("keyword-classifier")) == 1


def test_sft_on_two_processes() -> None:
    outcome = run_json(
        str(REPO / "deployments" / "assistant-sft-chat.yaml"),
        "--set",
        "train.distributed.processes=2",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "evaluate.generation_rows=4",
        "--set",
        "register.gate.beat_base=false",
    )
    assert outcome["train"]["steps"] == math.ceil(480 / 16)
    assert math.isfinite(outcome["train"]["train_loss"])
    assert len(registered_versions("assistant-sft-chat")) == 1
