"""A recipe deployed to a Prefect `process` work pool and run by a real worker: a real Prefect
server, `tuneline deploy`, `prefect worker start`, a run started through the API, completed by
the worker, its model registered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_run_cli import registered_versions

pytestmark = pytest.mark.integration


def test_a_process_worker_runs_a_deployed_recipe(
    keyword_recipe: Path, prefect_server: str, tuneline_home: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    prefect = str(Path(sys.executable).parent / "prefect")
    pool = f"pool-{tmp_path.name[-12:].replace('_', '-')}"
    created = subprocess.run(
        [prefect, "work-pool", "create", pool, "--type", "process"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = subprocess.run(
        [sys.executable, "-m", "tuneline", "deploy", str(keyword_recipe), "--pool", pool],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr[-3000:]
    assert "1 deployment(s)" in deployed.stdout

    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", pool, "--type", "process"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: prefect_server}):
            flow_run = run_deployment("finetune/keyword-classifier", timeout=0)
            deadline = time.monotonic() + 480
            state = None
            while time.monotonic() < deadline:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(flow_run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(3)
        assert state is not None and state.is_completed(), (
            f"{state}\n{(tmp_path / 'worker.log').read_text()[-4000:]}"
        )
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert len(registered_versions("keyword-classifier")) == 1
