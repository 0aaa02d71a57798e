"""Crashes and concurrency: kill -9 mid-training then resume; two runs of one recipe at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import forkserver

pytestmark = pytest.mark.integration


def tuneline(*args: str) -> subprocess.CompletedProcess[str]:
    return forkserver.tuneline(*args, env=os.environ.copy(), timeout=600)


def versions(name: str) -> list:
    from tasks.services import tracking

    try:
        return tracking.client().search_model_versions(f"name = '{name}'")
    except Exception:
        return []


def complete_checkpoints(home: Path) -> list[int]:
    steps = []
    for marker in home.glob("checkpoints/*/*/checkpoint-*/tuneline-complete.json"):
        steps.append(json.loads(marker.read_text())["step"])
    return steps


def test_kill_9_mid_training_then_resume(
    keyword_recipe: Path, tuneline_home: Path, tmp_path: Path
) -> None:
    text = keyword_recipe.read_text().replace(
        "train: {max_steps: 60,", "train: {max_steps: 240, save_steps: 10, logging_steps: 5,"
    )
    keyword_recipe.write_text(text)
    log = tmp_path / "killed.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "run", str(keyword_recipe)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and max(complete_checkpoints(tuneline_home), default=0) < 30:
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: CLI, flow, temporary API
    proc.wait()
    killed_at = max(complete_checkpoints(tuneline_home))
    assert 30 <= killed_at < 240
    assert versions("keyword-classifier") == []
    assert not list(tuneline_home.glob("runs/*/*/artifact")), "a killed run left an artifact"

    resumed = tuneline("run", str(keyword_recipe), "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["train"]["steps"] == 240
    assert outcome["train"]["extra"]["resumed_from_step"] >= killed_at
    assert outcome["model_version"] == "1"
    history = json.loads((Path(outcome["artifact"]) / "history.json").read_text())
    steps = [point["step"] for point in history]
    assert steps[0] == 1 and steps[-1] >= 235, "loss history does not continue from before the kill"
    assert len(versions("keyword-classifier")) == 1
    assert not list(tuneline_home.glob("checkpoints/*/*/checkpoint-*")), "checkpoints left behind"


def test_two_runs_at_once_register_once(keyword_recipe: Path, shared_prefect_api: str) -> None:
    """Two commands of one recipe at the same moment, each its own process (forked, so that they
    start together rather than a cold start apart), against one Prefect server."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: tuneline("run", str(keyword_recipe), "--json"), range(2)))
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = [json.loads(p.stdout.strip().splitlines()[-1]) for p in done]
    registered = versions("keyword-classifier")
    assert len(registered) == 1, "the same candidate was registered twice"
    assert {o["model_version"] for o in outcomes} == {"1"}
    assert sum(1 for o in outcomes if o["promoted"]) == 1
    from tasks.services import tracking

    champion = tracking.client().get_model_version_by_alias("keyword-classifier", "champion")
    assert str(champion.version) == "1"
