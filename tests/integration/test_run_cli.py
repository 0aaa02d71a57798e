"""`tuneline run` end to end on a tiny encoder: the real Prefect flow (ephemeral API), the real
MLflow store under TUNELINE_HOME, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import write_jsonl

pytestmark = pytest.mark.integration


def tuneline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return forkserver.tuneline(*args, cwd=cwd, env=os.environ.copy(), timeout=600)


def registered_versions(name: str) -> list:
    from tasks.services import tracking

    client = tracking.client()
    try:
        return client.search_model_versions(f"name = '{name}'")
    except Exception:
        return []


def test_run_registers_a_model_that_loads_and_predicts(tiny_recipe: Path) -> None:
    proc = tuneline("run", str(tiny_recipe), "--json")
    # Six steps cannot teach the tiny random encoder sentiment: it gives every eval row one
    # class, so the version is registered but never promoted (exit 3).
    assert proc.returncode == 3, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "not_promoted"
    assert "same prediction" in outcome["reasons"][0]
    assert outcome["model_name"] == "tiny-sentiment"
    assert outcome["model_version"] == "1"
    assert set(outcome["metrics"]) == {"accuracy", "f1"}
    assert set(outcome["base_metrics"]) == {"accuracy", "f1"}
    assert outcome["train"]["steps"] == 6
    assert "Registered tiny-sentiment version 1" in proc.stdout

    import mlflow

    from tasks.core import settings
    from tasks.services import tracking

    mlflow.set_tracking_uri(settings.tracking_uri())
    model = mlflow.pyfunc.load_model("models:/tiny-sentiment/1")
    predictions = model.predict(["a lovely film", "a dreadful meal", "it was fine"])
    assert len(predictions) == 3 and set(predictions) <= {"negative", "positive"}

    run = tracking.client().get_run(outcome["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert "eval_accuracy" in run.data.metrics and "base_accuracy" in run.data.metrics
    version = registered_versions("tiny-sentiment")[0]
    for tag in (
        "recipe_hash",
        "data_fingerprint",
        "base_model",
        "method",
        "candidate_key",
        "code_version",
        "prefect.flow_run_id",
    ):
        assert version.tags.get(tag), f"missing lineage tag {tag}"

    again = tuneline("run", str(tiny_recipe), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "unchanged"
    assert len(registered_versions("tiny-sentiment")) == 1


def test_missing_data_file_is_one_clear_line_and_registers_nothing(tiny_recipe: Path) -> None:
    (tiny_recipe.parent / "data" / "train.jsonl").unlink()
    proc = tuneline("run", str(tiny_recipe))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: data.train: nothing found at")
    assert "train.jsonl" in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert registered_versions("tiny-sentiment") == []


def test_typo_in_recipe_exits_1_without_traceback(tiny_recipe: Path) -> None:
    text = tiny_recipe.read_text().replace("max_steps", "max_stepz")
    tiny_recipe.write_text(text)
    proc = tuneline("run", str(tiny_recipe))
    assert proc.returncode == 1
    assert "train.max_stepz: unknown key" in proc.stderr and "max_steps" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_contract_failure_exits_2_saves_report_and_registers_nothing(
    tiny_recipe: Path, tuneline_home: Path
) -> None:
    rows = [{"text": f"short review number {i}", "label": "positive"} for i in range(6)]
    rows.append({"text": "   ", "label": "negative"})
    write_jsonl(tiny_recipe.parent / "data" / "train.jsonl", rows)
    proc = tuneline("run", str(tiny_recipe))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "data contract 'classification' failed" in proc.stderr
    assert "row_count" in proc.stderr and "empty_text" in proc.stderr
    assert "Traceback" not in proc.stderr
    reports = list(tuneline_home.glob("runs/tiny-sentiment/*/data_contract.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["passed"] is False and "row_count" in report["errors"]
    assert registered_versions("tiny-sentiment") == []


def test_compare_runs_methods_on_shared_tokenization(tiny_recipe: Path) -> None:
    proc = tuneline(
        "compare",
        str(tiny_recipe),
        "--methods",
        "probe,lora,prompt_tuning",
        "--json",
        "--set",
        "train.max_steps=3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["method"] for r in rows] == ["probe", "lora", "prompt_tuning"]
    for row in rows:
        assert set(row["metrics"]) == {"accuracy", "f1"}
        assert 0 < row["trainable_share"] <= 1
    from tasks.services import tracking

    client = tracking.client()
    children = [client.get_run(r["mlflow_run_id"]) for r in rows]
    parents = {c.data.tags.get("mlflow.parentRunId") for c in children}
    assert len(parents) == 1 and None not in parents
    parent = client.get_run(parents.pop())
    assert parent.data.params["methods"] == "probe,lora,prompt_tuning"
    # tokenization ran once for the whole comparison (it is logged on the parent only)
    assert "tokens_mean" in parent.data.metrics
    assert all("tokens_mean" not in c.data.metrics for c in children)


def test_compare_rejects_unknown_method(tiny_recipe: Path) -> None:
    proc = tuneline("compare", str(tiny_recipe), "--methods", "lora,lorax")
    assert proc.returncode == 1
    assert "'lorax' is not a method" in proc.stderr and "prompt_tuning" in proc.stderr
    assert "sft" not in proc.stderr.split("methods that can:")[-1]  # only classification ones
