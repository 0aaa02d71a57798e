"""A configured Prefect API that is alive but slow (its machine busy) is asked again before the
run gives up; nothing listening fails at once; both in one clear line."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tasks.services import prefect_api
from tasks.services.prefect_api import PrefectUnavailable, check_api


@pytest.fixture
def quick_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefect_api, "HEALTH_TIMEOUT", 0.3)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_silent_api_is_asked_again_then_one_clear_error(
    quick_timeout: None, silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{silent_port}/api"
    caplog.set_level(logging.WARNING, logger="tuneline.prefect")
    started = time.monotonic()
    with pytest.raises(PrefectUnavailable) as raised:
        check_api(url, patience=2.0)
    message = str(raised.value)
    assert f"PREFECT_API_URL={url} does not answer" in message and "after 2 s" in message
    assert "\n" not in message and "prefect server start" in message
    assert "slow to answer" in caplog.text  # asked again
    assert 1.2 < time.monotonic() - started < 8


def test_nothing_listening_fails_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens
    started = time.monotonic()
    with pytest.raises(PrefectUnavailable, match="does not answer"):
        check_api(f"http://127.0.0.1:{port}/api", patience=60.0)
    assert time.monotonic() - started < 5


def test_slow_first_answer_is_waited_for(quick_timeout: None) -> None:
    calls: list[float] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            calls.append(time.monotonic())
            if len(calls) == 1:
                time.sleep(0.6)  # past the client's timeout: the first ask times out
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_api(f"http://127.0.0.1:{server.server_address[1]}/api", patience=5.0)
    finally:
        server.shutdown()
    assert len(calls) == 2
