"""Ctrl-C stops a run wherever it lands, even inside a finaliser, where Python cannot raise it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# A Ctrl-C that arrives while the main thread runs an object's `__del__`: the KeyboardInterrupt
# raised there cannot leave the finaliser (Python prints "Exception ignored in ..." and goes on).
SCRIPT = """
import os, signal, sys
import typer
from tuneline.cli import runs_end_on_interrupt

class Finaliser:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        for _ in range(10_000):
            pass

try:
    with runs_end_on_interrupt():
        Finaliser()
        total = sum(range(1_000_000))
        print("went on as if never interrupted", flush=True)
except typer.Exit as exc:
    print(f"exit {exc.exit_code}", flush=True)
    sys.stderr.flush()
    os._exit(exc.exit_code)
"""


def test_ctrl_c_inside_a_finaliser_still_stops_the_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.strip() == "exit 1", proc.stdout + proc.stderr
    assert "interrupted" in proc.stderr and "resume" in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
