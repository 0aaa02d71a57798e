"""Noticing new curated data for a recipe, safely: partial files never trigger, a burst triggers
once.

A source has *landed* new data when its file listing (names, sizes, modification times) differs
from the last one that triggered, and either
- a `_SUCCESS` marker in the watched folder is newer than the last trigger (writers that can drop
  a marker should: it triggers on the next poll), or
- the listing is unchanged across two consecutive polls (the stable-size rule: a file still being
  written changes size or mtime between polls, so it waits).

The first poll of a source records a baseline and triggers nothing. State lives under
`TUNELINE_HOME/watch/<recipe>.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tasks import settings
from tasks.data import expand_source

EVENT = "tuneline.data.landed"
MARKER = "_SUCCESS"


def resource_id(recipe_name: str) -> str:
    return f"tuneline.recipe.{recipe_name}"


def _is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _stamp(info: dict[str, Any]) -> float:
    """A modification stamp from fsspec `info` (backends name it differently)."""
    import hashlib

    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)
    etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
    return float(int(hashlib.sha256(etag.encode()).hexdigest()[:12], 16)) if etag else 0.0


def snapshot(source: str) -> dict[str, list[float]]:
    """{file: [size, stamp]} of every data file behind `source` (a folder, glob or fsspec URL)."""
    out: dict[str, list[float]] = {}
    if _is_url(source):
        import fsspec

        for file in expand_source(source):
            fs, path = fsspec.core.url_to_fs(file)
            try:
                info = fs.info(path)
            except FileNotFoundError:
                continue
            out[file] = [float(info.get("size") or 0), _stamp(info)]
        return out
    for file in expand_source(source):
        try:
            info = os.stat(file)
        except OSError:  # removed between listing and stat
            continue
        out[file] = [float(info.st_size), info.st_mtime]
    return out


def _marker_time(source: str) -> float:
    if _is_url(source):
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


def poll(name: str, source: str) -> dict[str, Any] | None:
    """One look at `source`; returns what landed when it should trigger a retrain, else None."""
    path = _state_file(name)
    state = json.loads(path.read_text()) if path.exists() else {}
    now = snapshot(source)
    if "seen" not in state:
        state = {"seen": now, "seen_at": time.time(), "pending": None}
        path.write_text(json.dumps(state))
        return None
    if now == state["seen"]:
        state["pending"] = None
        path.write_text(json.dumps(state))
        return None
    marked = _marker_time(source) > state.get("seen_at", 0.0)
    if marked or now == state.get("pending"):
        new = sorted(set(now) - set(state["seen"]))
        changed = sorted(f for f in now if f in state["seen"] and now[f] != state["seen"][f])
        state = {"seen": now, "seen_at": time.time(), "pending": None}
        path.write_text(json.dumps(state))
        return {"new_files": new, "changed_files": changed, "files": len(now), "by_marker": marked}
    state["pending"] = now
    path.write_text(json.dumps(state))
    return None


def emit_landed(name: str, landed: dict[str, Any]) -> None:
    """Tell Prefect that new curated data landed for recipe `name` (deployment triggers listen)."""
    from prefect.events import emit_event

    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(name)}, payload=landed)
