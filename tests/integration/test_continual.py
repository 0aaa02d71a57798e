"""Continual retraining (`train.init_from`) against a real `mlflow server` and Prefect server on
loopback: a run continues the champion's weights, records its parent, is measured on the
parent's eval set, and the `previous_eval` guard bounds the drop there."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import keyword_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "keyword-continual"


def tuneline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return forkserver.tuneline(*args, env=env, timeout=600)


def outcome_of(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def shown(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout[-2500:] + proc.stderr[-3000:]


@pytest.fixture()
def continual_recipe(tmp_path: Path) -> Path:
    """Keyword data (240 training rows now, 240 more landing later, a fixed eval file) on a
    one-token-per-word encoder (the same data gives the same model on every build), full
    fine-tuning continued from the champion, with the forgetting guard."""
    from tests.integration.test_gate_cli import word_encoder

    rows = keyword_rows(540, seed=3)
    write_jsonl(tmp_path / "data" / "train" / "week-1.jsonl", rows[:240])
    write_jsonl(tmp_path / "data" / "eval.jsonl", rows[240:300])
    write_jsonl(tmp_path / "later" / "week-2.jsonl", rows[300:])
    encoder = word_encoder(tmp_path / "word-encoder", [r["text"] for r in rows])
    word_encoder(tmp_path / "other-encoder", [r["text"] for r in rows[:100]])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: {NAME}
base_model: {{path: {encoder}}}
data: {{train: data/train/, eval: data/eval.jsonl, labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 60, batch_size: 16, learning_rate: 2.0e-3, warmup_ratio: 0.0,
         init_from: champion, eval_loss_points: 0}}
register: {{gate: {{metric: accuracy, beat_base: false, guards: {{previous_eval: 0.02}}}}}}
"""
    )
    return recipe


def test_continue_from_champion(
    continual_recipe: Path,
    mlflow_server: str,
    prefect_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    recipe = str(continual_recipe)
    folder = continual_recipe.parent
    client = MlflowClient(mlflow_server)

    # 1. no champion yet: the run says so, trains from the base model and becomes champion
    first = tuneline("run", recipe, "--json", env=env)
    assert first.returncode == 0, shown(first)
    assert (
        f"train.init_from: champion: '{NAME}' has no champion yet; training from the base model"
        in first.stdout
    ), shown(first)
    v1 = outcome_of(first)
    assert v1["promoted"] is True and v1["parent_version"] is None
    tags1 = client.get_model_version(NAME, "1").tags
    assert tags1["init_from"] == "champion" and tags1["parent_version"] == ""
    run1 = client.get_run(v1["mlflow_run_id"])
    assert [d.dataset.name for d in run1.inputs.dataset_inputs] == ["eval"]
    kept = client.list_artifacts(v1["mlflow_run_id"], "eval")
    assert "eval/eval_set.parquet" in {f.path for f in kept}

    # 2. a week of new data lands; the next run starts from v1's weights. With a learning rate
    # too small to move them, it answers exactly as v1 did on v1's eval set, where the base
    # model with a new head is near chance: it started from v1, not from the base.
    (folder / "data" / "train" / "week-2.jsonl").write_text(
        (folder / "later" / "week-2.jsonl").read_text()
    )
    still = tuneline("run", recipe, "--json", "--set", "train.learning_rate=1e-12", env=env)
    assert still.returncode == 3, shown(still)  # as good as the champion, not better
    assert f"starting from champion ({NAME} version 1)'s weights" in still.stdout, shown(still)
    v2 = outcome_of(still)
    assert v2["model_version"] == "2" and v2["parent_version"] == "1"
    run2 = client.get_run(v2["mlflow_run_id"]).data.metrics
    assert run2["previous_eval_accuracy"] == pytest.approx(run2["parent_eval_accuracy"])
    assert run2["previous_eval_accuracy"] == pytest.approx(v1["metrics"]["accuracy"])
    assert v1["metrics"]["accuracy"] >= 0.9, v1["metrics"]
    assert v1["base_metrics"]["accuracy"] < 0.75, v1["base_metrics"]
    tags2 = client.get_model_version(NAME, "2").tags
    assert tags2["parent_version"] == "1" and tags2["parent_model"] == NAME
    assert tags2["init_from"] == "champion"
    assert float(tags2["previous_eval.accuracy"]) == pytest.approx(v1["metrics"]["accuracy"])
    assert "gate.previous_eval.accuracy" in tags2
    assert any(r.startswith("guard previous_eval holds") for r in v2["reasons"]), v2["reasons"]
    card = client.get_model_version(NAME, "2").description
    assert f"started from: {NAME} version 1 (train.init_from: champion)" in card

    # 3. the same recipe, data and starting point again: nothing to train
    again = tuneline("run", recipe, "--json", "--set", "train.learning_rate=1e-12", env=env)
    assert again.returncode == 0, shown(again)
    assert outcome_of(again)["status"] == "unchanged"

    # 4. a bad week (every label flipped) continued from v1 forgets what v1 knew: the guard on
    # v1's eval set regresses and the version is not promoted
    rows = [
        json.loads(line) for line in (folder / "later" / "week-2.jsonl").read_text().splitlines()
    ]
    flipped = [{**r, "label": "negative" if r["label"] == "positive" else "positive"} for r in rows]
    write_jsonl(folder / "data" / "train" / "week-2.jsonl", flipped)
    (folder / "data" / "train" / "week-1.jsonl").unlink()
    bad = tuneline("run", recipe, "--json", env=env)
    assert bad.returncode == 3, shown(bad)
    v3 = outcome_of(bad)
    assert v3["parent_version"] == "1" and v3["promoted"] is False
    guard = [r for r in v3["reasons"] if r.startswith("guard previous_eval")]
    assert guard and guard[0].startswith("guard previous_eval fails"), v3["reasons"]
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"


def test_init_from_that_cannot_be_honoured(
    continual_recipe: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another base model, another method, a missing version, a method that cannot continue:
    one line each, nothing trained (no Prefect server needed: refused before any flow)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    recipe = str(continual_recipe)
    other = continual_recipe.parent / "other-encoder"
    from mlflow import MlflowClient

    versions = MlflowClient(mlflow_server).search_model_versions(f"name = '{NAME}'")
    assert versions, "runs after test_continue_from_champion (a registered version to name)"
    before = len(versions)
    cases = {
        "was trained from base model": ["--set", f"base_model.path={other}"],
        "was trained with method 'full', this recipe uses 'last_layers'": [
            "--set",
            "method.name=last_layers",
        ],
        "no such registered version": ["--set", f"train.init_from=models:/{NAME}/99"],
        "method 'probe' cannot continue a registered version": ["--set", "method.name=probe"],
    }
    for expected, extra in cases.items():
        pinned = ["--set", f"train.init_from=models:/{NAME}/1"] if "99" not in extra[1] else []
        proc = tuneline("run", recipe, *pinned, *extra, env=env)
        assert proc.returncode == 1, shown(proc)
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    after = MlflowClient(mlflow_server).search_model_versions(f"name = '{NAME}'")
    assert len(after) == before


def test_causal_lora_sft_continues_a_named_version(
    mlflow_server: str, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A causal LM's LoRA adapter continued from `models:/NAME/1`: with a learning rate too small
    to move it, its perplexity on version 1's eval set (re-tokenized from the kept eval set) is
    version 1's own, row for row."""
    from mlflow import MlflowClient

    from tests.conftest import REPO

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    recipe = str(REPO / "deployments" / "assistant-sft.yaml")
    quick = [
        *("--set", "method.weights=lora", "--set", "method.r=4", "--set", "method.lora_alpha=8"),
        *("--set", "train.max_steps=3", "--set", "evaluate.generation_rows=6"),
        *("--set", "evaluate.max_new_tokens=4", "--set", "evaluate.icl_shots=0"),
        *("--set", "register.gate.beat_base=false", "--set", "register.gate.detect_gain=1.0"),
        *("--set", "register.gate.guards={previous_eval: 0.5}", "--json"),
    ]
    first = tuneline("run", recipe, *quick, env=env)
    assert first.returncode in (0, 3), shown(first)
    assert outcome_of(first)["model_version"] == "1"
    later = tuneline(
        "run",
        recipe,
        *quick,
        *("--set", "train.init_from=models:/assistant-sft/1"),
        *("--set", "train.learning_rate=1e-12"),
        env=env,
    )
    assert later.returncode in (0, 3), shown(later)
    v2 = outcome_of(later)
    assert v2["parent_version"] == "1"
    assert "starting from assistant-sft version 1's weights" in later.stdout
    metrics = MlflowClient(mlflow_server).get_run(v2["mlflow_run_id"]).data.metrics
    assert metrics["previous_eval_perplexity"] == pytest.approx(
        metrics["parent_eval_perplexity"], rel=1e-4
    )
    guard = [r for r in v2["reasons"] if r.startswith("guard previous_eval")]
    assert guard and guard[0].startswith("guard previous_eval holds"), v2["reasons"]
    tags = MlflowClient(mlflow_server).get_model_version("assistant-sft", "2").tags
    assert tags["parent_version"] == "1" and tags["init_from"] == "models:/assistant-sft/1"
