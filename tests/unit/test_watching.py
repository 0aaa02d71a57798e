"""The data-landed rules: a baseline first, partial files wait however long the writer pauses,
names still being written never count, a burst triggers once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tasks.data.watching import MARKER, incomplete_reason, poll

ROW = '{"text": "x", "label": "y"}\n'


def write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "curated"
    folder.mkdir()
    write(folder / "a.jsonl", ROW)
    return folder


def test_baseline_then_quiet_listing_triggers_once(folder: Path) -> None:
    t = time.time()
    assert poll("r", str(folder), 60, now=t) is None  # baseline
    assert poll("r", str(folder), 60, now=t + 30) is None  # nothing new
    write(folder / "b.jsonl", ROW)
    assert poll("r", str(folder), 60, now=t + 60) is None  # changed: the quiet period starts
    assert poll("r", str(folder), 60, now=t + 90) is None  # quiet for 30 s of 60: waits
    landed = poll("r", str(folder), 60, now=t + 121)  # quiet for 61 s: landed
    assert landed is not None and landed["new_files"] == [str(folder / "b.jsonl")]
    assert landed["by_marker"] is False
    assert poll("r", str(folder), 60, now=t + 150) is None  # and only once


def test_a_writer_that_keeps_writing_restarts_the_quiet_period(folder: Path) -> None:
    t = time.time()
    poll("w", str(folder), 60, now=t)
    write(folder / "b.jsonl", ROW)
    assert poll("w", str(folder), 60, now=t + 10) is None
    with (folder / "b.jsonl").open("a") as handle:
        handle.write(ROW)  # the size changes: the quiet period starts again
    assert poll("w", str(folder), 60, now=t + 65) is None
    assert poll("w", str(folder), 60, now=t + 100) is None  # 35 s quiet only
    assert poll("w", str(folder), 60, now=t + 126) is not None


def test_writer_pausing_mid_line_never_triggers(folder: Path) -> None:
    t = time.time()
    poll("p", str(folder), 60, now=t)
    write(folder / "b.jsonl", ROW + '{"text": "p')  # the writer pauses in the middle of a row
    assert poll("p", str(folder), 60, now=t + 10) is None
    for hours in (1, 5, 24):  # however long the pause
        assert poll("p", str(folder), 60, now=t + hours * 3600) is None
    with (folder / "b.jsonl").open("a") as handle:
        handle.write('artial", "label": "y"}\n')  # it finishes the file
    assert poll("p", str(folder), 60, now=t + 90000) is None  # changed: quiet period again
    landed = poll("p", str(folder), 60, now=t + 90061)
    assert landed is not None and landed["new_files"] == [str(folder / "b.jsonl")]


def test_complete_last_line_without_newline_counts_as_complete(folder: Path) -> None:
    t = time.time()
    poll("n", str(folder), 0, now=t)
    write(folder / "b.jsonl", ROW + ROW.rstrip("\n"))  # a valid last row, no final newline
    assert poll("n", str(folder), 0, now=t + 1) is None
    assert poll("n", str(folder), 0, now=t + 2) is not None


def test_names_still_being_written_never_count(folder: Path) -> None:
    t = time.time()
    poll("tmp", str(folder), 0, now=t)
    (folder / "_temporary").mkdir()
    for name in (".b.jsonl", "_b.jsonl", "b.jsonl.tmp", "b.jsonl.part", "b.jsonl~"):
        write(folder / name, ROW)
    write(folder / "_temporary" / "part-0.jsonl", ROW)
    for step in range(1, 5):
        assert poll("tmp", str(folder), 0, now=t + step) is None
    os.rename(folder / "b.jsonl.part", folder / "b.jsonl")  # the writer's final rename
    assert poll("tmp", str(folder), 0, now=t + 10) is None
    landed = poll("tmp", str(folder), 0, now=t + 11)
    assert landed is not None and landed["new_files"] == [str(folder / "b.jsonl")]


def test_glob_source_ignores_partial_names_too(folder: Path) -> None:
    t = time.time()
    glob = str(folder / "*")
    poll("g", glob, 0, now=t)
    write(folder / "c.jsonl.partial", ROW)
    write(folder / ".c.jsonl", ROW)
    assert poll("g", glob, 0, now=t + 1) is None
    assert poll("g", glob, 0, now=t + 2) is None


def test_burst_of_files_triggers_one_event(folder: Path) -> None:
    t = time.time()
    poll("burst", str(folder), 30, now=t)
    events = []
    for i in range(4):  # one file per look (10 s apart), then quiet
        write(folder / f"part-{i}.jsonl", ROW)
        events.append(poll("burst", str(folder), 30, now=t + 10 * (i + 1)))
    events += [poll("burst", str(folder), 30, now=t + 50 + 20 * k) for k in range(4)]
    fired = [e for e in events if e is not None]
    assert len(fired) == 1 and len(fired[0]["new_files"]) == 4


def test_success_marker_triggers_without_waiting(folder: Path) -> None:
    poll("marked", str(folder), 3600)
    time.sleep(0.01)
    write(folder / "new.jsonl", ROW + '{"text": "no newline yet, but the writer says done"')
    write(folder / MARKER, "")
    os.utime(folder / MARKER, None)
    landed = poll("marked", str(folder), 3600)
    assert landed is not None and landed["by_marker"] is True
    assert landed["new_files"] == [str(folder / "new.jsonl")]  # _SUCCESS itself is no data


@pytest.mark.parametrize(
    ("name", "content", "complete"),
    [
        ("a.jsonl", ROW * 3, True),
        ("a.jsonl", ROW * 3 + '{"text": "x", "lab', False),
        ("a.jsonl", ROW + ROW.strip(), True),
        ("a.json", json.dumps([{"text": "x"}]), True),
        ("a.json", json.dumps([{"text": "x"}])[:-3], False),
        ("a.json", json.dumps([{"text": "x", "m": [{"r": "u"}]}, {"text": "y"}])[:-16], False),
        ("a.csv", "text,label\nx,y\n", True),
        ("a.csv", "text,label\nx,", False),
        ("a.txt", "a sentence.\n", True),
        ("a.txt", "a sent", False),
        ("a.jsonl", "", True),
    ],
)
def test_incomplete_reason(tmp_path: Path, name: str, content: str, complete: bool) -> None:
    path = tmp_path / name
    write(path, content)
    assert (incomplete_reason(str(path), path.stat().st_size) is None) is complete


def test_parquet_without_footer_is_incomplete(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["x"] * 50, "label": ["y"] * 50}), path)
    data = path.read_bytes()
    assert incomplete_reason(str(path), len(data)) is None
    path.write_bytes(data[: len(data) // 2])  # cut short, as a writer mid-way leaves it
    assert incomplete_reason(str(path), len(data) // 2) is not None


def test_fsspec_url_source(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/landing/part-0.jsonl", b'{"text": "a", "label": "b"}\n')
    url = "memory://landing"
    t = time.time()
    assert poll("remote", url, 60, now=t) is None  # baseline
    fs.pipe("/landing/part-1.jsonl", b'{"text": "c", "label": "d"}\n{"text": "e", "la')
    assert poll("remote", url, 60, now=t + 1) is None  # changed: wait for the quiet period
    assert poll("remote", url, 60, now=t + 100) is None  # quiet, but the last line is partial
    fs.pipe("/landing/part-1.jsonl", b'{"text": "c", "label": "d"}\n')
    assert poll("remote", url, 60, now=t + 200) is None
    landed = poll("remote", url, 60, now=t + 300)
    assert landed is not None and landed["new_files"][0].endswith("landing/part-1.jsonl")
    assert poll("remote", url, 60, now=t + 400) is None
