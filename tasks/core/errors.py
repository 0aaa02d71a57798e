"""The typed errors tuneline raises for things a user can fix, with the exit code each maps to.

A `TunelineError` is never shown with a traceback: its message says what is wrong, where, and
what to do. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from tasks.core.secrets import redact

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONTRACT = 2
EXIT_GATE = 3


class TunelineError(Exception):
    """A user-facing error: one clear line or short block, no traceback."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RecipeError(TunelineError):
    """The recipe file is missing, not YAML, or does not match the schema."""


class DataError(TunelineError):
    """The data named by the recipe cannot be found or read."""


class ModelError(TunelineError):
    """The base model or a registered model cannot be resolved or loaded."""


class ContractFailed(TunelineError):
    """The data contract has at least one failing check of severity `error`."""

    exit_code = EXIT_CONTRACT

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class RegistryError(TunelineError):
    """MLflow could not be reached or refused an operation."""


class RegistryUnavailable(RegistryError):
    """MLflow did not answer: worth waiting and retrying, then a clear failure."""

    retryable = True


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty), secrets
    masked: what a one-line error shows of the library failure beneath it."""
    text = redact(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry I/O failures, never a user mistake."""
    data = getattr(state, "data", None)
    return not isinstance(data, TunelineError) or getattr(data, "retryable", False)
