"""Writing a folder all at once: it is built in a temporary sibling and renamed into place when
complete, so that a failure or a kill never leaves a folder that looks finished (model artifacts,
the tiny models, cached data and tokenized splits)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def staging_dir(target: Path) -> Path:
    """A temporary sibling of `target`; `publish` renames it into place when complete."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


@contextlib.contextmanager
def staged(target: Path, replace: bool = True) -> Iterator[Path]:
    """Write into a temporary sibling of `target`; on success rename it into place (with
    `replace=False` an existing target wins: another run finished the same cache key first).
    A failure or kill leaves no folder that looks complete."""
    tmp = staging_dir(target)
    try:
        yield tmp
        if replace or not target.exists():
            publish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
