"""The data contract's part of the promotion gate: an eval set too small for the gate's test to
ever show the gain asked for, and training data with a single label, stop the run before any
training; every shipped recipe's eval set is large enough for its own gate."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from data_contracts import ContractData, load_contract, run_contract
from tasks.core.promotion import GateSpec
from tasks.validation.contract import gate_needs
from tests.conftest import REPO, keyword_rows


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def classification(
    train: list[dict], held: list[dict], gate: GateSpec | None, labels: list[str] | None = None
) -> ContractData:
    return ContractData(
        format="classification",
        train=frame(train),
        eval=frame(held),
        required=["text", "label"],
        text_fields=["text"],
        labels=labels or [],
        **gate_needs(gate, "classification", len(held), None),
    )


def check(data: ContractData, name: str):
    report = run_contract(load_contract(None, None, data.format), data)
    found = [c for c in report.checks if c.name == name]
    return report, (found[0] if found else None)


def test_an_eval_of_one_row_stops_the_run_with_the_rows_needed() -> None:
    rows = keyword_rows(101)
    report, result = check(classification(rows[:100], rows[100:], GateSpec()), "eval_size")
    assert result is not None and not report.passed
    assert result.message.startswith(
        "eval has 1 row; about 60 are needed to detect a 10-point gain in accuracy at 95%"
    )
    assert "register.gate.detect_gain" in result.message
    saved = json.loads(report.to_json())
    assert "eval_size" in saved["errors"]
    assert "- eval_size: eval has 1 row" in report.summary()


def test_the_rows_needed_follow_the_gain_margin_and_confidence() -> None:
    rows = keyword_rows(160)
    data = classification(rows[:100], rows[100:], GateSpec(detect_gain=0.02))
    _, result = check(data, "eval_size")
    assert result is not None and not result.passed
    assert "eval has 60 rows; about 300 are needed to detect a 2-point gain" in result.message
    stricter = GateSpec(detect_gain=0.02, beat_champion_by=0.01, confidence=0.99)
    _, harder = check(classification(rows[:100], rows[100:], stricter), "eval_size")
    assert harder is not None and harder.threshold > 300
    _, enough = check(classification(rows[:100], rows[100:], GateSpec()), "eval_size")
    assert enough is not None and enough.passed


def test_without_a_gate_the_eval_is_not_sized() -> None:
    rows = keyword_rows(101)
    _, result = check(classification(rows[:100], rows[100:], None), "eval_size")
    assert result is None


def test_causal_gates_count_only_the_rows_they_are_measured_on() -> None:
    pairs = [
        {"prompt": f"q{i}", "chosen": f"good answer {i}", "rejected": f"bad {i}"}
        for i in range(120)
    ]
    gate = GateSpec(metric="preference_accuracy")
    needs = gate_needs(gate, "preference", 60, 4)
    data = ContractData(
        format="preference",
        train=frame(pairs[:60]),
        eval=frame(pairs[60:]),
        required=["chosen", "rejected"],
        text_fields=["chosen", "rejected"],
        **needs,
    )
    _, result = check(data, "eval_size")
    assert result is not None and not result.passed
    assert "eval has 4 rows (of 60, evaluate.generation_rows)" in result.message
    # a perplexity gate uses every eval row, and only needs enough for a paired test
    assert gate_needs(GateSpec(metric="perplexity"), "alpaca", 60, 4)["eval_rows_used"] == 60
    assert gate_needs(GateSpec(metric="perplexity"), "alpaca", 5, 4)["eval_rows_needed"] == 6


@pytest.mark.parametrize("labels", [None, ["negative", "positive"]])
def test_training_data_with_one_label_is_a_contract_error(labels: list[str] | None) -> None:
    rows = [r | {"label": "positive"} for r in keyword_rows(80)]
    report, result = check(classification(rows[:60], rows[60:], GateSpec(), labels), "label_count")
    assert result is not None and not result.passed and not report.passed
    assert result.message.startswith("train has 1 label ('positive')")
    two = keyword_rows(80)
    _, fine = check(classification(two[:60], two[60:], GateSpec(), labels), "label_count")
    assert fine is not None and fine.passed


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "deployments").glob("*.yaml")))
def test_every_shipped_recipe_has_an_eval_set_its_gate_can_decide_on(recipe: str) -> None:
    from flows.recipe import load_recipe
    from tasks.data.load import load

    parsed = load_recipe(REPO / "deployments" / recipe)
    data = load(parsed.data, parsed.train.seed)
    needs = gate_needs(
        parsed.registry.gate, data.format, len(data.eval()), parsed.evaluate.generation_rows
    )
    assert needs["eval_rows_used"] >= needs["eval_rows_needed"], (recipe, needs)


def test_the_gain_to_detect_is_documented_for_the_form() -> None:
    field = GateSpec.model_fields["detect_gain"]
    assert field.description and "contract" in field.description
