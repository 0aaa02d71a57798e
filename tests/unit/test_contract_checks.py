"""The contract's fast paths give the answers of their plain versions: whitespace as Python knows
it, normalised text for contamination, MinHashes against datasketch's own, the Arrow JSONL reader
against the line-by-line one (and its fall-back when the child reader fails)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_contracts import ContractData, load_contract, run_contract
from data_contracts.contract import NearDuplicates
from data_contracts.runner import SPACE, _hash32, _minhashes, _norm, _normalised, _shingles
from tasks.data import load as data_module
from tasks.data.load import DataSpec, normalise, read_table

WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def test_space_class_is_python_whitespace_in_re_and_arrow() -> None:
    cls = re.compile(f"[{SPACE}]")
    assert all(cls.fullmatch(c) for c in WHITESPACE)
    assert pc.all(pc.match_substring_regex(pa.array(WHITESPACE), f"^[{SPACE}]$")).as_py()
    others = [chr(c) for c in range(0x3100) if not chr(c).isspace()]
    assert not any(cls.fullmatch(c) for c in others)
    assert not pc.any(pc.match_substring_regex(pa.array(others), f"[{SPACE}]")).as_py()


texts = st.text(alphabet=st.sampled_from([*"abcXYZ-.'", *WHITESPACE]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), texts), max_size=12))
def test_normalised_equals_plain_norm(values: list[str | None]) -> None:
    for series in (pd.Series(values, dtype=object), pd.Series(values, dtype="str")):
        got = _normalised(series).to_pylist()
        assert got == [None if v is None else _norm(v) for v in values]


def test_minhashes_match_datasketch_bit_for_bit() -> None:
    from datasketch import MinHash

    cfg = NearDuplicates(num_perm=64, shingle=3, threshold=0.8)
    sample = [
        "the movie was a delight from start to finish",
        "the movie was a delight from start to end",
        "short",
        "",
        None,
        "Ünïcode wörds, and punctuation! the movie was",
    ] * 3
    ours = _minhashes(sample, cfg)
    theirs = MinHash.bulk(
        [_shingles(t, cfg.shingle) for t in sample],
        num_perm=cfg.num_perm,
        hashfunc=_hash32,
        scheme="affine32",
    )
    for mine, reference in zip(ours, theirs, strict=True):
        assert np.array_equal(mine.hashvalues, reference.hashvalues)
    assert ours[0].jaccard(ours[1]) == theirs[0].jaccard(theirs[1])
    assert 0.3 < ours[0].jaccard(ours[1]) < 1.0


def _frame(texts: list[str], labels: list[str], name: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": pd.Series(texts, dtype="str"),
            "label": labels,
            "_where": [f"{name}:{i + 1}" for i in range(len(texts))],
        }
    )


def _report(train: pd.DataFrame, held: pd.DataFrame) -> dict:
    data = ContractData(
        format="classification",
        train=train,
        eval=held,
        required=["text", "label"],
        text_fields=["text"],
        labels=["neg", "pos"],
    )
    return {c.name: c for c in run_contract(load_contract(None), data).checks}


def test_checks_find_what_they_look_for() -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocabulary, size=15)) for _ in range(36)]
    texts[5] = texts[4] + " again"  # row 6 is a near-duplicate of row 5
    texts[7] = "\u3000\x0b "  # whitespace only, in Python's sense
    texts[8] = texts[9]  # rows 9 and 10: the same text ...
    labels = ["pos" if i % 2 else "neg" for i in range(len(texts))]  # ... labelled both ways
    leak = "  " + texts[12].upper().replace(" ", " \t ", 2) + "\n"  # case and spacing differ
    checks = _report(
        _frame(texts, labels, "train"), _frame([leak, "unseen"], ["pos", "neg"], "eval")
    )
    assert not checks["empty_text"].passed
    assert checks["empty_text"].examples[0].startswith("train:8")
    assert not checks["conflicting_labels"].passed
    assert [e.split(":")[1] for e in checks["conflicting_labels"].examples] == ["9", "10"]
    assert checks["near_duplicates"].observed == round(4 / 36, 6)  # rows 5, 6, 9 and 10
    assert checks["near_duplicates"].examples == ["train:5 ~ train:6", "train:9 ~ train:10"]
    assert not checks["contamination_exact"].passed
    assert checks["contamination_exact"].examples[0].startswith("eval:1")
    assert checks["contamination_near"].observed == 0.5
    assert checks["contamination_near"].examples == ["eval:1 ~ train:13"]


ROWS = [
    {"text": "plain", "label": "pos"},
    {"text": 'with "quotes" and ünïcode', "label": "neg"},
    {"text": "a number label", "label": 3},
    {"text": None, "label": "pos"},
    {"label": "neg"},
]


def _both_readers(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pd.DataFrame, pd.DataFrame]:
    slow, slow_issues = read_table(str(path))
    monkeypatch.setattr(data_module, "ARROW_JSONL_BYTES", 0)
    fast, fast_issues = read_table(str(path))
    monkeypatch.undo()
    assert [i.where for i in fast_issues] == [i.where for i in slow_issues]
    spec = DataSpec(train=str(path))
    return normalise(slow, spec, []), normalise(fast, spec, [])


def test_arrow_reader_gives_the_line_readers_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"row {i}", "label": "pos"}) + "\n" for i in range(50))
    )
    assert data_module._read_jsonl_arrow(str(path), path.read_bytes(), "rows.jsonl") is not None
    slow, fast = _both_readers(path, monkeypatch)
    pd.testing.assert_frame_equal(slow, fast)
    assert fast["_where"].iloc[-1].endswith("rows.jsonl:50")


@pytest.mark.parametrize(
    "content",
    [
        # mixed label types, a null and a missing field: Arrow declines, the line reader answers
        "".join(json.dumps(r) + "\n" for r in ROWS),
        # a blank line: Arrow would renumber rows
        '{"text": "a", "label": "pos"}\n\n{"text": "b", "label": "neg"}\n',
        # a malformed line: reported at its line
        '{"text": "a", "label": "pos"}\n{"text": "b", "label"\n{"text": "c", "label": "neg"}\n',
        # nested values
        '{"text": "a", "label": "pos", "meta": {"k": [1, 2]}}\n',
        # a text that looks like a date
        '{"text": "2024-01-02", "label": "pos"}\n',
    ],
)
def test_arrow_reader_falls_back_where_it_must(
    content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    assert data_module._read_jsonl_arrow(str(path), path.read_bytes(), "rows.jsonl") is None
    slow, fast = _both_readers(path, monkeypatch)
    pd.testing.assert_frame_equal(slow, fast)


def test_arrow_reader_crash_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n')
    assert data_module._read_jsonl_arrow(str(path), path.read_bytes(), "rows.jsonl") is not None
    monkeypatch.setattr(data_module, "ARROW_JSONL_BYTES", 0)
    monkeypatch.setattr(data_module, "_ARROW_READER", "import os; os.abort()")  # as a segfault
    assert data_module._read_jsonl_arrow(str(path), path.read_bytes(), "rows.jsonl") is None
    table, issues = read_table(str(path))  # the line-by-line reader takes over
    assert list(table["text"]) == ["a", "b"] and not issues
    assert table["_where"].iloc[-1].endswith("rows.jsonl:2")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_arrow_reader_survives_random_bytes(
    raw: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(raw)
    slow, slow_issues = read_table(str(path))
    with monkeypatch.context() as patched:
        patched.setattr(data_module, "ARROW_JSONL_BYTES", 0)
        fast, fast_issues = read_table(str(path))
    assert [i.where for i in fast_issues] == [i.where for i in slow_issues]
    assert len(fast) == len(slow)
