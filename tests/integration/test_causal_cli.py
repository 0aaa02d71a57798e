"""The shipped causal-LM recipes through the real CLI (a few steps each): reward, then rlhf scored
by the registered reward champion, then sft from chat; every registered version loads back with
`mlflow.pyfunc.load_model` and generates or scores."""

from __future__ import annotations

import json
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


def test_reward_then_rlhf_then_sft_register_and_load(tuneline_home: Path) -> None:
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

    # the CLI serves them too
    proc = tuneline("predict", "models:/assistant-sft-chat/1", "hello", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)) == 1


def test_rlhf_without_a_registered_reward_model_says_what_to_do(tuneline_home: Path) -> None:
    proc = tuneline("run", str(REPO / "deployments" / "assistant-rlhf.yaml"), *QUICK[:-1])
    assert proc.returncode == 1
    assert "method.reward_model" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
