"""Recipes deployed to a Prefect `process` work pool and run by a real worker: a real Prefect
server, `tuneline deploy`, `prefect worker start`; a run started through the API, and a run
started by new curated data through the deployed `watch` flow, both completed by the worker and
registered."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import watched_recipe, write_jsonl
from tests.integration.test_run_cli import registered_versions

pytestmark = pytest.mark.integration

PREFECT = str(Path(sys.executable).parent / "prefect")


def deploy_to_a_new_pool(
    recipes: list[Path], env: dict[str, str], tmp_path: Path, *options: str
) -> tuple[str, str]:
    """A fresh `process` pool with the recipes deployed to it: (pool name, deploy's stdout)."""
    pool = f"pool-{tmp_path.name[-12:].replace('_', '-')}"
    created = subprocess.run(
        [PREFECT, "work-pool", "create", pool, "--type", "process"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = subprocess.run(
        [sys.executable, "-m", "tuneline", "deploy", *map(str, recipes), "--pool", pool, *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr[-3000:]
    return pool, deployed.stdout


@contextlib.contextmanager
def a_worker(pool: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """`prefect worker start` on the pool for the block's duration."""
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_a_process_worker_runs_a_deployed_recipe_and_the_data_triggered_one(
    keyword_recipe: Path, prefect_server: str, tuneline_home: Path, tmp_path: Path
) -> None:
    """One `tuneline deploy` of two recipes to a new pool, one worker: a run started through the
    API completes on the worker and registers; and since the second recipe retrains on new data,
    deploy also put the `watch` flow on the pool: run by the worker every 15 s, it notices
    the data landing, and the recipe's trigger starts a run on the same worker, which registers."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # a name of its own: other tests serve a `keyword-classifier` on the same Prefect server
    keyword_recipe.write_text(
        keyword_recipe.read_text().replace("name: keyword-classifier", "name: pool-keyword")
    )
    watched, rows = watched_recipe(tmp_path / "watched", "pool-watched")
    # the worker looks for runs every 2 s instead of Prefect's 10
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    pool, said = deploy_to_a_new_pool(
        [keyword_recipe, watched], env, tmp_path, "--watch-interval", "15"
    )
    assert "2 deployment(s)" in said
    assert "every 15 s by deployment watch/curated-data" in said
    log = tmp_path / "worker.log"
    with (
        a_worker(pool, env, log),
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
    ):
        watcher = client.read_deployment_by_name("watch/curated-data")
        # one look at a time: on a busy worker, looks falling due meanwhile are cancelled, not
        # piled up as processes
        assert watcher.global_concurrency_limit is not None
        assert watcher.global_concurrency_limit.limit == 1
        assert watcher.concurrency_options is not None
        assert watcher.concurrency_options.collision_strategy == "CANCEL_NEW"
        finetune = client.read_deployment_by_name("finetune/pool-watched")

        def runs(deployment_id, completed: bool = True) -> list:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            return [r for r in found if not completed or (r.state and r.state.is_completed())]

        def wait(check, seconds: float, what: str) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if check():
                    return
                time.sleep(2)
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")

        # a run started through the API, as the UI's "Run" button does
        flow_run = run_deployment("finetune/pool-keyword", timeout=0)
        wait(
            lambda: (s := client.read_flow_run(flow_run.id).state) is not None and s.is_final(),
            480,
            "the API-started pool run",
        )
        state = client.read_flow_run(flow_run.id).state
        assert state is not None and state.is_completed(), f"{state}\n{log.read_text()[-4000:]}"
        assert len(registered_versions("pool-keyword")) == 1

        # the watcher has looked meanwhile and recorded what is there: nothing started
        wait(lambda: len(runs(watcher.id)) >= 1, 240, "the watcher's first run")
        assert runs(finetune.id, completed=False) == []
        # new curated data lands, with its marker: the next look starts a pool run
        write_jsonl(tmp_path / "watched" / "curated" / "part-1.jsonl", rows[240:300])
        (tmp_path / "watched" / "curated" / "_SUCCESS").touch()
        wait(lambda: len(runs(finetune.id)) >= 1, 420, "the data-triggered pool run")
        client.pause_deployment(watcher.id)  # the session's server keeps scheduling it otherwise
    assert len(registered_versions("pool-watched")) == 1
