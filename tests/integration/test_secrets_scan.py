"""Planted secrets never reach what a finished run leaves behind: an HF token in the
environment (also pasted into the recipe's description), a token read from a Prefect Secret block,
and the data server's password, named in the data URL as a `${VARIABLE}` reference. The scan
reads the MLflow run's params, tags and every artifact, the registered version's tags and
description, everything under TUNELINE_HOME, Prefect's database (the server's files, the flow
runs' parameters as its API gives them, and the temporary server a plain `tuneline validate`
starts) and the commands' own output."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import keyword_rows, prefect_server_home, write_jsonl

pytestmark = pytest.mark.integration

ENV_TOKEN = "hf_plantedEnvToken9f3a"
BLOCK_TOKEN = "hf_plantedBlockToken27c1"
URL_PASSWORD = "plantedUrlPassw0rd"
PLANTED = [ENV_TOKEN, BLOCK_TOKEN, URL_PASSWORD]


@pytest.fixture()
def data_url(tmp_path: Path):
    """The curated data served over HTTP on loopback; the URL names its password by reference."""
    rows = keyword_rows(200)
    folder = tmp_path / "served"
    write_jsonl(folder / "train.jsonl", rows[:160])
    write_jsonl(folder / "eval.jsonl", rows[160:])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))

    class Quiet(handler.func):  # type: ignore[name-defined,misc]
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # a variable whose name does not look secret: the loader masks what it reads anyway
        yield f"http://reader:${{SCAN_DATA_PW}}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _assert_clean(files: list[Path], texts: list[str]) -> None:
    for text in texts:
        for secret in PLANTED:
            assert secret not in text
    for file in files:
        content = file.read_bytes()
        for secret in PLANTED:
            assert secret.encode() not in content, f"{secret} found in {file}"


def _prefect_server_files(config: pytest.Config) -> list[Path]:
    """The `prefect_server` fixture's home: its SQLite database (and WAL) and everything else."""
    root = prefect_server_home(config)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "prefect.db" for p in files), root
    return files


def _flow_run_parameters(api: str) -> list[dict]:
    import httpx

    # runs that ran (the server also holds the future runs of other tests' schedules), newest first
    query = {
        "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}},
        "sort": "EXPECTED_START_TIME_DESC",
        "limit": 200,
    }
    answer = httpx.post(f"{api}/flow_runs/filter", json=query, timeout=30)
    answer.raise_for_status()
    return [run["parameters"] for run in answer.json()]


def test_no_planted_secret_in_mlflow_prefect_files_or_output(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    data_url: str,
    prefect_server: str,
    tuneline_home: Path,
) -> None:
    from tasks.models.tiny import build_tiny_encoder

    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "HF_TOKEN": ENV_TOKEN,
        "SCAN_DATA_PW": URL_PASSWORD,
    }
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from prefect.blocks.system import Secret; Secret(value='{BLOCK_TOKEN}').save('scan-hf-token', overwrite=True)",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    encoder = build_tiny_encoder(tmp_path / "enc", [r["text"] for r in keyword_rows(200)])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: secret-scan
description: keyword sentiment; hub token {ENV_TOKEN} pasted here by mistake
base_model: {{path: {encoder}, token_secret: scan-hf-token}}
data: {{train: "{data_url}/train.jsonl", eval: "{data_url}/eval.jsonl", labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 4, batch_size: 16}}
register: {{gate: {{beat_base: false, detect_gain: 0.15}}}}
"""
    )
    proc = forkserver.tuneline("run", recipe, "--json", env=env, timeout=600)
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-3000:]

    import mlflow
    from mlflow import MlflowClient

    from tasks.core import settings

    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    mlflow.set_tracking_uri(settings.tracking_uri())
    client = MlflowClient()
    run = client.get_run(outcome["mlflow_run_id"])
    assert run.data.params["data.train"].startswith("http://***@127.0.0.1"), (
        "the URL is kept, masked"
    )
    texts = [json.dumps(run.data.params), json.dumps(run.data.tags), proc.stdout, proc.stderr]
    version = client.get_model_version("secret-scan", outcome["model_version"])
    texts += [json.dumps(version.tags), version.description or ""]
    artifacts = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "dl"))
    )
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "recipe.json" for p in files) and any(p.suffix == ".html" for p in files)
    files += [p for p in tuneline_home.rglob("*") if p.is_file()]

    # Prefect: the flow run's parameters hold the reference and the masked description ...
    parameters = [p for p in _flow_run_parameters(prefect_server) if "recipe" in p]
    mine = [p["recipe"] for p in parameters if p["recipe"].get("name") == "secret-scan"]
    assert mine and mine[0]["data"]["train"] == f"{data_url}/train.jsonl"
    assert "***" in mine[0]["description"]
    texts.append(json.dumps(parameters))
    # ... and nothing the server or the client wrote holds a planted value
    server_files = _prefect_server_files(request.config)
    assert any(b"${SCAN_DATA_PW}" in p.read_bytes() for p in server_files)
    files += server_files
    files += [p for p in (tmp_path / "prefect-client").rglob("*") if p.is_file()]
    _assert_clean(files, texts)

    # A plain `tuneline validate` (no server: Prefect's temporary one, its database under
    # PREFECT_HOME) stores the data block as the flow's parameters too.
    temporary = tmp_path / "prefect-temporary"
    env_local = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    env_local["PREFECT_HOME"] = str(temporary)
    checked = forkserver.tuneline(
        *("validate", "--data", f"{data_url}/train.jsonl", "--eval", f"{data_url}/eval.jsonl"),
        env=env_local,
        timeout=600,
    )
    assert checked.returncode in (0, 2), checked.stdout[-2000:] + checked.stderr[-3000:]
    local_files = [p for p in temporary.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in local_files), local_files
    reference = b"${SCAN_DATA_PW}"  # the parameters are in the files scanned
    assert any(reference in p.read_bytes() for p in local_files)
    _assert_clean(local_files, [checked.stdout, checked.stderr])
