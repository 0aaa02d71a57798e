"""Approval before promotion (`register.approval: required`) against real Prefect and MLflow
servers on loopback: a deployment run registers its version as `challenger` and suspends; the
answer sent through the Prefect API (the call the UI's form makes) resumes it without retraining
and `champion` moves; a rejection from the terminal resumes the other waiting run and leaves
`champion` alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_registry import last_json, tuneline
from tests.integration.test_serve import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "keyword-classifier"


@pytest.fixture()
def approval_recipe(keyword_recipe: Path) -> Path:
    """The keyword recipe on an encoder with one token per word (the same data gives the same
    model: test_registry), at the learning rate that learns the keywords, approval required."""
    from tests.conftest import read_jsonl
    from tests.integration.test_gate_cli import word_encoder

    folder = keyword_recipe.parent
    texts = [
        r["text"] for f in ("train", "eval") for r in read_jsonl(folder / "data" / f"{f}.jsonl")
    ]
    encoder = word_encoder(folder / "word-encoder", texts)
    lines = []
    for line in keyword_recipe.read_text().splitlines():
        if line.startswith("base_model:"):
            line = f"base_model: {{path: {encoder}}}"
        elif line.startswith("train:"):
            line = line.replace("learning_rate: 5.0e-3", "learning_rate: 2.0e-3")
        elif line.startswith("register:"):
            line = (
                "register: {approval: required, approval_timeout: 1h, "
                "gate: {metric: accuracy, beat_base: true}}"
            )
        lines.append(line)
    keyword_recipe.write_text("\n".join(lines) + "\n")
    return keyword_recipe


def test_suspended_run_resumes_on_the_answer_without_retraining(
    approval_recipe: Path,
    prefect_server: str,
    mlflow_server: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    mlc = MlflowClient(mlflow_server)
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        serve = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "serve", str(approval_recipe)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        with (
            temporary_settings({PREFECT_API_URL: prefect_server}),
            get_client(sync_client=True) as client,
        ):

            def state(run_id):
                return client.read_flow_run(run_id).state

            def deployment():
                try:
                    return client.read_deployment_by_name(f"finetune/{NAME}")
                except Exception:
                    return None

            found = wait_until(deployment, 120, "the deployment", serve, log)

            # 1. run A trains, registers version 1 as challenger and suspends
            run_a = run_deployment(f"finetune/{NAME}", timeout=0).id
            wait_until(lambda: state(run_a).is_paused(), 600, "run A to suspend", serve, log)
            assert state(run_a).name == "Suspended"
            v1 = mlc.get_model_version(NAME, "1")
            assert v1.tags["promotion_state"] == "awaiting-approval"
            assert v1.tags["approval.flow_run_id"] == str(run_a)
            assert v1.tags["approval_policy"] == "required"
            assert mlc.get_model_version_by_alias(NAME, "challenger").version == "1"
            assert "champion" not in mlc.get_registered_model(NAME).aliases
            assert "awaiting approval as `challenger`" in v1.description

            # the form the UI shows: a typed schema and its description (Prefect saves them
            # just after the run enters Suspended, so they may land a moment after the state)
            api = prefect_server.rstrip("/")

            def form() -> dict:
                inputs = httpx.post(
                    f"{api}/flow_runs/{run_a}/input/filter",
                    json={"prefix": "suspended", "limit": 10},
                ).json()
                found = {i["key"].rsplit("-", 1)[-1]: json.loads(i["value"]) for i in inputs}
                return found if {"schema", "description"} <= set(found) else {}

            by_key = wait_until(form, 60, "the suspended run's input form", serve, log)
            assert by_key["schema"]["properties"]["decision"]["enum"] == ["approve", "reject"]
            assert by_key["schema"]["required"] == ["decision"]
            description = by_key["description"]
            print(description)
            for expected in (
                "Approve `keyword-classifier` version 1 as champion?",
                "| accuracy |",
                "95% interval",
                "data contract 'classification' passed",
                f"{mlflow_server}/#/models/{NAME}/versions/1",
                "data_contract.html",
            ):
                assert expected in description, (expected, description)

            # 2. run B (a different recipe: 70 steps) registers version 2 and suspends too: a
            # suspended run holds no deployment slot
            recipe_b = dict(found.parameters["recipe"])
            recipe_b["train"] = {**recipe_b["train"], "max_steps": 70}
            run_b = run_deployment(
                f"finetune/{NAME}", parameters={"recipe": recipe_b}, timeout=0
            ).id
            wait_until(lambda: state(run_b).is_paused(), 600, "run B to suspend", serve, log)
            assert mlc.get_model_version_by_alias(NAME, "challenger").version == "2"

            # 3. the answer through the Prefect API, as the UI's form sends it: A resumes
            answered = time.monotonic()
            answer = {"decision": "approve", "note": "checked", "reviewer": "alice"}
            for _ in range(5):  # a busy SQLite server answers 500 "database is locked" at times
                response = httpx.post(f"{api}/flow_runs/{run_a}/resume", json={"run_input": answer})
                if response.status_code < 500:
                    break
                time.sleep(2)
            assert response.json()["status"] == "ACCEPT", response.text
            wait_until(lambda: state(run_a).is_completed(), 300, "run A to finish", serve, log)
            seconds = time.monotonic() - answered
            print(f"answer -> run A completed, champion moved: {seconds:.1f} s")
            assert mlc.get_model_version_by_alias(NAME, "champion").version == "1"
            v1 = mlc.get_model_version(NAME, "1")
            assert v1.tags["approval"] == "approved" and v1.tags["approval.by"] == "alice"
            assert v1.tags["approval.note"] == "checked" and v1.tags["approval.at"]
            assert v1.tags["promotion_state"] == "done"
            assert "Approval: approved by alice on" in v1.description
            readme = mlc.download_artifacts(v1.tags["mlflow_run_id"], "README.md", str(tmp_path))
            assert "Approval: approved by alice" in Path(readme).read_text()
            # resuming re-ran the flow from the top, and the version was found: one training
            trained = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_a]))
            )
            names = [t.name.rsplit("-", 1)[0] for t in trained]
            assert names.count("train_model") == 1, names
            assert names.count("find_awaited_version") == 2, names

            # 4. version 2 was compared with no champion; champion is version 1 now: refused
            stale = tuneline("approve", NAME, "2", env=env)
            assert stale.returncode == 1
            assert "champion is now version 1" in stale.stderr, stale.stderr
            assert "Traceback" not in stale.stderr

            # 5. a rejection from the terminal: tags, champion alone, run B resumed and done
            rejected = tuneline("reject", NAME, "2", "--note", "not better", "--by", "bob", env=env)
            assert rejected.returncode == 0, rejected.stderr[-2000:]
            assert "rejected by bob; champion unchanged (version 1)" in rejected.stdout
            assert "resumed flow run" in rejected.stdout, rejected.stdout
            wait_until(lambda: state(run_b).is_completed(), 300, "run B to finish", serve, log)
            v2 = mlc.get_model_version(NAME, "2")
            assert v2.tags["approval"] == "rejected" and v2.tags["approval.note"] == "not better"
            assert v2.tags["approval.by"] == "bob" and v2.tags["approval.via"] == "tuneline reject"
            assert mlc.get_model_version_by_alias(NAME, "champion").version == "1"
            assert "challenger" not in mlc.get_registered_model(NAME).aliases
            assert "Approval: rejected by bob" in v2.description
            again = tuneline("approve", NAME, "2", env=env)
            assert again.returncode == 1 and "already rejected by bob" in again.stderr
            assert len(mlc.search_model_versions(f"name = '{NAME}'")) == 2

            # 6. a plain `tuneline run` is no deployment run, so nothing can wait: the version
            # stays challenger, the run says how to answer and exits 0; the answer needs no run
            local = tuneline(
                "run", str(approval_recipe), "--json", "--set", "name=keyword-local", env=env
            )
            assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
            assert last_json(local)["status"] == "awaiting_approval"
            assert "(challenger, awaiting approval)" in local.stdout
            assert "tuneline approve keyword-local 1" in local.stdout
            assert mlc.get_model_version_by_alias("keyword-local", "challenger").version == "1"
            approved = tuneline("approve", "keyword-local", "1", env=env)
            assert approved.returncode == 0, approved.stderr[-2000:]
            assert "now champion" in approved.stdout and "resumed" not in approved.stdout
            assert mlc.get_model_version_by_alias("keyword-local", "champion").version == "1"
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
