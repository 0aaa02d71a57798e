"""Reaching a Prefect API before a command needs one, so that a dead or slow API is one clear
line instead of a traceback from deep inside a flow run.

- With `PREFECT_API_URL` set (environment or Prefect profile), that server must answer its health
  check.
- Without it, Prefect starts a temporary local server. Its default wait (20 s) is too short on a
  machine whose cores are busy, so tuneline waits `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`
  (Prefect's own setting; tuneline's default is 180 s), tries once more with a fresh server, and
  only then gives up. The started server is the one Prefect's clients use for the rest of the
  process (Prefect keeps one per process), and Prefect stops it at exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from tasks.errors import TunelineError, first_line

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 180
HEALTH_TIMEOUT = 30.0  # a real server on a busy machine can be slow to answer, not dead
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


def check_api(url: str) -> None:
    """Raise `PrefectUnavailable` unless the Prefect API at `url` answers its health check."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=HEALTH_TIMEOUT)
    except httpx.HTTPError as exc:
        raise PrefectUnavailable(
            f"the Prefect API at PREFECT_API_URL={url} does not answer ({first_line(exc)}): "
            "start that server (prefect server start) or fix PREFECT_API_URL; unset it to let "
            "tuneline start a temporary local one"
        ) from None
    if response.status_code != 200:
        raise PrefectUnavailable(
            f"the Prefect API at PREFECT_API_URL={url} answered HTTP {response.status_code} to "
            "/health: set PREFECT_API_URL to the server's API address (ending in /api)"
        )


@dataclass
class _Starting:
    """A temporary server being started in the background, and how that ended."""

    thread: threading.Thread
    url: str | None = None
    error: BaseException | None = field(default=None)


_starting: list[_Starting] = []  # this process's one temporary server start, if begun


class _UnusedServerQuiet(logging.Filter):
    """Prefect's "Starting/Stopping temporary server" lines, held back until a command uses the
    server begun early: a command that ends first (a one-line error, an unchanged run) prints
    nothing about a server it never needed."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Starting temporary server"):
            self.held.append(record)
            return False
        return not message.startswith("Stopping temporary server")


_quiet = _UnusedServerQuiet()


def start_in_background() -> None:
    """Begin starting the temporary server, when this process will need one, while the caller
    goes on (loading data, reading the registry, importing torch); `ensure_api` then waits for it.
    The server's own start-up (seconds of imports in its process) runs beside that work instead
    of after it. Nothing happens when a Prefect API is configured or a start is already under
    way; a problem found here is raised by `ensure_api`, in its usual words."""
    if _starting:
        return
    try:
        if configured_api_url() or not _ephemeral_allowed():
            return
        timeout = startup_timeout()
    except PrefectUnavailable:
        return  # ensure_api says it

    def start() -> None:
        try:
            job.url = start_temporary_server(timeout)
        except BaseException as exc:  # handed to ensure_api, raised there
            job.error = exc

    job = _Starting(threading.Thread(target=start, name="prefect-temporary-server", daemon=True))
    logging.getLogger("prefect").addFilter(_quiet)
    _starting.append(job)
    job.thread.start()


def stop_background_start() -> None:
    """The command ended without needing the server begun by `start_in_background`: stop it."""
    if not _starting:
        return
    from prefect.server.api.server import SubprocessASGIServer

    process = SubprocessASGIServer().server_process
    if process is not None and process.poll() is None:
        process.terminate()


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


def _import_while(thread: threading.Thread) -> None:
    import importlib

    for module, attribute in _LATER:
        if not thread.is_alive():
            return
        try:
            loaded = importlib.import_module(module)
            if attribute:
                getattr(loaded, attribute)
        except Exception:  # noqa: BLE001 - only a head start; the real import reports problems
            return


def _ephemeral_allowed() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().server.ephemeral.enabled)


def ensure_api() -> None:
    """Make sure the flows this process runs have a Prefect API (see the module docstring)."""
    url = configured_api_url()
    if url:
        check_api(url)
        return
    if _starting:
        job = _starting[0]
        _import_while(job.thread)
        job.thread.join()
        prefect_log = logging.getLogger("prefect")
        if _quiet in prefect_log.filters:  # the server is used: its lines are shown from now on
            prefect_log.removeFilter(_quiet)
            for record in _quiet.held:
                prefect_log.handle(record)
        if job.error is not None:
            raise job.error
        return
    if not _ephemeral_allowed():
        raise PrefectUnavailable(
            "no Prefect API: PREFECT_API_URL is not set and the active Prefect profile does not "
            "allow a temporary server; set PREFECT_API_URL, or PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=true"
        )
    start_temporary_server(startup_timeout())


def start_temporary_server(timeout: int, attempts: int = 2) -> str:
    """Start Prefect's temporary local server, waiting up to `timeout` seconds per attempt;
    returns its API URL."""
    from prefect.server.api.server import SubprocessASGIServer

    failure = ""
    for attempt in range(1, attempts + 1):
        server = SubprocessASGIServer()
        started = time.monotonic()
        try:
            server.start(timeout=timeout)
        except Exception as exc:  # Prefect raises RuntimeError, or httpx errors from its probe
            failure = first_line(exc)
            server.stop()  # kill the half-started one; the next attempt gets a fresh server
            log.warning(
                "temporary Prefect server did not start (attempt %d of %d, %.0f s): %s",
                attempt,
                attempts,
                time.monotonic() - started,
                failure[:200],
            )
            continue
        return server.api_url
    # Prefect's own message is "Timed out ..." (plus the exit code when the server died)
    detail = "" if failure.rstrip(".").endswith("API server") else f" [{failure[:160]}]"
    raise PrefectUnavailable(
        f"the temporary Prefect API server did not start within {timeout} s ({attempts} "
        f"attempts; is the machine very busy?): set {STARTUP_TIMEOUT_ENV} higher, or start a "
        f"server (prefect server start) and set PREFECT_API_URL to it{detail}"
    )
