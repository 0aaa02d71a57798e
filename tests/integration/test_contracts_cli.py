"""A corpus of bad inputs through `tuneline validate`: each gets exit 2 and a message naming the
check and the place; good data passes. Real GX, real Prefect flow, real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import keyword_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]


def good_rows(n: int = 40, seed: int = 0) -> list[dict]:
    return keyword_rows(n, seed)


def chat(i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"It is {2 * i}."},
        ]
    }


def pref(i: int) -> dict:
    return {
        "prompt": f"Question {i}: name a colour for item {i}.",
        "chosen": f"Blue suits item {i} well.",
        "rejected": f"I refuse, item {i}.",
    }


def write_text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# name -> (builder(tmp) -> extra CLI args, expected check, expected place substring)
Case = tuple[Callable[[Path], list[str]], str, str]


def _malformed(tmp: Path) -> list[str]:
    text = (
        lines(good_rows()[:2]) + '{"text": "broken, "label": "positive"}\n' + lines(good_rows()[2:])
    )
    return ["--data", str(write_text(tmp / "malformed.jsonl", text))]


def _not_utf8(tmp: Path) -> list[str]:
    raw = lines(good_rows()).encode() + b'{"text": "caf\xe9 \xff bad bytes", "label": "positive"}\n'
    return ["--data", str(write_text(tmp / "latin1.jsonl", raw))]


def _not_object(tmp: Path) -> list[str]:
    return ["--data", str(write_text(tmp / "list_line.jsonl", lines(good_rows()) + "[1, 2]\n"))]


def _missing_label(tmp: Path) -> list[str]:
    rows = good_rows()
    del rows[5]["label"]
    return ["--data", str(write_jsonl(tmp / "missing_label.jsonl", rows))]


def _empty_text(tmp: Path) -> list[str]:
    rows = good_rows()
    rows[7]["text"] = "   "
    return ["--data", str(write_jsonl(tmp / "empty_text.jsonl", rows))]


def _wrong_type(tmp: Path) -> list[str]:
    rows = good_rows()
    rows[3]["text"] = 12345
    return ["--data", str(write_jsonl(tmp / "wrong_type.jsonl", rows))]


def _unknown_label(tmp: Path) -> list[str]:
    held = good_rows(10, seed=1)
    held[2]["label"] = "neutral"
    return [
        "--data",
        str(write_jsonl(tmp / "train.jsonl", good_rows())),
        "--eval",
        str(write_jsonl(tmp / "eval_unknown.jsonl", held)),
    ]


def _too_few(tmp: Path) -> list[str]:
    return ["--data", str(write_jsonl(tmp / "tiny.jsonl", good_rows(6)))]


def _conflicting(tmp: Path) -> list[str]:
    rows = good_rows()
    rows.append(
        {
            "text": rows[0]["text"],
            "label": "negative" if rows[0]["label"] == "positive" else "positive",
        }
    )
    return ["--data", str(write_jsonl(tmp / "conflict.jsonl", rows))]


def _contaminated(tmp: Path) -> list[str]:
    rows = good_rows()
    held = good_rows(10, seed=1) + [rows[4]]
    return [
        "--data",
        str(write_jsonl(tmp / "train.jsonl", rows)),
        "--eval",
        str(write_jsonl(tmp / "eval_leak.jsonl", held)),
    ]


def _too_long(tmp: Path) -> list[str]:
    rows = good_rows()
    rows[9]["text"] = "word " * 5000
    return ["--data", str(write_jsonl(tmp / "too_long.jsonl", rows))]


def _chat_rows(tmp: Path, name: str, broken: dict) -> list[str]:
    rows = [chat(i) for i in range(20)]
    rows[4] = broken
    return ["--data", str(write_jsonl(tmp / name, rows)), "--format", "chat"]


def _chat_no_assistant(tmp: Path) -> list[str]:
    return _chat_rows(
        tmp, "chat_no_assistant.jsonl", {"messages": [{"role": "user", "content": "Hello there?"}]}
    )


def _chat_bad_role(tmp: Path) -> list[str]:
    return _chat_rows(
        tmp,
        "chat_bad_role.jsonl",
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep"}]},
    )


def _chat_order(tmp: Path) -> list[str]:
    return _chat_rows(
        tmp,
        "chat_order.jsonl",
        {
            "messages": [
                {"role": "assistant", "content": "I start"},
                {"role": "user", "content": "Odd"},
            ]
        },
    )


def _pref_identical(tmp: Path) -> list[str]:
    rows = [pref(i) for i in range(20)]
    rows[6]["rejected"] = rows[6]["chosen"]
    return ["--data", str(write_jsonl(tmp / "pref_same.jsonl", rows)), "--format", "preference"]


def _pref_empty(tmp: Path) -> list[str]:
    rows = [pref(i) for i in range(20)]
    rows[8]["chosen"] = ""
    return ["--data", str(write_jsonl(tmp / "pref_empty.jsonl", rows)), "--format", "preference"]


def _alpaca_missing(tmp: Path) -> list[str]:
    rows = [
        {"instruction": f"Add {i} and {i}.", "input": "", "output": str(2 * i)} for i in range(20)
    ]
    del rows[11]["output"]
    return ["--data", str(write_jsonl(tmp / "alpaca.jsonl", rows)), "--format", "alpaca"]


def _completion_empty(tmp: Path) -> list[str]:
    rows = [
        {"prompt": f"Count to {i}:", "completion": " ".join(map(str, range(i + 1)))}
        for i in range(20)
    ]
    rows[2]["completion"] = ""
    return ["--data", str(write_jsonl(tmp / "pc.jsonl", rows)), "--format", "prompt-completion"]


def _corpus_too_small(tmp: Path) -> list[str]:
    text = "\n\n".join(f"Paragraph number {i} of a very small corpus." for i in range(4))
    return ["--data", str(write_text(tmp / "corpus.txt", text)), "--format", "text"]


CASES: dict[str, Case] = {
    "malformed_jsonl": (_malformed, "malformed_records", "malformed.jsonl:3"),
    "not_utf8": (_not_utf8, "encoding", "latin1.jsonl:41"),
    "line_not_an_object": (_not_object, "malformed_records", "list_line.jsonl:41"),
    "missing_label": (_missing_label, "required_fields", "missing_label.jsonl:6"),
    "empty_text": (_empty_text, "empty_text", "empty_text.jsonl:8"),
    "text_not_a_string": (_wrong_type, "malformed_records", "wrong_type.jsonl:4"),
    "label_outside_set": (_unknown_label, "label_in_set", "eval_unknown.jsonl:3"),
    "too_few_rows": (_too_few, "row_count", "6 training rows"),
    "conflicting_labels": (_conflicting, "conflicting_labels", "conflict.jsonl:"),
    "eval_in_train": (_contaminated, "contamination_exact", "eval_leak.jsonl:11"),
    "text_too_long": (_too_long, "text_length", "too_long.jsonl:10"),
    "chat_without_assistant": (_chat_no_assistant, "chat_structure", "chat_no_assistant.jsonl:5"),
    "chat_unknown_role": (_chat_bad_role, "chat_structure", "chat_bad_role.jsonl:5"),
    "chat_wrong_order": (_chat_order, "chat_structure", "chat_order.jsonl:5"),
    "preference_identical_sides": (_pref_identical, "preference_pairs", "pref_same.jsonl:7"),
    "preference_empty_side": (_pref_empty, "preference_pairs", "pref_empty.jsonl:9"),
    "alpaca_missing_output": (_alpaca_missing, "required_fields", "alpaca.jsonl:12"),
    "completion_empty": (_completion_empty, "empty_text", "pc.jsonl:3"),
    "corpus_too_small": (_corpus_too_small, "row_count", "4 training rows"),
}


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return forkserver.tuneline("validate", *args, env=os.environ.copy(), timeout=300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_naming_check_and_place(case: str, tmp_path: Path) -> None:
    build, check, place = CASES[case]
    proc = validate(*build(tmp_path))
    assert proc.returncode == 2, (
        f"{case}: rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    error = proc.stderr[proc.stderr.index("error: data contract") :]
    assert f"- {check}:" in error, error
    assert place in error, error
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "fmt,rows",
    [
        ("classification", good_rows(60)),
        ("chat", [chat(i) for i in range(30)]),
        ("preference", [pref(i) for i in range(30)]),
        (
            "alpaca",
            [
                {"instruction": f"Spell {i} in words.", "input": "", "output": f"number {i}"}
                for i in range(30)
            ],
        ),
    ],
)
def test_good_data_passes(fmt: str, rows: list[dict], tmp_path: Path, tuneline_home: Path) -> None:
    data = write_jsonl(tmp_path / f"{fmt}.jsonl", rows)
    proc = validate("--data", str(data), "--format", fmt, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["passed"] is True and not report["errors"]
    # Great Expectations' Data Docs of this run's suites, beside the report
    reports = list((tuneline_home / "validations").rglob("data_contract.html"))
    assert len(reports) == 1, reports
    assert (reports[0].parent / "data_docs" / "gx_train" / "index.html").is_file()
