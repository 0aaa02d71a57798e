"""`tuneline serve` against a real Prefect server: a deployment triggered through the Prefect API,
then new curated data dropped into the watched folder starts a second run by itself; and the
shipped recipe served beside it gets its cron runs created by the server's scheduler (a scheduler
that fails every loop leaves none)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, prefect_server_home, watched_recipe, write_jsonl

pytestmark = pytest.mark.integration


def wait_until(
    check, seconds: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None
):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log.read_text()[-4000:] if log else ''}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:] if log else ''}")


def test_serve_runs_on_api_trigger_and_on_new_data_and_schedules_cron_runs(
    tmp_path: Path,
    prefect_server: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment

    recipe, rows = watched_recipe(tmp_path, "served-classifier")
    shipped = REPO / "deployments" / "sentiment-lora.yaml"  # deploy.cron "0 3 * * *"
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "serve", str(recipe), str(shipped)]
            + ["--watch-interval", "2"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with (
            temporary_settings({PREFECT_API_URL: prefect_server}),
            get_client(sync_client=True) as client,
        ):
            deployment = wait_until(
                lambda: _deployment(client, "finetune/served-classifier"),
                120,
                "deployment",
                proc,
                log,
            )

            def runs(of=deployment):
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[of.id]))
                )

            def completed():
                return [r for r in runs() if r.state and r.state.is_completed()]

            first = run_deployment("finetune/served-classifier", timeout=0)
            wait_until(lambda: len(completed()) >= 1, 300, "the triggered run", proc, log)
            assert first.id in {r.id for r in completed()}
            assert _versions("served-classifier") == 1

            # new curated data lands: the watcher emits an event, the trigger starts a run
            write_jsonl(tmp_path / "curated" / "part-1.jsonl", rows[240:300])
            wait_until(lambda: len(completed()) >= 2, 300, "the data-triggered run", proc, log)
            assert _versions("served-classifier") == 2
            assert len(runs()) == 2

            # the shipped recipe's cron: the scheduler created its runs, every one at 03:00 UTC
            cron = _deployment(client, "finetune/sentiment-minilm-lora")
            assert cron is not None
            scheduled = wait_until(
                lambda: [r for r in runs(cron) if r.state and r.state.is_scheduled()],
                120,
                "the cron deployment's scheduled runs",
                proc,
                log,
            )
            assert all(
                r.expected_start_time.hour == 3 and r.expected_start_time.minute == 0
                for r in scheduled
            )

            # nothing new for a while: nothing starts
            time.sleep(12)
            assert len(runs()) == 2
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    server_log = prefect_server_home(request.config) / "server.log"
    assert "Can't evaluate bulk DML statement" not in server_log.read_text(errors="replace")


def _deployment(client, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def _versions(name: str) -> int:
    from tasks.services import tracking

    return len(tracking.client().search_model_versions(f"name = '{name}'"))
