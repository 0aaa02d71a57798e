"""Schedules against a real Prefect server: `tuneline serve` of the shipped recipe gets its cron
runs created by the server's scheduler (a scheduler that fails every loop leaves none)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_served_cron_deployment_gets_scheduled_runs(
    tmp_path: Path, scheduling_prefect_server: tuple[str, Path]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, server_log = scheduling_prefect_server
    recipe = REPO / "deployments" / "sentiment-lora.yaml"  # deploy.cron "0 3 * * *"
    log = tmp_path / "serve.log"
    env = {**os.environ, "PREFECT_API_URL": api}
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "serve", str(recipe), "--watch-interval", "60"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    scheduled: list = []
    try:
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            deployment = None
            while time.monotonic() < deadline and not scheduled:
                assert proc.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
                if deployment is None:
                    with contextlib.suppress(ObjectNotFound):
                        deployment = client.read_deployment_by_name(
                            "finetune/sentiment-minilm-lora"
                        )
                if deployment is not None:
                    runs = client.read_flow_runs(
                        deployment_filter=DeploymentFilter(
                            id=DeploymentFilterId(any_=[deployment.id])
                        )
                    )
                    scheduled = [r for r in runs if r.state and r.state.is_scheduled()]
                time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    server_text = server_log.read_text(errors="replace")
    assert scheduled, "no scheduled runs created within 120 s; server log:\n" + server_text[-4000:]
    # the cron is 03:00 UTC: every run the scheduler created is at 03:00
    assert all(
        r.expected_start_time.hour == 3 and r.expected_start_time.minute == 0 for r in scheduled
    )
    assert "Can't evaluate bulk DML statement" not in server_text
