"""Work done ahead in a forked process (`tasks.core.ahead`): it runs beside the block, its output
reaches nobody, its failure is nobody's error, and it is stopped (cleaning up) and reaped when
the block ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.ahead import ahead, end_work_ahead
from tests.conftest import REPO, wait_for_file, work_that_sleeps


def test_work_runs_in_another_process_at_the_commands_priority_and_says_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    done = tmp_path / "done"

    def work() -> None:
        print("from the forked process")
        os.write(2, b"straight to stderr\n")
        done.write_text(f"{os.getpid()} {os.nice(0)}")

    with ahead(work) as pid:
        assert pid is not None and pid != os.getpid()
        wait_for_file(done)
    # not niced: the command's stages wait for it, and other jobs must not starve it meanwhile
    assert done.read_text() == f"{pid} {os.nice(0)}"
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)
    out, err = capfd.readouterr()
    assert "forked process" not in out and "straight to stderr" not in err


def test_unfinished_work_is_stopped_and_cleans_up(tmp_path: Path) -> None:
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    began = time.monotonic()
    with ahead(work_that_sleeps(started, cleaned)):
        wait_for_file(started)
    assert time.monotonic() - began < 20
    assert cleaned.exists()


def test_work_still_running_is_stopped_when_asked_and_cleans_up(tmp_path: Path) -> None:
    """What training does first (`end_work_ahead`): the work stops now, its cleanup runs, and the
    block's end leaves the reaped process alone."""
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    with ahead(work_that_sleeps(started, cleaned)) as pid:
        wait_for_file(started)
        assert end_work_ahead() == 1
        assert cleaned.exists()
        assert not _alive(pid)
        assert end_work_ahead() == 0  # nothing left to stop
    with ahead(lambda: None) as pid:  # finished before it was asked: reaped, not counted
        time.sleep(0.5)
        assert end_work_ahead() == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_failing_work_is_not_the_commands_error(tmp_path: Path) -> None:
    def work() -> None:
        raise RuntimeError("the stage will do it and say so")

    with ahead(work) as pid:
        assert pid is not None
    # the block ran, nothing raised here


def test_nothing_goes_ahead_when_not_wanted_or_on_one_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    with ahead(marker.touch, wanted=False) as pid:
        assert pid is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    with ahead(marker.touch) as pid:
        assert pid is None
    assert not marker.exists()


def test_work_ends_when_the_command_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "ahead.pid"
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from pathlib import Path\n"
            "from tasks.core.ahead import ahead\n"
            "def work():\n"
            f"    Path({str(pid_file)!r}).write_text(str(__import__('os').getpid()))\n"
            "    time.sleep(120)\n"
            "with ahead(work):\n"
            "    time.sleep(120)\n",
        ],
        cwd=REPO,
    )
    try:
        wait_for_file(pid_file)
        forked = int(pid_file.read_text())
        command.kill()  # no exit handlers, no `finally`: the kernel's word alone
        command.wait()
        deadline = time.monotonic() + 20
        while _alive(forked):
            assert time.monotonic() < deadline, "the work ahead outlived its command"
            time.sleep(0.05)
    finally:
        command.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie waits for init to reap it: it runs no more
