"""Work a command does ahead of need, in a forked process on a core its own work leaves free.

A `tuneline run` spends its first seconds in stages that run one after the other on one thread
(the data contract above all). Work that depends on nothing those stages compute, and that a
later stage reads from the cache (tokenized data, the base model's evaluation), can run meanwhile
in a forked process (`flows.ahead` says what): the stage then finds it done, or waits on the
cache's lock for the process that is doing it.

The forked process writes only through the cache (staged folders, file locks), so killing it
leaves nothing that looks complete, and a failure there only means the stage does the work
itself, reporting any problem in its usual words: its output goes nowhere. It is forked before
the command starts any thread, runs none of the command's exit handlers, and is stopped when the
command's work ends, when the command is gone (killed), or when training begins
(`end_work_ahead`): training wants every core, and what the process had not finished is done by
the stage that reads it. It runs at the command's own priority: the command's stages wait for it
on the cache's locks, so a lower one would let other jobs on a busy machine starve it while the
command waits (niced, it got a tenth of a core beside two busy loops, and a run waited 16 s for
the base model's answers it was computing). On a one-core machine nothing goes ahead: there is
no core to spare."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator


def spare_core() -> bool:
    """Whether this process may run on more than one core (and can fork)."""
    if not hasattr(os, "fork"):
        return False
    affinity = getattr(os, "sched_getaffinity", None)
    return (len(affinity(0)) if affinity else os.cpu_count() or 1) > 1


def _leave_on_term(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds `staged` and lock blocks, which remove what is unfinished


def _end_with(parent: int) -> None:
    """Have the kernel stop this process when its parent is gone (killed, say), so that nothing
    works on for a command that ended (Linux; elsewhere the work ends by itself)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # gone before the request took
        raise SystemExit(1)


def _fork(work: Callable[[], None]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    # what lives now is shared with the forked process until one of them writes to it; frozen, the
    # forked process's collections leave it alone instead of writing to the objects' headers,
    # which copies their pages (about 20 MB less of its own memory on the tiny model). The command
    # keeps it frozen, as `tasks.core.collector` does with what survives a full collection.
    gc.freeze()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    gc.enable()  # the command may have paused collections for its imports (`tasks.core.collector`)
    try:  # the forked process: never returns into the command
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # nothing on the user's terminal, no pipe held open
            os.dup2(quiet, fd)
        # nor through Python streams that write elsewhere than those descriptors
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - until os._exit
        signal.signal(signal.SIGTERM, _leave_on_term)
        _end_with(parent)
        work()
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the stage does the work itself and reports
        pass
    finally:
        os._exit(code)  # not the command's exit handlers (its server, its MLflow runs)


def _end(pid: int, grace: float = 5.0) -> None:
    """Reap the forked process, stopping it first when it still runs."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


_running: set[int] = set()  # this process's work ahead, not yet reaped


@contextlib.contextmanager
def ahead(work: Callable[[], None], wanted: bool = True) -> Iterator[int | None]:
    """Run `work` in a forked process while the block runs (when `wanted` and a core is spare);
    yields its process id (None when nothing went ahead). The process is stopped, if it still
    runs, and reaped when the block ends (or before, by `end_work_ahead`)."""
    pid = _fork(work) if wanted and spare_core() else None
    if pid is not None:
        _running.add(pid)
    try:
        yield pid
    finally:
        if pid in _running:
            _running.discard(pid)
            _end(pid)


def end_work_ahead() -> int:
    """Stop and reap, now, this process's work ahead that still runs: what it had not finished
    (its staged folders removed, its locks released) is done by the stage that reads it. Returns
    how many processes were still running."""
    ended = 0
    for pid in sorted(_running):
        _running.discard(pid)
        with contextlib.suppress(ChildProcessError):
            if not os.waitpid(pid, os.WNOHANG)[0]:
                ended += 1
                _end(pid)
    return ended
