"""The tests' way of running `python -m tuneline` (tests/forkserver.py) behaves as a fresh
process would: the caller's environment, working folder, stdin and exit status, and a command
that hangs is killed at its timeout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import forkserver


def test_a_forked_command_reads_its_own_environment_and_exit_status(tmp_path: Path) -> None:
    homes = []
    for name in ("one", "two"):
        home = tmp_path / name
        env = {**os.environ, "TUNELINE_HOME": str(home)}
        proc = forkserver.tuneline("models", "no-such-model", env=env, cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        # the last line: a first MLflow store in a new user cache logs its creation before it
        assert (
            proc.stderr.strip().splitlines()[-1]
            == "error: no registered model named 'no-such-model'"
        )
        homes.append(home)
    # each command made its embedded store in the home its environment named
    assert all((home / "mlflow.db").is_file() for home in homes), list(tmp_path.rglob("*"))


def test_working_folder_stdin_and_a_command_past_its_timeout(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("name: [unclosed\n")
    proc = forkserver.tuneline("plan", "recipe.yaml", cwd=tmp_path, input="ignored\n")
    assert proc.returncode == 1 and "recipe.yaml" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        forkserver.tuneline("predict", "models:/x/1", input=None, timeout=0.5)
