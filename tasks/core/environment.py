"""This process's environment, read where other threads change it."""

from __future__ import annotations

import os


def snapshot() -> dict[str, str]:
    """A copy of this process's environment that other threads cannot break: `os.environ.items()`
    and `{**os.environ}` list the names first and read each value after, so a variable another
    thread removes in between raises KeyError (MLflow's telemetry sets and removes its session id
    from a thread of its own; a run failed on it). A variable removed meanwhile is left out."""
    copied = {}
    for name in list(os.environ):  # one snapshot of the names
        value = os.environ.get(name)
        if value is not None:
            copied[name] = value
    return copied
