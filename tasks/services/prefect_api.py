"""Reaching a Prefect API before a command needs one, so that a dead or slow API is one clear
line instead of a traceback from deep inside a flow run.

- With `PREFECT_API_URL` set (environment or Prefect profile), that server must answer its health
  check.
- Without it, Prefect starts a temporary local server. Its default wait (20 s) is too short on a
  machine whose cores are busy, so tuneline waits `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`
  (Prefect's own setting; tuneline's default is 180 s), tries once more with a fresh server, and
  only then gives up. The started server is the one Prefect's clients use for the rest of the
  process (its URL in Prefect's process-wide settings), and tuneline stops it at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core import environment
from tasks.core.errors import TunelineError, first_line

if TYPE_CHECKING:
    import httpx

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 180
HEALTH_TIMEOUT = 30.0  # a real server on a busy machine can be slow to answer, not dead
HEALTH_PATIENCE = 120.0  # how long such a server is asked again before the run gives up
log = logging.getLogger("tuneline.prefect")


class PrefectUnavailable(TunelineError):
    """No Prefect API to run flows against: the configured one does not answer, or the temporary
    one did not start."""


def startup_timeout() -> int:
    """Seconds to wait for the temporary server: the Prefect setting when set, else 180."""
    raw = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_STARTUP_TIMEOUT
    try:
        value = int(float(raw))
    except ValueError:
        raise PrefectUnavailable(
            f"{STARTUP_TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 300"
        ) from None
    if value <= 0:
        raise PrefectUnavailable(f"{STARTUP_TIMEOUT_ENV}={raw!r} must be a positive number")
    return value


def configured_api_url() -> str | None:
    """The API URL Prefect will use (environment or active profile), None for a temporary one."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def check_api(url: str, patience: float = HEALTH_PATIENCE) -> None:
    """Raise `PrefectUnavailable` unless the Prefect API at `url` answers its health check.

    Nothing listening there fails at once. A server that accepts the connection but is slow to
    answer (its machine busy: the health check timed out) is asked again until `patience`
    seconds have passed, with a warning, before the run gives up on it."""
    import httpx

    deadline = time.monotonic() + patience
    while True:
        try:
            response = httpx.get(f"{url}/health", timeout=HEALTH_TIMEOUT)
            break
        except httpx.TimeoutException as exc:
            if time.monotonic() + HEALTH_TIMEOUT > deadline:
                failure = f"{first_line(exc) or 'timed out'}; still none after {patience:.0f} s"
                raise _not_answering(url, failure) from None
            log.warning("the Prefect API at %s is slow to answer; asking again", url)
        except httpx.HTTPError as exc:
            raise _not_answering(url, first_line(exc)) from None
    if response.status_code != 200:
        raise PrefectUnavailable(
            f"the Prefect API at PREFECT_API_URL={url} answered HTTP {response.status_code} to "
            "/health: set PREFECT_API_URL to the server's API address (ending in /api)"
        )


def _not_answering(url: str, failure: str) -> PrefectUnavailable:
    return PrefectUnavailable(
        f"the Prefect API at PREFECT_API_URL={url} does not answer ({failure}): "
        "start that server (prefect server start) or fix PREFECT_API_URL; unset it to let "
        "tuneline start a temporary local one"
    )


@dataclass
class _Server:
    """The temporary server this process launched: its process, port and log."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    launched: float = field(default_factory=time.monotonic)
    adopted: bool = False  # this process's Prefect clients use it

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


_launched: list[_Server] = []  # this process's temporary server, once launched


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch() -> _Server:
    """Start the temporary server's process (Prefect's own app under uvicorn, as Prefect starts
    it, with the same settings) without waiting for it. It runs in a session of its own, so a
    terminal's Ctrl-C reaches tuneline alone: the run is marked crashed on a server that still
    answers, then tuneline stops the server. Its output goes to a log file, shown when it fails
    to start; it stops itself when tuneline's process is gone."""
    from prefect.settings import get_current_settings

    port = _free_port()
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the child, closed below
        prefix="tuneline-prefect-server-", suffix=".log", delete=False
    )
    env = {
        **environment.snapshot(),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    with handle:
        process = subprocess.Popen(
            # -P: tuneline's own module, never one in the working folder
            [sys.executable, "-P", "-m", "tasks.services.prefect_api", str(port), handle.name],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return _Server(process, port, Path(handle.name))


def start_in_background() -> None:
    """Launch the temporary server now, when this process will need one, and go on (loading data,
    reading the registry); `ensure_api` then waits for it. Its start-up (seconds of imports in
    its own process) runs beside that work instead of after it. Nothing happens when a Prefect
    API is configured or a server is already launched; a problem found here is raised by
    `ensure_api`, in its usual words."""
    if _launched:
        return
    try:
        if configured_api_url() or not _ephemeral_allowed():
            return
        startup_timeout()
    except PrefectUnavailable:
        return  # ensure_api says it
    _launched.append(_launch())
    atexit.register(_stop_all)


def stop_background_start() -> None:
    """The command ended without needing the server launched by `start_in_background`: stop it."""
    _stop_all()


def _stop(server: _Server) -> None:
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(OSError):
        server.log_path.unlink()


def _stop_all() -> None:
    while _launched:
        _stop(_launched.pop())


# What a run imports later anyway (torch, transformers' tokenizer and model classes, peft, Great
# Expectations: seconds each): imported while the server is still coming up, on the core its
# start-up leaves free, instead of after it.
_LATER = (
    ("torch", None),
    ("transformers", "AutoTokenizer"),
    ("transformers", "AutoModelForCausalLM"),
    ("peft", None),
    ("great_expectations", None),
)


def _healthy(server: _Server, http: httpx.Client) -> bool:
    import httpx

    try:
        return http.get(f"{server.api_url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(server: _Server, timeout: int) -> _Server:
    """Wait until `server` answers (importing what the run needs meanwhile); returns the server
    that answered (a fresh one on another port if its port was taken first). Raises
    `RuntimeError` with what went wrong when it does not answer within `timeout` seconds."""
    import importlib

    import httpx

    later = list(_LATER)
    deadline = server.launched + timeout
    # one client for every poll: each new one builds an SSL context (about 20 ms a poll)
    with httpx.Client(timeout=5.0) as http:
        while True:
            code = server.process.poll()
            if code == 3:  # uvicorn's start-up failure: the port was taken meanwhile; another one
                _stop(server)
                _launched.remove(server)
                server = _launch()
                _launched.append(server)
                continue
            if code is not None:
                tail = server.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"server exited with code {code}: {' | '.join(tail)[-300:]}")
            if _healthy(server, http):
                return server
            if time.monotonic() >= deadline:
                raise RuntimeError("Timed out while attempting to connect to the API server")
            if later:
                module, attribute = later.pop(0)
                try:
                    loaded = importlib.import_module(module)
                    if attribute:
                        getattr(loaded, attribute)
                except Exception:  # noqa: BLE001 - only a head start; the real import reports them
                    later.clear()
            else:
                time.sleep(0.1)


def _adopt(server: _Server) -> None:
    """Point this process's Prefect clients at the started server, as `PREFECT_API_URL` would:
    Prefect's process-wide settings (those every thread without settings of its own reads) get
    its URL. Prefect's own way to find a temporary server (`SubprocessASGIServer`) would import
    its whole server app into this process, seconds of CPU on every run, for a lookup. The
    environment stays as the user set it: child processes and `tasks.services.concurrency` see
    no server URL (this server is this process's alone), and tuneline stops it at exit."""
    import prefect.context

    current = prefect.context.SettingsContext.get()
    assert current is not None  # Prefect builds its process-wide settings at import
    # no UI URL: the temporary server serves none, so no "View at" link to a page that is not
    # there; no version check: the server runs this very Prefect installation; no flow-run
    # heartbeats: they tell a lasting server that a run crashed, and this one stops with the run
    # (the heartbeat thread also held every flow's end for up to a second)
    settings = current.settings.copy_with_update(
        updates={
            "api.url": server.api_url,
            "ui_url": "",
            "client.server_version_check_enabled": False,
            "flows.heartbeat_frequency": None,
        }
    )
    prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.SettingsContext(
        profile=current.profile, settings=settings
    )
    server.adopted = True
    log.info("temporary Prefect server on %s", server.api_url)


def _ephemeral_allowed() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().server.ephemeral.enabled)


def ensure_api() -> None:
    """Make sure the flows this process runs have a Prefect API (see the module docstring)."""
    url = configured_api_url()
    if url:
        check_api(url)
        return
    if not _ephemeral_allowed():
        raise PrefectUnavailable(
            "no Prefect API: PREFECT_API_URL is not set and the active Prefect profile does not "
            "allow a temporary server; set PREFECT_API_URL, or PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=true"
        )
    start_temporary_server(startup_timeout())


def start_temporary_server(timeout: int, attempts: int = 2) -> str:
    """Start Prefect's temporary local server (or take the one `start_in_background` launched),
    waiting up to `timeout` seconds per attempt; returns its API URL."""
    if _launched and _launched[-1].adopted:
        return _launched[-1].api_url
    if not _launched:
        _launched.append(_launch())
        atexit.register(_stop_all)
    failure = ""
    for attempt in range(1, attempts + 1):
        server = _launched[-1]
        try:
            server = _wait_for(server, timeout)
        except RuntimeError as exc:
            failure = first_line(exc)
            log.warning(
                "temporary Prefect server did not start (attempt %d of %d, %.0f s): %s",
                attempt,
                attempts,
                time.monotonic() - server.launched,
                failure[:200],
            )
            _stop_all()  # kill the half-started one; the next attempt gets a fresh server
            if attempt < attempts:
                _launched.append(_launch())
            continue
        _adopt(server)
        return server.api_url
    detail = "" if failure.rstrip(".").endswith("API server") else f" [{failure[:160]}]"
    raise PrefectUnavailable(
        f"the temporary Prefect API server did not start within {timeout} s ({attempts} "
        f"attempts; is the machine very busy?): set {STARTUP_TIMEOUT_ENV} higher, or start a "
        f"server (prefect server start) and set PREFECT_API_URL to it{detail}"
    )


# What a flow run asks first, and what answers slowly the first time a server is asked (about 0.2
# s each on a small machine, milliseconds later): a CSRF token, the result-storage setting, and
# a flow run (the first one read builds what any later answer about a flow run uses).
_WARM_UP: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("GET", "/csrf-token", {"params": {"client": "tuneline-warm-up"}}),
    ("GET", "/admin/storage", {}),
    ("POST", "/flow_runs/filter", {"json": {"limit": 1}}),
)


def _warm_up(port: int, timeout: float = 300.0) -> None:
    """Ask the server just started for what a flow run asks first, as soon as it answers: the
    server prepares those answers on the first request (about 0.6 s in all), now while the
    command is still importing what it needs instead of when its flow starts. Reads only (and a
    CSRF token for a client of that name); a failure changes nothing."""
    import httpx

    deadline = time.monotonic() + timeout
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30.0) as client,
    ):
        while time.monotonic() < deadline:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        for method, path, options in _WARM_UP:
            client.request(method, path, **options)


def _serve(port: int, log_path: str) -> None:
    """The temporary server's process: Prefect's API app under uvicorn on loopback, as Prefect
    runs it, stopping itself once the process that launched it is gone (killed, or its terminal
    closed) so that no server is left behind."""
    import signal
    import threading

    import uvicorn

    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        with contextlib.suppress(OSError):
            os.unlink(log_path)  # nobody is left to read it
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown

    threading.Thread(target=watch_parent, name="watch-parent", daemon=True).start()
    threading.Thread(target=_warm_up, args=(port,), name="warm-up", daemon=True).start()
    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
