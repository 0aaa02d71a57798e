"""Shared fixtures: an isolated TUNELINE_HOME per test, a tiny encoder built locally, example data."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DATA = REPO / "deployments" / "data" / "sentiment"
ASSISTANT_DATA = REPO / "deployments" / "data" / "assistant"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pytest_collection_finish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # a worker of `-n`: which of them runs the test is not known yet, so it runs mypy
    if any(item.name == "test_mypy_on_every_package" for item in session.items):
        from tests.unit.test_tooling import start_mypy

        start_mypy()  # a minute of one core, run beside the tests before it


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import forkserver

    forkserver.stop_all()  # the process the tests' commands were forked from, if one started
    if not hasattr(session.config, "workerinput"):  # the process that ran the workers, or alone
        stop_shared_prefect_server(session.config)
    from tests.unit.test_tooling import stop_mypy

    stop_mypy()


@pytest.fixture(scope="session")
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user cache the whole session shares (an empty MLflow store to copy), kept out of the
    real one."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(autouse=True)
def tuneline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_cache: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TUNELINE_HOME", str(home))
    monkeypatch.setenv("TUNELINE_CACHE_DIR", str(user_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def example_rows() -> dict[str, list[dict]]:
    return {
        "train": read_jsonl(EXAMPLE_DATA / "train" / "part-0.jsonl"),
        "eval": read_jsonl(EXAMPLE_DATA / "eval.jsonl"),
    }


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory, example_rows: dict) -> Path:
    from tasks.models.tiny import build_tiny_encoder

    texts = [r["text"] for r in example_rows["train"] + example_rows["eval"]]
    return build_tiny_encoder(tmp_path_factory.mktemp("models") / "tiny-bert", texts)


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.models.tiny import build_tiny_causal_lm, default_corpus

    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-lm", default_corpus())


@pytest.fixture()
def tiny_recipe(tmp_path: Path, tiny_encoder: Path, example_rows: dict) -> Path:
    """A recipe file for the tiny encoder on the example data, a few optimiser steps."""
    write_jsonl(tmp_path / "data" / "train.jsonl", example_rows["train"])
    write_jsonl(tmp_path / "data" / "eval.jsonl", example_rows["eval"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: tiny-sentiment
base_model: {{path: {tiny_encoder}}}
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
  labels: [negative, positive]
tokenize: {{max_length: 64}}
method: {{name: lora, r: 4, lora_alpha: 8, target_modules: [query, value]}}
train: {{max_steps: 6, batch_size: 16, learning_rate: 5.0e-3}}
register: {{gate: {{metric: accuracy, beat_base: false}}}}
"""
    )
    return recipe


def work_that_sleeps(started: Path, stopped: Path, seconds: float = 120) -> Callable[[], None]:
    """Work to run ahead (`tasks.core.ahead`): marks `started`, sleeps, and on the way out (a
    stop included) writes the time into `stopped`, as `staged` and lock blocks clean up."""

    def work() -> None:
        try:
            started.touch()
            time.sleep(seconds)
        finally:
            stopped.write_text(str(time.time()))

    return work


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} did not answer in {seconds}s:\n{log.read_text()[-3000:]}")


class MlflowServer:
    """A real `mlflow server` on loopback (SQLite backend, proxied artifacts) that a test can stop
    and start again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import sys

        log = self.root / "server.log"
        exe = Path(sys.executable).parent / "mlflow"
        with log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [
                    str(exe),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--workers",
                    "1",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                # MLflow's job runner (seven huey consumer processes, for GenAI judges and trace
                # roll-ups tuneline never uses) costs 25 s of CPU at each start, 1.8 GB, and a
                # steady half core while the server runs
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                start_new_session=True,  # stop() takes its worker processes down with it
            )
        wait_for(f"{self.url}/health", self.proc, log)

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` on loopback, stopped after the module."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


KEYWORDS = {
    "positive": ["great", "lovely", "superb", "wonderful", "excellent"],
    "negative": ["awful", "dreadful", "terrible", "horrible", "poor"],
}
FILLER = (
    "the a film meal room staff book app show song trip view price service story ending day night"
)


def keyword_rows(n: int, seed: int = 0) -> list[dict]:
    """Synthetic data a tiny encoder can learn in a few dozen steps: one keyword decides."""
    import random

    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if rnd.random() < 0.5 else "negative"
        words = rnd.sample(FILLER.split(), 5) + [rnd.choice(KEYWORDS[label])]
        rnd.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return rows


@pytest.fixture()
def keyword_recipe(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full fine-tuning recipe on keyword data and a tiny encoder trained for it."""
    from tasks.models.tiny import build_tiny_encoder

    rows = keyword_rows(300)
    write_jsonl(tmp_path / "data" / "train.jsonl", rows[:240])
    write_jsonl(tmp_path / "data" / "eval.jsonl", rows[240:])
    encoder = build_tiny_encoder(tmp_path / "tiny-encoder", [r["text"] for r in rows])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: keyword-classifier
base_model: {{path: {encoder}}}
data: {{train: data/train.jsonl, eval: data/eval.jsonl, labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 60, batch_size: 16, learning_rate: 5.0e-3, warmup_ratio: 0.0}}
register: {{gate: {{metric: accuracy, beat_base: false}}}}
"""
    )
    return recipe


def start_prefect_server(root: Path, extra_env: dict[str, str] | None = None):
    """Start a real `prefect server start` on loopback with its own home and database under
    `root`; returns (api_url, process, log). The caller stops it with `stop_prefect_server`."""
    import sys

    port = free_port()
    log = root / "server.log"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_URL", None)
    exe = Path(sys.executable).parent / "prefect"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", proc, log)
    except BaseException:
        stop_prefect_server(proc)
        raise
    return f"http://127.0.0.1:{port}/api", proc, log


def stop_prefect_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def shared_root(config: pytest.Config) -> Path:
    """The session's temporary root: the same folder for every `-n` worker and for the process
    that runs them (each worker's own temporary folder is a folder below it)."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if hasattr(config, "workerinput") else base


def prefect_server_home(config: pytest.Config) -> Path:
    """The session Prefect server's home: its SQLite database and everything else it writes."""
    return shared_root(config) / "prefect-server"


# The scheduler looks for deployments to schedule every second (Prefect's default: every minute),
# so the tests of schedules and of the pool's interval-deployed watcher see runs within seconds.
FAST_SCHEDULER = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
}


@pytest.fixture(scope="session")
def prefect_server(request: pytest.FixtureRequest) -> str:
    """A real `prefect server start` on loopback with its own home and database, one for the
    whole session: the first test that asks starts it, every `-n` worker uses the same one (each
    start is seconds of CPU), and the session's end stops it (`stop_shared_prefect_server`).
    Returns (and the file `url` beside its database holds) its API URL."""
    import fcntl

    home = prefect_server_home(request.config)
    home.mkdir(parents=True, exist_ok=True)
    with (home.parent / "prefect-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker starts it, the others wait for its URL
        if (home / "url").exists():
            return (home / "url").read_text()
        url, proc, _ = start_prefect_server(home, FAST_SCHEDULER)
        (home / "pid").write_text(str(proc.pid))
        (home / "url").write_text(url)
        return url


def stop_shared_prefect_server(config: pytest.Config) -> None:
    import signal

    pid_file = prefect_server_home(config) / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    pid_file.unlink()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):  # up to 30 s, then SIGKILL
            os.kill(pid, 0)
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def shared_prefect_api(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Prefect server as `PREFECT_API_URL` for a test's commands: their flow runs go
    there, and no command starts a temporary server of its own (seconds of CPU each). The tests
    whose subject is the temporary server (test_run_cli, test_cli_startup, test_resilience,
    test_tracking_runs) do without it."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    return prefect_server


def watched_recipe(folder: Path, name: str) -> tuple[Path, list[dict]]:
    """A recipe that retrains on new data: 240 keyword rows in `folder/curated/`, an eval file and
    a tiny encoder; returns the recipe and all 360 rows (rows 240-300 are the next batch to land)."""
    from tasks.models.tiny import build_tiny_encoder

    rows = keyword_rows(360)
    write_jsonl(folder / "curated" / "part-0.jsonl", rows[:240])
    write_jsonl(folder / "eval.jsonl", rows[300:])
    encoder = build_tiny_encoder(folder / "tiny-encoder", [r["text"] for r in rows])
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"""name: {name}
base_model: {{path: {encoder}}}
data: {{train: curated, eval: eval.jsonl, labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 20, batch_size: 16, learning_rate: 5.0e-3}}
register: {{gate: {{metric: accuracy, beat_base: false}}}}
deploy: {{on_new_data: true, quiet_seconds: 4}}
"""
    )
    return recipe, rows
