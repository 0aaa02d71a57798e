"""MLflow going away at registration time: a real `mlflow server` stopped right after
evaluation. A short outage is waited out (one version, champion set); a long one fails clearly
with the trained run kept, and `tuneline register` finishes it later, exactly once. No alias
ever points at a version whose registration did not complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest

from flows.finetune import FinetuneOutcome
from tests import forkserver
from tests.conftest import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]


@pytest.fixture()
def server(tmp_path_factory: pytest.TempPathFactory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-outage"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def env_for(server: MlflowServer, delays: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="5",
        TUNELINE_REGISTRY_RETRY_DELAYS=delays,
    )
    return env


def run_stopping_mlflow_after_evaluation(
    recipe: Path, server: MlflowServer, env: dict[str, str], restart_after: float | None
) -> tuple[int, str]:
    """Run the recipe; when evaluation finishes, stop MLflow (and start it again later)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneline", "run", str(recipe)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    stopped = False
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if not stopped and "evaluate_model" in line and "Finished in state Completed" in line:
            server.stop()
            stopped = True
            if restart_after is not None:
                threading.Timer(restart_after, server.start).start()
    code = proc.wait(timeout=600)
    assert stopped, "evaluation never finished:\n" + "".join(lines)[-3000:]
    return code, "".join(lines)


def versions(server: MlflowServer, name: str) -> list:
    from mlflow import MlflowClient

    try:
        return MlflowClient(server.url).search_model_versions(f"name = '{name}'")
    except Exception:
        return []


def champion(server: MlflowServer, name: str) -> str | None:
    from mlflow import MlflowClient

    try:
        return str(MlflowClient(server.url).get_model_version_by_alias(name, "champion").version)
    except Exception:
        return None


def test_short_outage_is_waited_out(keyword_recipe: Path, server: MlflowServer) -> None:
    code, output = run_stopping_mlflow_after_evaluation(
        keyword_recipe, server, env_for(server, "15,30"), restart_after=1.0
    )
    assert code == 0, output[-4000:]
    assert "Registered keyword-classifier version 1 (champion)" in output
    assert len(versions(server, "keyword-classifier")) == 1
    assert champion(server, "keyword-classifier") == "1"


def test_long_outage_fails_clearly_then_register_finishes_once(
    keyword_recipe: Path, server: MlflowServer
) -> None:
    env = env_for(server, "1,1")
    code, output = run_stopping_mlflow_after_evaluation(
        keyword_recipe, server, env, restart_after=None
    )
    assert code == 1, output[-4000:]
    assert "does not answer" in output and "tuneline register" in output
    assert "Traceback" not in output.split("error:")[-1]
    command = output.split("run `tuneline register ")[-1].split("`")[0]
    kept = Path(command)
    assert (kept / "registration.json").is_file() and (
        kept / "artifact" / "tuneline.json"
    ).is_file()

    time.sleep(0.5)
    server.start()
    assert versions(server, "keyword-classifier") == []  # nothing half-registered
    assert champion(server, "keyword-classifier") is None

    def register(*extra: str) -> subprocess.CompletedProcess[str]:
        return forkserver.tuneline("register", kept, *extra, env=env, timeout=300)

    first = register()
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert "Registered keyword-classifier version 1 (champion)" in first.stdout
    again = register()
    assert again.returncode == 0 and "already registered" in again.stdout
    # --json: the outcome in the shape `tuneline run --json` prints
    as_json = register("--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr[-3000:]
    told = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert set(told) == {f.name for f in fields(FinetuneOutcome)}
    assert told["status"] == "unchanged" and told["model_version"] == "1"
    assert told["metrics"]["accuracy"] > 0 and told["artifact"].startswith(str(kept))
    assert len(versions(server, "keyword-classifier")) == 1
    assert champion(server, "keyword-classifier") == "1"
