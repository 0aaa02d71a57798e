"""The data-landed rules: a baseline first, partial files wait, a burst triggers once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tasks.watching import MARKER, poll


def write(path: Path, text: str) -> None:
    path.write_text(text)


def test_baseline_then_stable_listing_triggers_once(tmp_path: Path) -> None:
    folder = tmp_path / "curated"
    folder.mkdir()
    write(folder / "a.jsonl", '{"text": "x", "label": "y"}\n')
    assert poll("r", str(folder)) is None  # baseline
    assert poll("r", str(folder)) is None  # nothing new
    write(folder / "b.jsonl", '{"text": "p')  # a file still being written
    assert poll("r", str(folder)) is None  # changed: wait for it to settle
    with (folder / "b.jsonl").open("a") as handle:
        handle.write('artial", "label": "y"}\n')  # the writer goes on: size changes
    assert poll("r", str(folder)) is None
    landed = poll("r", str(folder))  # unchanged across two polls: landed
    assert landed is not None and landed["new_files"] == [str(folder / "b.jsonl")]
    assert poll("r", str(folder)) is None  # and only once


def test_burst_of_files_triggers_one_event(tmp_path: Path) -> None:
    folder = tmp_path / "curated"
    folder.mkdir()
    poll("burst", str(folder))
    events = []
    for i in range(4):  # one file per poll, then quiet
        write(folder / f"part-{i}.jsonl", "{}\n")
        events.append(poll("burst", str(folder)))
    events += [poll("burst", str(folder)) for _ in range(3)]
    fired = [e for e in events if e is not None]
    assert len(fired) == 1 and len(fired[0]["new_files"]) == 4


def test_success_marker_triggers_without_waiting(tmp_path: Path) -> None:
    folder = tmp_path / "curated"
    folder.mkdir()
    poll("marked", str(folder))
    time.sleep(0.01)
    write(folder / "new.jsonl", "{}\n")
    write(folder / MARKER, "")
    os.utime(folder / MARKER, None)
    landed = poll("marked", str(folder))
    assert landed is not None and landed["by_marker"] is True


def test_fsspec_url_source(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/landing/part-0.jsonl", b'{"text": "a", "label": "b"}\n')
    url = "memory://landing"
    assert poll("remote", url) is None  # baseline
    fs.pipe("/landing/part-1.jsonl", b'{"text": "c", "label": "d"}\n')
    assert poll("remote", url) is None  # changed: wait one more look
    landed = poll("remote", url)
    assert landed is not None and landed["new_files"][0].endswith("landing/part-1.jsonl")
    assert poll("remote", url) is None
