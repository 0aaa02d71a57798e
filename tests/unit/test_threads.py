"""Training takes one PyTorch thread per core other work leaves free: spinning OpenMP threads
beside busy cores make every step several times slower."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from tasks.training.base import LoadWindow, busy_cores, threads_for, threads_for_the_load


def test_threads_for_the_cores_left_free() -> None:
    assert threads_for(cores=2, others_busy=0.1, current=2) == 2
    assert threads_for(cores=2, others_busy=0.9, current=2) == 1
    assert threads_for(cores=2, others_busy=6.0, current=2) == 1  # never fewer than one
    assert threads_for(cores=16, others_busy=4.2, current=16) == 12
    assert threads_for(cores=16, others_busy=0.0, current=8) == 8  # never more than torch's


def test_busy_cores_mean_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores + 1)
    ]
    try:
        time.sleep(1.0)  # every busy loop running
        with threads_for_the_load() as threads:
            assert threads == 1
            assert torch.get_num_threads() == 1
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert torch.get_num_threads() == before


def test_a_users_thread_count_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    with threads_for_the_load() as threads:
        assert threads == before == torch.get_num_threads()


def test_busy_cores_leave_niced_and_idle_time_out() -> None:
    # 2 cores over 1 s: 2 s of CPU time in all
    counters = dict(user=0.5, nice=1.0, system=0.1, idle=0.3, iowait=0.1, irq=0.0, softirq=0.0)
    assert busy_cores({**counters, "steal": 0.0}, 2) == pytest.approx(0.6)
    # guest time is counted inside user time already
    assert busy_cores({**counters, "guest": 0.4, "guest_nice": 0.0, "steal": 0.0}, 2) == (
        pytest.approx(0.6)
    )
    everything_niced = dict(user=0.0, nice=2.0, system=0.0, idle=0.0, iowait=0.0)
    assert busy_cores(everything_niced, 2) == 0.0
    assert busy_cores(dict(user=2.0, nice=0.0, system=0.0, idle=0.0), 2) == pytest.approx(2.0)


def test_niced_work_leaves_the_cores_to_training() -> None:
    """Niced work (another user's batch job, say) yields its core, so it does not count as load."""
    cores = len(os.sched_getaffinity(0))
    quiet = LoadWindow(shortest=1.0).others_busy()
    if quiet > cores - 0.75:
        pytest.skip(f"other work keeps {quiet:.1f} of {cores} cores busy: nothing left to tell")
    burners = [
        subprocess.Popen([sys.executable, "-c", "import os; os.nice(10)\nwhile True: pass"])
        for _ in range(cores + 1)
    ]
    try:
        time.sleep(0.5)  # every busy loop running
        niced = LoadWindow(shortest=1.0).others_busy()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert niced < quiet + 0.5, (quiet, niced)  # counted, they would fill every core
