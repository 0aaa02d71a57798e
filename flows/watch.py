"""The `watch` flow: one look at each recipe's curated data; emits `tuneline.data.landed` for the
recipes whose data landed (see tasks.watching for the rules). `tuneline serve` runs the same check
in-process every few seconds; deploy this flow on a schedule instead where the watcher should run
on a work pool."""

from __future__ import annotations

from prefect import flow, task

from flows.recipe import Recipe
from tasks.watching import emit_landed, poll


@task(name="poll_data")
def poll_data(name: str, source: str, quiet_seconds: float) -> dict | None:
    return poll(name, source, quiet_seconds)


@flow(name="watch", log_prints=True)
def watch(recipes: list[Recipe]) -> list[str]:
    """Emit a data-landed event for each recipe whose data changed and settled."""
    landed = []
    for recipe in recipes:
        if not recipe.deploy.on_new_data:
            continue
        found = poll_data(recipe.name, recipe.data.train, recipe.deploy.quiet_seconds)
        if found is not None:
            emit_landed(recipe.name, found)
            print(f"New data for {recipe.name}: {found}")
            landed.append(recipe.name)
    return landed
