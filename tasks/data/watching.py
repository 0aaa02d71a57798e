"""Noticing new curated data for a recipe, safely: partial files never trigger, a burst triggers
once.

A source (a folder, glob or fsspec URL: what the recipe's `data.train` reads) has *landed* new data
when its file listing (names, sizes, modification times) differs from the last one that triggered,
and either
- a `_SUCCESS` marker in the watched folder is newer than the last trigger (writers that can drop
  a marker should: it triggers on the next poll, whatever the files look like), or
- the quiet-period rule holds: the listing is unchanged across consecutive polls for at least
  `quiet_seconds` (the recipe's `deploy.quiet_seconds`, default 120), and every new or changed
  file is complete: JSONL ends with a newline or a last line that parses, JSON ends its outermost
  value, Parquet has its footer, CSV and text end with a newline. A writer that pauses mid-file
  leaves a file that fails these checks however long it pauses, so it waits.

Names a writer uses while writing never count: hidden files (`.part-1.jsonl`), `_`-prefixed ones
(`_temporary/`, `_SUCCESS` itself) and temporary suffixes (`.tmp`, `.part`, `.partial`, ...).

The first poll of a source records a baseline and triggers nothing. State lives under
`TUNELINE_HOME/watch/<recipe>.json`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.core import settings
from tasks.data.load import expand_source, is_url

EVENT = "tuneline.data.landed"
MARKER = "_SUCCESS"
DEFAULT_QUIET_SECONDS = 120.0
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp")
TAIL_BYTES = 1 << 20  # enough for the last line of any sensible JSONL file
JSON_PARSE_BYTES = 64 << 20  # JSON documents up to this size are parsed whole to check them
log = logging.getLogger("tuneline.watch")


def resource_id(recipe_name: str) -> str:
    return f"tuneline.recipe.{recipe_name}"


def _stamp(info: dict[str, Any]) -> float:
    """A modification stamp from fsspec `info` (backends name it differently)."""
    import hashlib

    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)
    etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
    return float(int(hashlib.sha256(etag.encode()).hexdigest()[:12], 16)) if etag else 0.0


def in_progress_name(file: str) -> bool:
    """A name writers use while a file is being written (or for bookkeeping), never data."""
    name = PurePosixPath(file.split("://", 1)[-1]).name
    lowered = name.lower()
    return name.startswith((".", "_")) or name.endswith("~") or lowered.endswith(TEMPORARY_SUFFIXES)


def snapshot(source: str) -> dict[str, list[float]]:
    """{file: [size, stamp]} of every data file behind `source` (a folder, glob or fsspec URL),
    names still being written left out."""
    files = [f for f in expand_source(source) if not in_progress_name(f)]
    out: dict[str, list[float]] = {}
    if is_url(source):
        import fsspec

        for file in files:
            fs, path = fsspec.core.url_to_fs(file)
            try:
                info = fs.info(path)
            except FileNotFoundError:
                continue
            out[file] = [float(info.get("size") or 0), _stamp(info)]
        return out
    for file in files:
        try:
            info = os.stat(file)
        except OSError:  # removed between listing and stat
            continue
        out[file] = [float(info.st_size), info.st_mtime]
    return out


def _marker_time(source: str) -> float:
    if is_url(source):
        import fsspec

        fs, path = fsspec.core.url_to_fs(source.rstrip("/") + "/" + MARKER)
        return _stamp(fs.info(path)) if fs.exists(path) else 0.0
    folder = Path(source)
    marker = folder / MARKER if folder.is_dir() else folder.parent / MARKER
    return marker.stat().st_mtime if marker.exists() else 0.0


def _state_file(name: str) -> Path:
    folder = settings.home() / "watch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.json"


def _tail(file: str, size: int) -> tuple[bytes, bytes]:
    """The first 4 and the last `TAIL_BYTES` bytes of `file`."""
    start = max(0, size - TAIL_BYTES)
    if is_url(file):
        import fsspec

        fs, path = fsspec.core.url_to_fs(file)
        return fs.cat_file(path, start=0, end=4), fs.cat_file(path, start=start)
    with open(file, "rb") as handle:
        head = handle.read(4)
        handle.seek(start)
        return head, handle.read()


def _read_all(file: str) -> bytes:
    if is_url(file):
        import fsspec

        with fsspec.open(file, "rb") as handle:
            return bytes(handle.read())
    return Path(file).read_bytes()


def incomplete_reason(file: str, size: int) -> str | None:
    """Why `file` looks still being written (None when it looks complete)."""
    if size == 0 or os.path.isdir(file):
        return None  # an empty file adds nothing; a saved HF dataset folder has no tail
    suffix = PurePosixPath(file.split("://", 1)[-1]).suffix.lower()
    try:
        head, tail = _tail(file, size)
    except OSError as exc:
        return f"cannot be read yet ({exc.strerror or type(exc).__name__})"
    if suffix == ".parquet":
        ok = head == b"PAR1" and tail.endswith(b"PAR1") and size >= 12
        return None if ok else "has no Parquet footer yet"
    if suffix == ".json":  # one JSON document: the loader reads it whole, so can this check
        if size > JSON_PARSE_BYTES:
            ok = tail.rstrip().endswith((b"}", b"]"))
            return None if ok else "does not end its JSON value yet"
        try:
            json.loads(_read_all(file))
        except (OSError, ValueError):
            return "is not a complete JSON document yet"
        return None
    if tail.endswith(b"\n"):
        return None
    if suffix == ".jsonl":
        try:
            json.loads(tail.rsplit(b"\n", 1)[-1])
        except ValueError:
            return "ends in the middle of a line"
        return None
    if suffix in (".csv", ".txt"):
        return "does not end with a newline"
    return None


def poll(
    name: str,
    source: str,
    quiet_seconds: float = DEFAULT_QUIET_SECONDS,
    now: float | None = None,
) -> dict[str, Any] | None:
    """One look at `source`; returns what landed when it should trigger a retrain, else None.
    `now` is the wall-clock time of the look (default: the current time)."""
    clock = time.time() if now is None else now
    path = _state_file(name)
    state = json.loads(path.read_text()) if path.exists() else {}
    listing = snapshot(source)

    def save() -> None:
        path.write_text(json.dumps(state))

    if "seen" not in state:
        state = {"seen": listing, "seen_at": clock, "pending": None}
        save()
        return None
    if listing == state["seen"]:
        state.update(pending=None, pending_since=None, waiting={})
        save()
        return None
    new = sorted(set(listing) - set(state["seen"]))
    changed = sorted(f for f in listing if f in state["seen"] and listing[f] != state["seen"][f])
    marked = _marker_time(source) > state.get("seen_at", 0.0)
    if not marked:
        if listing != state.get("pending") or state.get("pending_since") is None:
            # changed since the last look: the quiet period starts again
            state.update(pending=listing, pending_since=clock)
            save()
            return None
        if clock - float(state["pending_since"]) < quiet_seconds:
            return None
        waiting = {
            f: reason
            for f in new + changed
            if (reason := incomplete_reason(f, int(listing[f][0]))) is not None
        }
        if waiting:
            if waiting != state.get("waiting"):  # say it once, not on every look
                for file, reason in waiting.items():
                    log.warning(
                        "%s: %s %s (still being written?); waiting for it to be finished or for "
                        "a %s marker",
                        name,
                        file,
                        reason,
                        MARKER,
                    )
                state["waiting"] = waiting
                save()
            return None
    state = {"seen": listing, "seen_at": clock, "pending": None}
    save()
    return {"new_files": new, "changed_files": changed, "files": len(listing), "by_marker": marked}


def emit_landed(name: str, landed: dict[str, Any]) -> None:
    """Tell Prefect that new curated data landed for recipe `name` (deployment triggers listen)."""
    from prefect.events import emit_event

    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(name)}, payload=landed)


def check_recipes(
    recipes: Iterable[Any], on_error: Callable[[str, Exception], None] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """One look at the curated data of each recipe that retrains on new data (`deploy.on_new_data`):
    emits `EVENT` for each whose data landed and returns `(recipe name, what landed)` for them.
    With `on_error`, a recipe whose look fails is handed to it and the others are still looked
    at (a long-running watcher keeps watching); without, the failure is raised."""
    landed = []
    for recipe in recipes:
        if not recipe.deploy.on_new_data:
            continue
        try:
            found = poll(recipe.name, recipe.data.train, recipe.deploy.quiet_seconds)
            if found is not None:
                log.warning("new curated data for %s: %s", recipe.name, found)
                emit_landed(recipe.name, found)
                landed.append((recipe.name, found))
        except Exception as exc:
            if on_error is None:
                raise
            on_error(recipe.name, exc)
    return landed
