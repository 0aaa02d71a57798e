"""The project's own rules, enforced as tests: lint, format, layer order, types."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    if exe is None:
        pytest.fail(f"{tool} is not installed; install the dev extra (pip install -e '.[dev]')")
    return subprocess.run([str(exe), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = run("ruff", "format", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layers_import_one_way() -> None:
    proc = run("lint-imports")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_on_tasks_and_contracts() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
