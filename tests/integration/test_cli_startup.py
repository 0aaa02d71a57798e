"""Start-up failures through the `tuneline` command: a read-only TUNELINE_HOME, a dead
PREFECT_API_URL and a temporary Prefect server that cannot start are one clear line and exit 1;
on a machine whose every core is busy, commands that need a Prefect API still work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

RECIPE = REPO / "deployments" / "sentiment-lora.yaml"


def tuneline(
    *args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None, timeout=600
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # a test names it
    full.update(env or {})
    return subprocess.run(
        [*(wrap or []), sys.executable, "-m", "tuneline", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-4000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


def read_only(folder: Path) -> list[str] | None:
    """A command prefix under which `folder` is read-only, or None where that cannot be made:
    chmod for an ordinary user; for root (who writes anywhere) a read-only bind mount in a
    private mount namespace of the command alone."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    )
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", "sh", "-c", f'! touch "{folder}/probe"'],
        capture_output=True,
    )
    return ["unshare", "-m", "sh", "-c", script, "sh"] if probe.returncode == 0 else None


@pytest.mark.parametrize("command", ["validate", "run"])
def test_read_only_home_is_one_line(tmp_path: Path, command: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wrap = read_only(home)
    if wrap is None:
        pytest.skip("cannot make a folder read-only here (root without mount namespaces)")
    try:
        result = tuneline(command, str(RECIPE), env={"TUNELINE_HOME": str(home)}, wrap=wrap)
    finally:
        home.chmod(0o755)
    assert_one_line_error(result, f"TUNELINE_HOME {home}", "not writable", "set TUNELINE_HOME")
    assert not any(home.iterdir())


@pytest.mark.parametrize("command", ["validate", "run", "serve"])
def test_dead_prefect_api_url_is_one_line(command: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    result = tuneline(command, str(RECIPE), env={"PREFECT_API_URL": url})
    assert_one_line_error(
        result, f"PREFECT_API_URL={url}", "does not answer", "prefect server start"
    )
    assert time.monotonic() - started < 60


def test_temporary_server_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    # a database URL the server cannot open, and a wait of 1 s: it never comes up
    env = {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:////nonexistent/dir/prefect.db",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
    }
    result = tuneline("validate", str(RECIPE), env=env)
    assert_one_line_error(
        result,
        "temporary Prefect API server did not start within 1 s (2 attempts",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "PREFECT_API_URL",
    )


def start_burners(seconds: float) -> list[subprocess.Popen[bytes]]:
    """One busy loop per core this process may use; each stops itself after `seconds`."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in os.sched_getaffinity(0)]


@pytest.mark.slow
def test_validate_works_while_every_core_is_busy(tmp_path: Path) -> None:
    # a fresh Prefect home: the temporary server also creates its database, the slowest start.
    # `validate` is the cheapest command that needs the temporary server; `run` and `compare`
    # start it the same way (tasks.services.prefect_api.ensure_api).
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    burners = start_burners(seconds=360)
    try:
        time.sleep(2)  # let the burners take the cores first
        started = time.monotonic()
        result = tuneline("validate", str(RECIPE), env=env, timeout=330)
        took = time.monotonic() - started
        assert all(b.poll() is None for b in burners), "the burners stopped before the command"
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert "Timed out" not in result.stderr, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
    assert "data contract 'classification': passed" in result.stdout, result.stdout[-3000:]
    print(f"validate with every core busy: {took:.0f} s")


def test_temporary_server_does_not_outlive_a_killed_command(
    keyword_recipe: Path, tmp_path: Path
) -> None:
    """The temporary server runs in a session of its own (a terminal's Ctrl-C reaches tuneline
    alone); when tuneline is killed outright it stops by itself and removes its log."""
    import psutil

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["TMPDIR"] = str(scratch)
    output = tmp_path / "run.log"
    with output.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneline", "run", str(keyword_recipe)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "Beginning flow run" not in output.read_text():
            assert proc.poll() is None, output.read_text()[-3000:]
            time.sleep(0.2)
        logs = list(scratch.glob("tuneline-prefect-server-*.log"))
        assert len(logs) == 1, output.read_text()[-3000:]
        servers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(logs[0]) in " ".join(p.info["cmdline"] or [])
        ]
        assert len(servers) == 1
        assert servers[0].ppid() == proc.pid
        assert os.getsid(servers[0].pid) != os.getsid(proc.pid)  # Ctrl-C does not reach it
    finally:
        proc.kill()
        proc.wait()
    gone, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive, "the temporary server outlived the killed command"
    assert not logs[0].exists()


def test_temporary_server_warms_up_with_reads_only() -> None:
    """The temporary server asks itself what a flow run asks first, once it answers: that
    creates no flow and no flow run, and a server that never answers only ends the warm-up."""
    import httpx

    from tasks.services import prefect_api

    prefect_api._warm_up(free_port(), timeout=0.5)  # nothing listens: returns, raises nothing

    server = prefect_api._launch()
    try:
        url = server.api_url

        def counts() -> tuple[int, int]:
            return tuple(  # type: ignore[return-value]
                httpx.post(f"{url}/{kind}/count", json={}, timeout=30).json()
                for kind in ("flows", "flow_runs")
            )

        deadline = time.monotonic() + 300
        with httpx.Client(timeout=5.0) as http:
            while not prefect_api._healthy(server, http):
                assert server.process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        before = counts()
        prefect_api._warm_up(server.port)
        assert counts() == before
    finally:
        prefect_api._stop(server)
