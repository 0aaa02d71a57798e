"""The MLflow registry as the place where models are chosen, against a real `mlflow server`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import forkserver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]

# On the one-token-per-word encoder below the recipe's own learning rate (5e-3) leaves the
# classifier answering one class for every row (which the gate never promotes), and 2e-3 learns
# the keywords: both the same on every build.
BETTER = ["--set", "train.learning_rate=2e-3"]


@pytest.fixture()
def steady_recipe(keyword_recipe: Path) -> Path:
    """The keyword recipe on an encoder with one token per word: the same data always gives the
    same model, so what each learning rate below gives does not vary from one build of the tiny
    vocabulary to the next (a trained WordPiece vocabulary does)."""
    from tests.conftest import read_jsonl
    from tests.integration.test_gate_cli import word_encoder

    folder = keyword_recipe.parent
    texts = [
        r["text"] for f in ("train", "eval") for r in read_jsonl(folder / "data" / f"{f}.jsonl")
    ]
    encoder = word_encoder(folder / "word-encoder", texts)
    lines = [
        f"base_model: {{path: {encoder}}}" if line.startswith("base_model:") else line
        for line in keyword_recipe.read_text().splitlines()
    ]
    keyword_recipe.write_text("\n".join(lines) + "\n")
    return keyword_recipe


def tuneline(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return forkserver.tuneline(*args, env=env, timeout=600, input=stdin)


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_register_rerun_better_worse_rollback_predict(
    steady_recipe: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = os.environ.copy()
    recipe = str(steady_recipe)
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    name = "keyword-classifier"

    # 1. a degenerate first version: registered, never promoted, exit 3; a person promotes it
    first = tuneline("run", recipe, "--json", env=env)
    assert first.returncode == 3, first.stdout[-1500:] + first.stderr[-3000:]
    v1 = last_json(first)
    assert v1["model_version"] == "1" and v1["promoted"] is False
    assert any("always says one thing" in r for r in v1["reasons"]), v1["reasons"]
    assert tuneline("promote", name, "1", env=env).returncode == 0
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    tags = client.get_model_version(name, "1").tags
    for tag in (
        "recipe_hash",
        "data_fingerprint",
        "base_model",
        "base_model_revision",
        "method",
        "code_version",
        "git_sha",
        "tuneline_version",
        "prefect.flow_run_id",
        "candidate_key",
        "metric.accuracy",
        "promotion_reasons",
    ):
        assert tag in tags, tag
    description = client.get_model_version(name, "1").description
    assert "# keyword-classifier" in description and "data fingerprint" in description
    artifacts = {a.path for a in client.list_artifacts(v1["mlflow_run_id"])}
    assert {"data_contract", "eval", "plots", "README.md", "recipe.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(v1["mlflow_run_id"], "plots")}
    assert {"plots/loss_curve.png", "plots/confusion.png", "plots/token_lengths.png"} <= plots

    # 2. the same recipe and data again: no new version
    again = tuneline("run", recipe, "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_json(again)["status"] == "unchanged"
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    # 3. a clearly better candidate takes champion (paired on the same eval rows, the interval
    # of its gain above 0); the old one keeps previous-champion
    better = tuneline("run", recipe, "--json", *BETTER, env=env)
    assert better.returncode == 0, better.stdout[-1500:] + better.stderr[-3000:]
    v2 = last_json(better)
    assert v2["model_version"] == "2" and v2["promoted"] is True, v2["reasons"]
    assert v2["metrics"]["accuracy"] > v1["metrics"]["accuracy"]
    beat = next(r for r in v2["reasons"] if "champion (version 1)" in r)
    assert "95% interval [+" in beat and "n = 60" in beat and "McNemar exact" in beat
    tags2 = client.get_model_version(name, "2").tags
    assert (
        float(tags2["gate.champion.accuracy.low"]) > 0 and tags2["gate.champion.accuracy.n"] == "60"
    )
    assert "95% interval" in client.get_model_version(name, "2").description
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version_by_alias(name, "previous-champion").version == "1"

    # 4. a worse one is registered, not promoted, with its reasons on its tags; exit 3
    worse = tuneline("run", recipe, "--json", "--set", "train.seed=7", env=env)
    assert worse.returncode == 3, worse.stderr[-3000:]
    v3 = last_json(worse)
    assert v3["model_version"] == "3" and v3["promoted"] is False
    tags3 = client.get_model_version(name, "3").tags
    assert tags3["promotion"] == "not promoted"
    assert "does not beat champion (version 2)" in tags3["promotion_reasons"]
    assert float(tags3["gate.champion.accuracy.low"]) <= 0
    assert client.get_model_version_by_alias(name, "champion").version == "2"

    # 5. predict through the champion alias, from arguments and from stdin
    pred = tuneline(
        "predict", f"models:/{name}@champion", "--json", "the superb film", "an awful meal", env=env
    )
    assert pred.returncode == 0, pred.stderr[-3000:]
    assert json.loads(pred.stdout.strip().splitlines()[-1]) == ["positive", "negative"]
    piped = tuneline(
        "predict", f"models:/{name}@champion", env=env, stdin="a lovely view\na dreadful story\n"
    )
    assert piped.returncode == 0
    assert [line.split("\t")[0] for line in piped.stdout.strip().splitlines()[-2:]] == [
        "positive",
        "negative",
    ]

    # 6. rollback gives champion back to version 1; promote moves it on by hand
    back = tuneline("rollback", name, env=env)
    assert back.returncode == 0, back.stderr
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version(name, "2").tags["promotion"] == "rolled back"
    again_back = tuneline("rollback", name, env=env)
    assert again_back.returncode == 1 and "no 'previous-champion'" in again_back.stderr
    promoted = tuneline("promote", name, "2", env=env)
    assert promoted.returncode == 0 and "now champion" in promoted.stdout
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    missing = tuneline("promote", name, "99", env=env)
    assert missing.returncode == 1 and "no version 99" in missing.stderr

    listing = tuneline("models", name, "--json", env=env)
    rows = last_json_list(listing)
    assert [r["version"] for r in rows] == ["3", "2", "1"]
    assert rows[1]["aliases"] == ["champion"] and rows[2]["aliases"] == ["previous-champion"]


def last_json_list(proc: subprocess.CompletedProcess[str]) -> list:
    return json.loads(proc.stdout.strip().splitlines()[-1])
