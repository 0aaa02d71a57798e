"""The MLflow run behind `tuneline run` on the embedded store: everything under TUNELINE_HOME
(a read-only working folder is fine), never left RUNNING, no credentials on stdout."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import forkserver

pytestmark = pytest.mark.integration


def tuneline(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return forkserver.tuneline(*args, cwd=cwd, env=env or os.environ.copy(), timeout=600)


def test_read_only_working_folder_keeps_every_artifact_under_home(
    keyword_recipe: Path, tuneline_home: Path, tmp_path: Path
) -> None:
    cwd = tmp_path / "read-only"
    cwd.mkdir()
    cwd.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        proc = tuneline("run", str(keyword_recipe), "--json", cwd=cwd)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert list(cwd.iterdir()) == []
    finally:
        cwd.chmod(stat.S_IRWXU)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    from tasks.services import tracking

    run = tracking.client().get_run(outcome["mlflow_run_id"])
    assert run.info.artifact_uri.startswith(tuneline_home.as_uri())
    models = tracking.client().search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models, "no logged model"
    for model in models:
        assert model.artifact_location.startswith(tuneline_home.as_uri()), model.artifact_location
    assert not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()


def complete_checkpoints(home: Path) -> list[int]:
    return [
        json.loads(marker.read_text())["step"]
        for marker in home.glob("checkpoints/*/*/checkpoint-*/tuneline-complete.json")
    ]


def mlflow_runs(experiment: str) -> list:
    from tasks.services import tracking

    mlc = tracking.client()
    found = mlc.get_experiment_by_name(experiment)
    return [] if found is None else mlc.search_runs([found.experiment_id])


def test_ctrl_c_during_training_ends_the_run_killed_then_resumes(
    keyword_recipe: Path, tuneline_home: Path, tmp_path: Path
) -> None:
    text = keyword_recipe.read_text().replace(
        "train: {max_steps: 60,", "train: {max_steps: 200, save_steps: 10, logging_steps: 5,"
    )
    keyword_recipe.write_text(text)
    log = tmp_path / "interrupted.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "run", str(keyword_recipe)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and max(complete_checkpoints(tuneline_home), default=0) < 20:
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    # what a terminal's Ctrl-C does: SIGINT to the whole foreground process group
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.monotonic()
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("Ctrl-C: no exit in 60 s:\n" + log.read_text()[-3000:]) from None
    took = time.monotonic() - interrupted
    output = log.read_text()
    assert took < 30, f"Ctrl-C took {took:.0f} s to exit"
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "interrupted" in output and "resume" in output, output[-2000:]
    runs = mlflow_runs("keyword-classifier")
    assert [r.info.status for r in runs] == ["KILLED"]
    killed_at = max(complete_checkpoints(tuneline_home))

    resumed = tuneline("run", str(keyword_recipe), "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["train"]["steps"] == 200
    assert outcome["train"]["extra"]["resumed_from_step"] >= killed_at >= 20
    statuses = sorted(r.info.status for r in mlflow_runs("keyword-classifier"))
    assert statuses == ["FINISHED", "KILLED"]


def test_a_failure_after_tracking_started_ends_the_run_failed(tiny_recipe: Path) -> None:
    # the flow itself, as a worker or `tuneline serve` runs it (no CLI around it)
    script = (
        "import sys\n"
        "from flows.finetune import finetune\n"
        "from flows.recipe import load_recipe\n"
        "finetune(load_recipe(sys.argv[1], ['method.target_modules=[nothing_here]']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_recipe)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "No modules were targeted" in proc.stderr, proc.stderr[-3000:]
    assert [r.info.status for r in mlflow_runs("tiny-sentiment")] == ["FAILED"]


def test_prefect_shows_the_outcome_of_a_run_that_was_not_promoted(
    tiny_recipe: Path, prefect_server: str
) -> None:
    import httpx

    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = tuneline("run", str(tiny_recipe), "--json", "--set", "register.gate.min=0.9999", env=env)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "not_promoted" and outcome["model_version"] == "1"
    from tasks.services import tracking

    flow_run = tracking.client().get_run(outcome["mlflow_run_id"]).data.tags["prefect.flow_run_id"]
    expected = "registered tiny-sentiment v1, not promoted: "
    logs = httpx.post(
        f"{prefect_server}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run]}}}
    ).json()
    assert any(expected in log["message"] for log in logs), [log["message"] for log in logs]
    artifacts = httpx.post(
        f"{prefect_server}/artifacts/filter",
        json={
            "artifacts": {"flow_run_id": {"any_": [flow_run]}, "key": {"any_": ["before-after"]}}
        },
    ).json()
    assert any(expected in (a["data"] or "") for a in artifacts), artifacts
    assert any(outcome["reasons"][0] in (a["data"] or "") for a in artifacts), artifacts


def test_a_curve_is_logged_at_its_steps_past_one_batch(tuneline_home: Path) -> None:
    from tasks.services import tracking

    mlc = tracking.client()
    run = mlc.create_run(mlc.create_experiment("curves"))
    points = [("train_loss", 2.0 - step / 10, step) for step in range(1, 1201)]
    tracking.log_series(run.info.run_id, [*points, ("eval_loss", 1.5, 600), ("reward", None, 3)])
    curve = mlc.get_metric_history(run.info.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in curve) == [(s, v) for _, v, s in points]
    assert [(m.step, m.value) for m in mlc.get_metric_history(run.info.run_id, "eval_loss")] == [
        (600, 1.5)
    ]
    assert "reward" not in mlc.get_run(run.info.run_id).data.metrics
