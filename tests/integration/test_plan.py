"""`tuneline plan` against real servers: the plan's figures match what training then does,
planning registers nothing and opens no MLflow run, and `tuneline run` logs the same plan to
MLflow and Prefect with its estimate beside what the run took."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import forkserver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# fractional epochs: 250 rows / batch 16 = 16 batches, half an epoch = 8 optimiser steps
SHORT = ["--set", "train.max_steps=-1", "--set", "train.epochs=0.5"]


def tuneline(*args: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS: one table row a line
    return forkserver.tuneline(*args, env={**os.environ, "COLUMNS": "250"}, timeout=600)


@pytest.fixture()
def servers(mlflow_server: str, prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)


def all_runs() -> list:
    from tasks.services import tracking

    mlc = tracking.client()
    experiments = [e.experiment_id for e in mlc.search_experiments()]
    return mlc.search_runs(experiments) if experiments else []


def prefect_artifacts(api_url: str, flow_run_id: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect reads its settings once, at import (which test collection may have done already)
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in found if a.key}


def test_plan_matches_the_run_and_the_run_records_estimate_against_actual(
    tiny_recipe: Path, tuneline_home: Path, servers: None
) -> None:
    proc = tuneline("plan", str(tiny_recipe), *SHORT, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for label in ("rows", "tokens", "steps", "parameters", "time", "peak memory", "gate"):
        assert label in proc.stdout
    assert "with 62 eval rows the gate can see a gain of >= 9.7 points" in proc.stdout
    plan = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (plan["train_rows"], plan["eval_rows"]) == (250, 62)
    assert (plan["batches_per_epoch"], plan["optimizer_steps"]) == (16, 8)
    assert plan["tokens"]["per_epoch"] > 250 and plan["tokens"]["truncated_share"] == 0
    assert 0 < plan["trainable_params"] < plan["total_params"]
    assert 0 < plan["estimated_train_seconds"] < 600
    assert 0 < plan["estimated_peak_rss_mb"] < 64_000
    assert plan["warmup"]["warmup_steps_timed"] == 3
    # planning trains only in a scratch folder: no run, no model, no run folder, no checkpoint
    assert all_runs() == []
    from tasks.services import tracking

    assert tracking.client().search_registered_models() == []
    assert not (tuneline_home / "runs").exists() and not (tuneline_home / "checkpoints").exists()

    proc = tuneline("run", str(tiny_recipe), *SHORT, "--json")
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    # what the plan said is what training did
    assert outcome["train"]["steps"] == plan["optimizer_steps"]
    assert outcome["train"]["trainable_params"] == plan["trainable_params"]
    assert outcome["train"]["total_params"] == plan["total_params"]

    run = tracking.client().get_run(outcome["mlflow_run_id"])
    params, metrics = run.data.params, run.data.metrics
    assert params["plan.optimizer_steps"] == "8"
    assert params["plan.train_rows"] == "250" and params["plan.eval_rows"] == "62"
    assert metrics["plan.actual_steps"] == 8
    assert metrics["plan.actual_train_seconds"] == pytest.approx(outcome["train"]["train_seconds"])
    assert metrics["plan.estimated_train_seconds"] > 0
    error = metrics["plan.estimated_train_seconds"] / metrics["plan.actual_train_seconds"] - 1
    assert metrics["plan.train_seconds_error"] == pytest.approx(error)
    assert metrics["plan.actual_peak_rss_mb"] == pytest.approx(
        outcome["train"]["extra"]["peak_rss_mb"]
    )
    assert metrics["plan.estimated_peak_rss_mb"] > 0 and "plan.peak_rss_error" in metrics
    logged = tracking.client().download_artifacts(run.info.run_id, "plan")
    saved = json.loads((Path(logged) / "plan.json").read_text())
    assert saved["optimizer_steps"] == 8 and saved["gate"]["eval_rows_used"] == 62
    versus = json.loads((Path(logged) / "plan_vs_actual.json").read_text())
    assert versus["plan.estimated_train_seconds"] == pytest.approx(
        metrics["plan.estimated_train_seconds"]
    )

    artifacts = prefect_artifacts(
        os.environ["PREFECT_API_URL"], run.data.tags["prefect.flow_run_id"]
    )
    assert "8 optimiser steps" in artifacts["training-plan"]
    assert "with 62 eval rows the gate can see" in artifacts["training-plan"]
    assert "| train time |" in artifacts["plan-vs-actual"]


def test_plan_names_unreadable_records(tiny_recipe: Path, tuneline_home: Path) -> None:
    train = tiny_recipe.parent / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    train.write_text("\n".join([*lines[:5], '{"text": "cut short", "label": ', *lines[5:]]) + "\n")
    proc = tuneline("plan", str(tiny_recipe), *SHORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 record(s) could not be read" in proc.stdout
    assert "train.jsonl:6: malformed JSON" in proc.stdout
    assert "tuneline validate" in proc.stdout


def test_a_bad_recipe_gets_the_same_one_line_error_as_run(tiny_recipe: Path) -> None:
    text = tiny_recipe.read_text().replace("batch_size: 16", "batch_sise: 16")
    tiny_recipe.write_text(text)
    planned, ran = tuneline("plan", str(tiny_recipe)), tuneline("run", str(tiny_recipe))
    assert planned.returncode == ran.returncode == 1
    assert planned.stderr == ran.stderr
    assert "batch_sise" in planned.stderr and "Traceback" not in planned.stderr


SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("deployments").glob("*.yaml"))


@pytest.mark.parametrize(
    "recipe",
    # assistant-rlhf plans too, once assistant-reward has a champion to score with
    [p for p in SHIPPED if p.stem != "assistant-rlhf"],
    ids=lambda p: p.stem,
)
def test_every_shipped_recipe_plans(recipe: Path, tuneline_home: Path) -> None:
    from flows.plan import plan_recipe
    from flows.recipe import load_recipe

    parsed = load_recipe(recipe, [])
    plan = plan_recipe(parsed)
    assert plan.train_rows > 0 and plan.optimizer_steps > 0
    assert plan.trainable_params and plan.trainable_params <= (plan.total_params or 0)
    assert plan.estimated_train_seconds and plan.estimated_train_seconds > 0
    assert plan.gate["enabled"] and plan.gate["eval_rows_used"] > 0
    assert not (tuneline_home / "runs").exists()
