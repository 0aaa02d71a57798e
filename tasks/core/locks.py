"""Serialising work on one machine: a file lock under `TUNELINE_HOME/locks`, shared by the
processes that use the embedded store (registrations to one model name, the MLflow store, the
tiny model's first build). No Prefect here: `tasks.services.concurrency` adds a Prefect global
concurrency limit over this lock when runs on several machines share a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator

from tasks.core import settings


def slug(name: str) -> str:
    """`name` as a file (and concurrency-limit) name: anything but letters, digits, `._-` is `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    folder = settings.home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{slug(name)}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
