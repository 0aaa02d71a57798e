"""The `watch` flow: one look at each recipe's curated data; emits `tuneline.data.landed` for the
recipes whose data landed (see tasks.data.watching for the rules). `tuneline serve` makes the same
check in-process every few seconds; `tuneline deploy` deploys this flow to the work pool on an
interval, so that data landing starts the pool's runs without a `serve` process."""

from __future__ import annotations

from prefect import flow, task

from flows.recipe import Recipe
from tasks.data.watching import check_recipes


@task(name="check_data")
def check_data(recipes: list[Recipe]) -> list[str]:
    return [name for name, _ in check_recipes(recipes)]


@flow(name="watch", log_prints=True)
def watch(recipes: list[Recipe]) -> list[str]:
    """Emit a data-landed event for each recipe whose data changed and settled."""
    landed = check_data(recipes)
    for name in landed:
        print(f"New curated data for {name}: its deployment starts a run")
    return landed
