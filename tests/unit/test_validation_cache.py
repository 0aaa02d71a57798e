"""The validation cache: a contract report is kept by what it depends on, read back the same,
and run again when the contract (or the data) changes."""

from __future__ import annotations

import json
from pathlib import Path

from data_contracts import ContractSpec
from tasks.data.load import DataSpec, load
from tasks.validation.cache import REPORT_JSON, read_report, report_folder
from tasks.validation.contract import ValidationInputs
from tests.conftest import keyword_rows, write_jsonl


def inputs_for(tmp_path: Path, rows: list[dict], spec: ContractSpec | None) -> ValidationInputs:
    train = write_jsonl(tmp_path / "train.jsonl", rows[:48])
    held = write_jsonl(tmp_path / "eval.jsonl", rows[48:])
    data = load(DataSpec(train=str(train), eval=str(held), labels=["negative", "positive"]))
    return ValidationInputs(data, spec, tmp_path)


def test_a_report_is_kept_read_back_and_rerun_for_another_contract(tmp_path: Path) -> None:
    rows = keyword_rows(60)
    inputs = inputs_for(tmp_path, rows, None)

    folder, kept = report_folder(inputs)
    assert not kept
    assert (folder / "data_docs" / "gx_train" / "index.html").is_file()
    first = read_report(folder)
    assert first.passed and first.n_train == 48

    again, kept = report_folder(inputs)
    assert kept and again == folder
    assert read_report(again).to_dict() == first.to_dict() == inputs.run().to_dict()

    stricter = inputs_for(tmp_path, rows, ContractSpec(checks={"row_count": {"min": 500}}))
    other, kept = report_folder(stricter)
    assert not kept and other != folder
    failed = read_report(other)
    assert not failed.passed and [c.name for c in failed.errors] == ["row_count"]
    assert json.loads((other / REPORT_JSON).read_text())["errors"] == ["row_count"]


def test_changed_data_is_validated_again(tmp_path: Path) -> None:
    rows = keyword_rows(60)
    folder, _ = report_folder(inputs_for(tmp_path, rows, None))
    rows[3]["text"] = ""
    changed, kept = report_folder(inputs_for(tmp_path, rows, None))
    assert not kept and changed != folder
    assert "empty_text" in [c.name for c in read_report(changed).errors]
