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


def snapshot(source: str) -> dict[str, list[float]]:
    """{file: [size, mtime]} of every data file behind `source` (local sources)."""
    out: dict[str, list[float]] = {}
    for file in expand_source(source):
        try:
            info = os.stat(file)
        except OSError:  # removed between listing and stat
            continue
        out[file] = [float(info.st_size), info.st_mtime]
    return out


def _marker_time(source: str) -> float:
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
