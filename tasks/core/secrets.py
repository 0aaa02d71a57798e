"""Keeping secrets out of everything tuneline writes: MLflow params, tags, descriptions and
artifacts, reports, and logs.

Secrets reach tuneline through the environment (`HF_TOKEN`, `MLFLOW_TRACKING_PASSWORD`,
`AWS_SECRET_ACCESS_KEY`, ... any variable whose name says token, secret, password or key) or
through Prefect Secret blocks named in a recipe; credentials may also sit in a URL's userinfo
(`https://user:pass@host/...`). `redact` masks all three wherever a string is written.

Nothing secret may sit in a recipe itself: Prefect stores the recipe, as the flow run's
parameters, in its database. A data URL names its credentials as `${VARIABLE}` references instead
(`inline_credential` finds those written out), which the loader expands when it reads the data
(`tasks.data.load.expand_references`), and free text is masked before the recipe becomes parameters.
Reading a Secret block is `tasks.services.secret_blocks`'s job: this module imports no Prefect, so that
every module, the errors included, can mask what it writes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from tasks.core import environment

MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_KEY|CREDENTIAL")
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@")
_MIN_LENGTH = 6  # shorter values ("true", "1") would mask ordinary words
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_WEB = {"http", "https", "ftp", "ftps"}
_known: set[str] = set()


def remember(value: str | None) -> None:
    """Mask `value` from now on (a secret read from a Prefect Secret block)."""
    if value and len(value) >= _MIN_LENGTH:
        _known.add(value)


def _secret_variables() -> dict[str, str]:
    """The environment's variables with secret-looking names and values long enough to mask."""
    return {
        name: value
        for name, value in environment.snapshot().items()
        if _SECRET_NAME.search(name.upper()) and len(value) >= _MIN_LENGTH
    }


def secret_values() -> list[str]:
    values = _known | set(_secret_variables().values())
    return sorted(values, key=len, reverse=True)  # longest first: no partial leftovers


def redact(text: str) -> str:
    """`text` with URL credentials and known secret values masked."""
    if not text:
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    for value in secret_values():
        if value in out:
            out = out.replace(value, MASK)
    return out


def inline_credential(text: str) -> bool:
    """Whether a URL in `text` carries a credential written out: the password of
    `scheme://user:password@`, or the token of a web URL's `https://token@`. A `${NAME}` reference
    is not one, nor fsspec's `github://org:repo@ref`, whose userinfo names a repository."""
    for match in _USERINFO.finditer(text):
        scheme = match.group("scheme").split(":")[0].lower()
        user, colon, password = match.group("userinfo").partition(":")
        secret = password if colon else (user if scheme in _WEB else "")
        if scheme != "github" and secret and not REFERENCE.fullmatch(secret):
            return True
    return False


def secret_names(text: str) -> list[str]:
    """The environment variables (with secret-looking names) whose values appear in `text`, and
    `Secret block` for values read from one."""
    names = [name for name, value in _secret_variables().items() if value in text]
    return sorted(names) or (["a Secret block"] if any(v in text for v in _known) else [])


def redact_obj(value: Any) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_obj(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """A log filter that masks secrets in the formatted message (and drops exception text that
    would carry them unmasked into the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:  # a traceback quoting a secret: keep it, masked
                record.exc_info, record.exc_text = None, redact(text)
        return True


def install_log_redaction() -> None:
    """Mask secrets in every record the root, Prefect and MLflow handlers write."""
    hide = RedactingFilter()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "mlflow"):
        logger = logging.getLogger(name)
        logger.addFilter(hide)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(hide)
