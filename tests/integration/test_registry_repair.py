"""The registry repairing itself, against a real `mlflow server` behind a small loopback proxy that
can answer chosen endpoints with 503 (what a load balancer says while MLflow restarts): an
interrupted promotion is completed by the next run, a failing version search never causes a
retrain, `tuneline register` leaves a person's promotion alone, no credentials of the tracking URI
reach the output, and a damaged registration.json is one clear line."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]

SEARCH = ("GET", "/api/2.0/mlflow/model-versions/search")
SET_ALIAS = ("POST", "/api/2.0/mlflow/registered-models/alias")
PASSWORD = "s3cret-word"
HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


class RefusingProxy:
    """Forwards every request to the MLflow server, except those whose (method, path) is in
    `refuse`: those get a 503 (and are counted)."""

    def __init__(self, upstream_port: int) -> None:
        self.refuse: set[tuple[str, str]] = set()
        self.refused: Counter[tuple[str, str]] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                return

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                endpoint = (self.command, self.path.split("?")[0])
                if endpoint in proxy.refuse:
                    proxy.refused[endpoint] += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MlflowServer, RefusingProxy]]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-repair"))
    server.start()
    proxy = RefusingProxy(server.port)
    try:
        yield server, proxy
    finally:
        proxy.close()
        server.stop()


@pytest.fixture()
def proxy(registry: tuple[MlflowServer, RefusingProxy]) -> Iterator[RefusingProxy]:
    _, refusing = registry
    refusing.refuse.clear()
    refusing.refused.clear()
    yield refusing
    refusing.refuse.clear()


def tuneline(*args: str, proxy: RefusingProxy) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    env.update(
        # credentials inside the URI: the server ignores them, the output must not show them
        MLFLOW_TRACKING_URI=f"http://tuneline:{PASSWORD}@127.0.0.1:{proxy.port}",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="30",
        TUNELINE_REGISTRY_RETRY_DELAYS="0.2,0.2",
    )
    proc = forkserver.tuneline(*args, env=env, timeout=600)
    assert PASSWORD not in proc.stdout + proc.stderr, "the tracking URI's password was printed"
    return proc


def client(registry: tuple[MlflowServer, RefusingProxy]):
    from mlflow import MlflowClient

    return MlflowClient(registry[0].url)


def champion(registry: tuple[MlflowServer, RefusingProxy], name: str) -> str | None:
    try:
        return str(client(registry).get_model_version_by_alias(name, "champion").version)
    except Exception:
        return None


def versions(registry: tuple[MlflowServer, RefusingProxy], name: str) -> list:
    return client(registry).search_model_versions(f"name = '{name}'")


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interrupted_promotion_is_completed_by_the_next_run(
    keyword_recipe: Path, registry: tuple[MlflowServer, RefusingProxy], proxy: RefusingProxy
) -> None:
    name = "repair-interrupted"
    # MLflow stops answering between creating the version and moving `champion`
    proxy.refuse.add(SET_ALIAS)
    cut = tuneline("run", str(keyword_recipe), "--set", f"name={name}", proxy=proxy)
    assert cut.returncode == 1, cut.stdout[-2000:] + cut.stderr[-3000:]
    assert proxy.refused[SET_ALIAS] >= 1
    assert [v.version for v in versions(registry, name)] == ["1"], cut.stdout + cut.stderr
    assert champion(registry, name) is None
    assert versions(registry, name)[0].tags["promotion_state"] == "pending"

    proxy.refuse.clear()
    again = tuneline("run", str(keyword_recipe), "--set", f"name={name}", "--json", proxy=proxy)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert champion(registry, name) == "1"
    assert "completed the interrupted promotion of version 1" in again.stdout
    assert f"Registered {name} version 1 (champion)" in again.stdout
    outcome = last_json(again)
    assert outcome["status"] == "promoted" and outcome["promoted"] is True
    assert [v.version for v in versions(registry, name)] == ["1"]
    assert client(registry).get_model_version(name, "1").tags["promotion_state"] == "done"

    third = tuneline("run", str(keyword_recipe), "--set", f"name={name}", "--json", proxy=proxy)
    assert third.returncode == 0 and last_json(third)["status"] == "unchanged"


def test_failing_version_search_is_retried_then_one_line_and_no_retrain(
    keyword_recipe: Path, registry: tuple[MlflowServer, RefusingProxy], proxy: RefusingProxy
) -> None:
    name = "repair-search"
    first = tuneline("run", str(keyword_recipe), "--set", f"name={name}", "--json", proxy=proxy)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    runs_before = len(client(registry).search_runs([first_run_experiment(registry, name)]))

    proxy.refuse.add(SEARCH)
    failed = tuneline("run", str(keyword_recipe), "--set", f"name={name}", "--json", proxy=proxy)
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-3000:]
    assert proxy.refused[SEARCH] == 3, "the search was not retried (2 delays: 3 attempts)"
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "failed to look up" in errors[0], failed.stderr[-3000:]
    assert "503" in errors[0] and "nothing was trained" in errors[0]
    assert "Traceback" not in failed.stderr
    assert len(versions(registry, name)) == 1
    assert len(client(registry).search_runs([first_run_experiment(registry, name)])) == runs_before


def first_run_experiment(registry: tuple[MlflowServer, RefusingProxy], name: str) -> str:
    return str(client(registry).get_experiment_by_name(name).experiment_id)


def test_register_of_a_finished_run_leaves_a_manual_promotion_alone(
    keyword_recipe: Path,
    tuneline_home: Path,
    registry: tuple[MlflowServer, RefusingProxy],
    proxy: RefusingProxy,
) -> None:
    name = "repair-manual"
    # version 1 fails its gate (two steps are nowhere near perfect); version 2 has nothing to beat
    v1 = tuneline(
        "run", str(keyword_recipe), "--set", f"name={name}", "--set", "register.gate.min=0.9999",
        "--set", "train.max_steps=2", "--json", proxy=proxy,
    )  # fmt: skip
    assert v1.returncode == 3, v1.stdout[-2000:] + v1.stderr[-3000:]
    v2 = tuneline("run", str(keyword_recipe), "--set", f"name={name}", "--json", proxy=proxy)
    assert v2.returncode == 0, v2.stdout[-2000:] + v2.stderr[-3000:]
    assert last_json(v2)["model_version"] == "2" and champion(registry, name) == "2"

    promoted = tuneline("promote", name, "1", proxy=proxy)
    assert promoted.returncode == 0 and champion(registry, name) == "1"

    folder = tuneline_home / "runs" / name / last_json(v2)["mlflow_run_id"]
    assert (folder / "registration.json").is_file()
    again = tuneline("register", str(folder), proxy=proxy)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert "already registered" in again.stdout
    assert champion(registry, name) == "1", "`tuneline register` undid a person's promotion"
    assert len(versions(registry, name)) == 2


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"name": "m", "run_id": "r", "train": {', "not JSON at line 1"),
        ('{"name": "m", "run_id": "r"}', "no 'lineage' entry"),
        ("[1, 2, 3]", "damaged"),
        ("\xff\xfe{}", "damaged"),  # not UTF-8
    ],
)
def test_damaged_registration_file_is_one_clear_line(
    content: str, problem: str, tmp_path: Path, proxy: RefusingProxy
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "registration.json").write_text(content, encoding="latin-1")
    proc = tuneline("register", str(folder), proxy=proxy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "registration.json: damaged" in proc.stderr and problem in proc.stderr
    assert "re-run the recipe" in proc.stderr


def _version_with(name: str, key: str, tmp_path: Path, **tags: str) -> str:
    """A registered version as `register` leaves it, on the embedded store (no training)."""
    from tasks.services import tracking

    mlc = tracking.client()
    with contextlib.suppress(Exception):  # exists already
        mlc.create_registered_model(name)
    source = tmp_path / f"model-{key}"
    source.mkdir(exist_ok=True)
    tags = {"candidate_key": key, "promotion": "promoted", **tags}
    return str(mlc.create_model_version(name, str(source), tags=tags).version)


def test_settle_completes_a_pending_promotion_unless_champion_moved_on(tmp_path: Path) -> None:
    from tasks.registry import aliases
    from tasks.registry import register as registry
    from tasks.services import tracking

    mlc = tracking.client()
    name = "settle"
    # cut short before `champion` moved: the next look completes it, once
    v1 = _version_with(name, "k1", tmp_path, promotion_state="pending")
    settled = registry.settle_candidate(name, "k1")
    assert settled is not None and settled.promoted and not settled.already_registered
    assert "completed the interrupted promotion of version 1" in settled.reasons[0]
    assert str(mlc.get_model_version_by_alias(name, "champion").version) == v1
    again = registry.settle_candidate(name, "k1")
    assert again is not None and again.already_registered and not again.promoted

    # a person moved champion after version 2 was created: their choice stands
    v2 = _version_with(name, "k2", tmp_path, promotion_state="pending")
    v3 = _version_with(name, "k3", tmp_path, promotion="not promoted")
    aliases.promote(name, v3)
    settled = registry.settle_candidate(name, "k2")
    assert settled is not None and settled.already_registered and not settled.promoted
    assert "champion has moved since (version 3)" in settled.reasons[0]
    assert str(mlc.get_model_version_by_alias(name, "champion").version) == v3
    assert mlc.get_model_version(name, v2).tags["promotion_state"] == "superseded"

    # a newer version took champion: an older pending one stays where it is
    v4 = _version_with(name, "k4", tmp_path, promotion_state="pending")
    v5 = _version_with(name, "k5", tmp_path, promotion_state="pending")
    assert registry.settle_candidate(name, "k5").promoted  # type: ignore[union-attr]
    assert registry.settle_candidate(name, "k4").already_registered  # type: ignore[union-attr]
    assert str(mlc.get_model_version_by_alias(name, "champion").version) == v5
    assert str(mlc.get_model_version_by_alias(name, "previous-champion").version) == v3
    assert v4 == "4"
    assert registry.settle_candidate(name, "unknown") is None
