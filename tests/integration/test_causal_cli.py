"""The shipped causal-LM recipes through the real CLI (a few steps each): reward, then rlhf scored
by the registered reward champion, then sft from chat; every registered version loads back with
`mlflow.pyfunc.load_model` and generates or scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_run_cli import tuneline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]

QUICK = [
    "--set",
    "train.max_steps=2",
    "--set",
    "evaluate.generation_rows=6",
    "--set",
    "evaluate.max_new_tokens=4",
    "--set",
    "register.gate.beat_base=false",
    # six generated rows are the fewest a paired comparison can decide on, and only for a gain
    # of all of them: enough for this test of registering and loading
    "--set",
    "register.gate.detect_gain=1.0",
    "--json",
]


def run(recipe: str) -> dict:
    proc = tuneline("run", str(REPO / "deployments" / recipe), *QUICK)
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode == 3:  # two steps may leave a policy with one answer for every prompt
        assert outcome["status"] == "not_promoted"
        assert "same greedy answer" in outcome["reasons"][0], outcome["reasons"]
    return outcome


def test_reward_then_rlhf_then_sft_register_and_load(tuneline_home: Path, tmp_path: Path) -> None:
    import mlflow

    from tasks.core import settings

    reward = run("assistant-reward.yaml")
    assert reward["status"] == "promoted" and reward["model_version"] == "1"
    assert {"preference_accuracy", "reward_margin"} <= set(reward["metrics"])
    assert reward["train"]["steps"] == 2

    rlhf = run("assistant-rlhf.yaml")  # scores with models:/assistant-reward@champion
    assert rlhf["model_version"] == "1"
    assert set(rlhf["metrics"]) == {"mean_reward"} and set(rlhf["base_metrics"]) == {"mean_reward"}

    sft = run("assistant-sft-chat.yaml")
    assert {"perplexity", "eval_loss", "exact_match", "rougeL"} <= set(sft["metrics"])
    assert "base + 3-shot prompt" in sft["baselines"]

    mlflow.set_tracking_uri(settings.tracking_uri())
    scorer = mlflow.pyfunc.load_model("models:/assistant-reward@champion")
    scores = scorer.predict(["Give the opposite of this word.\nhot\ncold", "hello"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    for name in ("assistant-rlhf", "assistant-sft-chat"):
        model = mlflow.pyfunc.load_model(f"models:/{name}/1")
        answers = model.predict(
            ["Tell me about the river in Ashford."], params={"max_new_tokens": 4}
        )
        assert len(answers) == 1 and isinstance(answers[0], str)
        # the declared params reach `predict` (MLflow ignores any its signature lacks)
        params = mlflow.models.get_model_info(f"models:/{name}/1").signature.params
        assert params is not None and {"max_new_tokens", "raw"} <= {p.name for p in params.params}
    tags = mlflow.MlflowClient().get_model_version("assistant-rlhf", "1").tags
    assert tags["method"] == "rlhf" and json.loads(tags["base_model_ref"])["kind"] == "tiny"

    # where tuneline is not installed, a version loads with the code bundled with it, and with
    # no pickle: it loads where MLflow's pickle deserialization is turned off
    for name in ("assistant-reward", "assistant-sft-chat"):
        loaded = _load_without_tuneline(f"models:/{name}/1", settings.tracking_uri(), tmp_path)
        assert loaded["tasks"].endswith(os.path.join("code", "tasks", "__init__.py"))
        assert len(loaded["predictions"]) == 1

    # the CLI serves them too
    proc = tuneline("predict", "models:/assistant-sft-chat/1", "hello", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)) == 1


# A fresh interpreter where `tasks` is found only in a model's bundled code (an MLflow model's
# `code` folder on sys.path), as in an environment without tuneline installed.
_WITHOUT_TUNELINE = r"""
import importlib.machinery, json, sys

class BundledOnly:
    def find_spec(self, name, path=None, target=None):
        if name != "tasks":
            return None
        bundles = [p for p in sys.path if p.rstrip("/").endswith("code")]
        spec = importlib.machinery.PathFinder.find_spec(name, bundles)
        if spec is None:
            raise ModuleNotFoundError("No module named 'tasks'", name=name)
        return spec

sys.meta_path.insert(0, BundledOnly())
import mlflow
mlflow.set_tracking_uri(sys.argv[2])
model = mlflow.pyfunc.load_model(sys.argv[1])
predictions = model.predict(["hello"])
import tasks
print(json.dumps({"tasks": tasks.__file__, "predictions": [str(p) for p in predictions]}))
"""


def _load_without_tuneline(uri: str, tracking_uri: str, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TUNELINE, uri, tracking_uri],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rlhf_without_a_registered_reward_model_says_what_to_do(tuneline_home: Path) -> None:
    proc = tuneline("run", str(REPO / "deployments" / "assistant-rlhf.yaml"), *QUICK[:-1])
    assert proc.returncode == 1
    assert "method.reward_model" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
