"""A traceback that quotes a secret (a tracking URI with a password) is logged masked."""

from __future__ import annotations

import io
import logging

from tasks.core.secrets import RedactingFilter


def test_logged_traceback_quoting_a_uri_password_is_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tuneline.test.redaction")
    logger.addHandler(handler)
    try:
        raise RuntimeError("API request to http://me:hunter2-pass@127.0.0.1:5000/api failed")
    except RuntimeError:
        logger.exception("registration failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "registration failed" in text and "Traceback" in text
    assert "hunter2-pass" not in text and "http://***@127.0.0.1:5000/api" in text
