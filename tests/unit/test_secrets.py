"""Secrets are masked wherever tuneline writes text (pure functions)."""

from __future__ import annotations

import logging
import os

import pytest

from tasks.core.secrets import MASK, RedactingFilter, redact, redact_obj, remember


def test_url_credentials_and_env_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefSECRET")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word!")
    monkeypatch.setenv("TUNELINE_HOME", "/not/a/secret")  # ordinary names are left alone
    text = "s3://AKIA:topsecret@bucket/x and https://me:pw123456@host/y, hf_abcdefSECRET pa55word!"
    masked = redact(text)
    assert "topsecret" not in masked and "pw123456" not in masked
    assert "hf_abcdefSECRET" not in masked and "pa55word!" not in masked
    assert f"s3://{MASK}@bucket/x" in masked and f"https://{MASK}@host/y" in masked
    assert redact("/not/a/secret stays") == "/not/a/secret stays"
    assert redact_obj({"k": ["hf_abcdefSECRET", 3]}) == {"k": [MASK, 3]}


def test_remembered_values_and_log_records_are_masked() -> None:
    remember("block-value-123")
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "token %s", ("block-value-123",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == f"token {MASK}"
    remember("ab")  # too short to mask safely: ignored
    assert redact("about") == "about"


def test_masking_survives_a_thread_changing_the_environment() -> None:
    """MLflow's telemetry sets and removes a variable from a thread of its own; reading the
    environment to mask secrets (every log line) raised KeyError when a name listed first was
    gone when its value was read, and a run failed at its tracking start."""
    import threading
    import time

    from tasks.core import environment
    from tasks.core.secrets import redact, secret_names

    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.environ["_TUNELINE_TEST_SESSION_ID"] = "a value long enough"
            os.environ.pop("_TUNELINE_TEST_SESSION_ID", None)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    calls = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            redact("a line with https://user:hunter2-pass@example.org in it")
            secret_names("a line")
            assert "PATH" in environment.snapshot()
            calls += 1
    finally:
        stop.set()
        thread.join()
    assert calls > 1000  # enough reads to have met the other thread many times
