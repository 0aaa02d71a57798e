"""The MLflow run behind `tuneline run` on the embedded store: everything under TUNELINE_HOME
(a read-only working folder is fine), never left RUNNING, no credentials on stdout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def tuneline(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "tuneline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or os.environ.copy(),
        timeout=600,
    )


def test_read_only_working_folder_keeps_every_artifact_under_home(
    tiny_recipe: Path, tuneline_home: Path, tmp_path: Path
) -> None:
    cwd = tmp_path / "read-only"
    cwd.mkdir()
    cwd.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        proc = tuneline("run", str(tiny_recipe), "--json", cwd=cwd)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert list(cwd.iterdir()) == []
    finally:
        cwd.chmod(stat.S_IRWXU)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    from tasks import tracking

    run = tracking.client().get_run(outcome["mlflow_run_id"])
    assert run.info.artifact_uri.startswith(tuneline_home.as_uri())
    models = tracking.client().search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models, "no logged model"
    for model in models:
        assert model.artifact_location.startswith(tuneline_home.as_uri()), model.artifact_location
    assert not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()
