"""`register.approval` and `register.approval_timeout`: defaults, shorthand, errors, and that
choosing who promotes does not change what gets trained (the candidate key)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from deployments.build import finetune_deployment
from flows.recipe import parse_recipe
from tasks.core.errors import RecipeError
from tests.unit.test_recipe import GOOD

REPO = Path(__file__).resolve().parents[2]


def test_approval_defaults_to_auto_with_a_week_to_answer() -> None:
    recipe = parse_recipe(GOOD, "d.yaml")
    assert recipe.registry.approval == "auto"
    assert recipe.registry.approval_timeout == timedelta(days=7)


@pytest.mark.parametrize(
    ("value", "seconds"), [("12h", 43200), ("30m", 1800), ("90", 90), ("P2D", 172800)]
)
def test_timeout_shorthand(value: str, seconds: float) -> None:
    recipe = parse_recipe(GOOD, "d.yaml", None, [f"register.approval_timeout={value}"])
    assert recipe.registry.approval_timeout.total_seconds() == seconds


def test_bad_values_name_the_key() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD, "d.yaml", None, ["register.approval=maybe"])
    assert "register.approval: input should be 'auto' or 'required', got 'maybe'" in str(err.value)
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD, "d.yaml", None, ["register.approval_timeout=0s"])
    assert "register.approval_timeout: must be at least one second" in str(err.value)


def test_approval_does_not_change_the_candidate() -> None:
    auto = parse_recipe(GOOD, "d.yaml")
    required = parse_recipe(
        GOOD, "d.yaml", None, ["register.approval=required", "register.approval_timeout=1h"]
    )
    assert auto.fingerprint() == required.fingerprint()


def test_shipped_approval_recipe_deploys_with_approval_required() -> None:
    from flows.recipe import load_recipe

    recipe = load_recipe(REPO / "deployments" / "sentiment-lora-approval.yaml")
    parameters = finetune_deployment(recipe).parameters["recipe"]
    assert parameters["register"]["approval"] == "required"
    assert parameters["register"]["approval_timeout"] == "P7D"
