"""Running `python -m tuneline ...` for the tests without paying its third-party imports each time.

A command's own work in the tests is a few training steps; most of its seconds went to importing
torch, transformers, MLflow, Great Expectations and the like, again in every one of the suite's
few hundred commands. This module keeps one process that has imported those libraries and forks
it for each command: the child takes the test's arguments, environment, working folder and
standard streams, then runs tuneline's real entry point (`runpy` on `tuneline`, as `python -m`
does). Nothing of tuneline's own is imported before the fork, and Prefect's settings are read
again from the command's environment, so every command reads its own environment; it is a
separate process with its own exit status, killable like any other.

Tests of how a command starts (a cold interpreter, a busy machine, signals from a terminal) start
a real `python -m tuneline` instead.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Imported once, before any fork: third-party libraries that read nothing a test varies when
# they are imported, and Prefect, whose settings (taken from the environment at import) each
# child reads again from its own environment. Nothing of tuneline's.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "torch",
    "transformers",
    "transformers:AutoTokenizer",
    "transformers:AutoModelForSequenceClassification",
    "transformers:AutoModelForCausalLM",
    "transformers:Trainer",
    "peft",
    "datasets",
    "sklearn.linear_model",
    "sklearn.metrics",
    "scipy.stats",
    "matplotlib",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "great_expectations",
    "sqlalchemy",
    "httpx",
    "pydantic",
    "yaml",
    "rich.console",
    "typer",
    "prefect",
    "prefect.flows",
    "prefect.server.api.server",
)
MAX_REQUEST = 1 << 20


# -- the server: a process that has imported PRELOAD and forks one child per command -------------


def _preload() -> None:
    for entry in PRELOAD:
        module, _, attribute = entry.partition(":")
        loaded = importlib.import_module(module)
        if attribute:
            getattr(loaded, attribute)
    extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if extra:  # a fork copies only the forking thread: what the others held would be lost
        raise RuntimeError(f"a preloaded library started threads {extra}; it cannot be forked")


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the command and run it. tuneline's entry point ends the
    process itself; a `SystemExit` raised before it gets there ends it as the interpreter would."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()  # its own process group, as a command started from a shell
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # what `python -m` puts first
    sys.argv = ["tuneline", *request["args"]]
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # Prefect's settings from this command's environment
    # the signal handling the interpreter sets up at start-up
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    runpy.run_module("tuneline", run_name="__main__", alter_sys=True)


def serve(address: str) -> None:
    """Preload, then fork a child for each request on the Unix socket `address`; report each
    child's exit status on the connection that asked for it."""
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener], [], [], 0.05)
        if readable:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                for held in (listener, conn, *waiting.values()):
                    held.close()
                _child(request, fds)
                raise SystemExit(0)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()


# -- the client: what the tests call -------------------------------------------------------------


class ForkServer:
    """A running fork server (started by the `cli` fixture) and the way to run commands in it."""

    def __init__(self, folder: Path) -> None:
        self.address = str(folder / "forkserver.sock")
        self.log = folder / "forkserver.log"
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.forkserver", self.address],
                cwd=Path(__file__).resolve().parent.parent,
                stdout=subprocess.PIPE,
                stderr=handle,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self.process.kill()
            raise RuntimeError(f"the fork server did not start:\n{self.log.read_text()[-3000:]}")

    def run(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        input: str | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Like `subprocess.run([python, "-m", "tuneline", *args], capture_output=True,
        text=True)`, in a fork of the preloaded process."""
        with (
            tempfile.TemporaryFile() as stdin,
            tempfile.TemporaryFile() as stdout,
            tempfile.TemporaryFile() as stderr,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
        ):
            if input is not None:
                stdin.write(input.encode())
                stdin.seek(0)
            request = {
                "args": [str(a) for a in args],
                "env": dict(os.environ if env is None else env),
                "cwd": str(cwd or os.getcwd()),
            }
            conn.connect(self.address)
            streams = [stdin.fileno(), stdout.fileno(), stderr.fileno()]
            socket.send_fds(conn, [json.dumps(request).encode()], streams)
            reader = conn.makefile("rb")
            pid = int(reader.readline())
            code = self._wait(conn, reader, pid, timeout, args)
            stdout.seek(0)
            stderr.seek(0)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
        return subprocess.CompletedProcess(
            [sys.executable, "-m", "tuneline", *map(str, args)], code, out, err
        )

    @staticmethod
    def _wait(conn: socket.socket, reader: Any, pid: int, timeout: float, args: list[str]) -> int:
        conn.settimeout(timeout)
        started = time.monotonic()
        try:
            line = reader.readline()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(args, time.monotonic() - started) from None
        if not line:
            raise RuntimeError("the fork server went away while a command ran")
        return int(line)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.address)


_running: list[ForkServer] = []


def tuneline(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python -m tuneline ARGS` for a test, in a fork of the preloaded process (started on first
    use, stopped at the end of the session: `stop_all`)."""
    if not _running:
        _running.append(ForkServer(Path(tempfile.mkdtemp(prefix="tuneline-forkserver-"))))
    return _running[0].run([str(a) for a in args], env, cwd, input, timeout)


def stop_all() -> None:
    while _running:
        _running.pop().stop()


if __name__ == "__main__":
    serve(sys.argv[1])
