"""Planted secrets never reach what a finished run leaves behind: an HF token in the
environment, a token read from a Prefect Secret block, and credentials in the data URL. The scan
reads the MLflow run's params, tags and every artifact, the registered version's tags and
description, everything under TUNELINE_HOME, and the command's own output."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import keyword_rows, write_jsonl

pytestmark = pytest.mark.integration

ENV_TOKEN = "hf_plantedEnvToken9f3a"
BLOCK_TOKEN = "hf_plantedBlockToken27c1"
URL_PASSWORD = "plantedUrlPassw0rd"


@pytest.fixture()
def data_url(tmp_path: Path):
    """The curated data served over HTTP on loopback; the URL carries credentials."""
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
        yield f"http://reader:{URL_PASSWORD}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_no_planted_secret_in_params_tags_artifacts_files_or_output(
    tmp_path: Path, data_url: str, prefect_server: str, tuneline_home: Path
) -> None:
    from tasks.tiny import build_tiny_encoder

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "HF_TOKEN": ENV_TOKEN}
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
base_model: {{path: {encoder}, token_secret: scan-hf-token}}
data: {{train: "{data_url}/train.jsonl", eval: "{data_url}/eval.jsonl", labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 4, batch_size: 16}}
register: {{gate: {{beat_base: false, detect_gain: 0.15}}}}
"""
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tuneline", "run", str(recipe), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-3000:]
    planted = [ENV_TOKEN, BLOCK_TOKEN, URL_PASSWORD]

    import json

    import mlflow
    from mlflow import MlflowClient

    from tasks import settings

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
    for text in texts:
        for secret in planted:
            assert secret not in text
    for file in files:
        content = file.read_bytes()
        for secret in planted:
            assert secret.encode() not in content, f"{secret} found in {file}"
