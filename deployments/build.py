"""Recipes -> Prefect deployments, and `serve` (what `tuneline serve` runs)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flows.finetune import finetune
from flows.recipe import Recipe, load_recipe
from tasks.core.errors import TunelineError
from tasks.data.watching import EVENT, check_recipes, resource_id
from tasks.services.prefect_api import check_api

SHIPPED = Path(__file__).resolve().parent
PROJECT_ROOT = SHIPPED.parent
ENTRYPOINT = "flows/finetune.py:finetune"
WATCH_ENTRYPOINT = "flows/watch.py:watch"
WATCHER = "curated-data"  # the watch flow's deployment: watch/curated-data
log = logging.getLogger("tuneline.serve")


def shipped_recipes() -> list[Path]:
    return sorted(SHIPPED.glob("*.yaml"))


def schedule_kwargs(recipe: Recipe) -> dict[str, Any]:
    deploy = recipe.deploy
    if deploy.cron:
        return {"cron": deploy.cron}
    if deploy.interval_minutes:
        return {"interval": timedelta(minutes=deploy.interval_minutes)}
    return {}


def data_trigger(recipe: Recipe) -> Any:
    """Start the recipe's deployment when the watcher says its curated data landed."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"{recipe.name}: new curated data",
        expect={EVENT},
        match={"prefect.resource.id": resource_id(recipe.name)},
    )


def deployment_settings(recipe: Recipe) -> dict[str, Any]:
    """What every deployment of a recipe carries: parameters, schedule, trigger, tags and the
    one-run-at-a-time limit."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    schedule = schedule_kwargs(recipe)
    if schedule.get("cron") and recipe.deploy.timezone != "UTC":
        from prefect.client.schemas.schedules import CronSchedule

        schedule = {
            "schedule": CronSchedule(cron=schedule["cron"], timezone=recipe.deploy.timezone)
        }
    return {
        "name": recipe.name,
        "description": recipe.description or f"Fine-tune {recipe.name}",
        "parameters": {"recipe": recipe.model_dump(mode="json", by_alias=True)},
        "triggers": [data_trigger(recipe)] if recipe.deploy.on_new_data else None,
        "concurrency_limit": ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        "tags": ["tuneline", recipe.task, recipe.method.name],
        **schedule,
    }


def deploy_to_pool(
    paths: list[str | Path],
    pool: str,
    image: str | None = None,
    job_variables: dict[str, Any] | None = None,
    source: str | None = None,
    watch_interval: float = 60.0,
) -> tuple[list[str], str | None]:
    """Register the recipes as deployments of a Prefect work pool; the pool's workers run them.
    When a recipe retrains on new data, the `watch` flow is deployed too, every
    `watch_interval` seconds. Returns the recipes' deployment ids and the watcher's (or None).

    A `process` pool runs the flow from `source` (default: this project's folder) on the worker's
    machine; a `docker` or `kubernetes` pool runs it in `image` (built from the project, see the
    README), with `job_variables` such as GPU requests."""
    if not os.environ.get("PREFECT_API_URL"):
        raise TunelineError(
            "deploy: PREFECT_API_URL is not set; point it at the Prefect server the workers use"
        )
    check_api(os.environ["PREFECT_API_URL"].rstrip("/"))
    recipes = [load_recipe(p) for p in (paths or shipped_recipes())]
    target = _PoolTarget(pool, image, job_variables or {}, source)
    ids = [target.deploy(finetune, ENTRYPOINT, **deployment_settings(r)) for r in recipes]
    watched = [r for r in recipes if r.deploy.on_new_data]
    if not watched:
        return ids, None
    return ids, deploy_watcher(watched, target, watch_interval)


@dataclass(frozen=True)
class _PoolTarget:
    """Where `tuneline deploy` puts flows: a work pool, run from this project's folder (`source`)
    or from `image`, with the pool's job variables."""

    pool: str
    image: str | None
    job_variables: dict[str, Any]
    source: str | None

    def deploy(self, flow: Any, entrypoint: str, **settings: Any) -> str:
        if self.image is None:
            flow = flow.from_source(source=self.source or str(PROJECT_ROOT), entrypoint=entrypoint)
        deployment_id = flow.deploy(
            work_pool_name=self.pool,
            image=self.image,
            build=False,
            push=False,
            job_variables=self.job_variables,
            print_next_steps=False,
            **settings,
        )
        return str(deployment_id)


def deploy_watcher(recipes: list[Recipe], target: _PoolTarget, interval: float) -> str:
    """The `watch` flow as a deployment of the pool, every `interval` seconds: it looks at the
    curated data of the recipes that retrain on new data and emits the event their deployments'
    triggers wait for. Its data-watch state lives in the worker's TUNELINE_HOME.

    One look at a time: a look that falls due while the last one still runs (a busy worker, an
    interval shorter than a look) is cancelled before the worker starts a process for it; the next
    one sees what it would have seen."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.watch import watch

    return target.deploy(
        watch,
        WATCH_ENTRYPOINT,
        name=WATCHER,
        description="Looks for new curated data of: " + ", ".join(r.name for r in recipes),
        parameters={"recipes": [r.model_dump(mode="json", by_alias=True) for r in recipes]},
        interval=timedelta(seconds=interval),
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        tags=["tuneline", "watch"],
    )


def finetune_deployment(recipe: Recipe) -> Any:
    """The recipe as a deployment of the `finetune` flow.

    One run at a time per recipe: a second trigger while one runs is queued (ENQUEUE) and starts
    when the first ends; it then finds the candidate already registered if nothing changed.
    """
    return finetune.to_deployment(**deployment_settings(recipe))


def _watch_loop(recipes: list[Recipe], interval: float, stop: threading.Event) -> None:
    def failed(name: str, exc: Exception) -> None:  # keep watching; the next look tries again
        log.error("watching %s failed: %s", name, exc, exc_info=exc)

    while not stop.is_set():
        check_recipes(recipes, on_error=failed)
        stop.wait(interval)


def serve(paths: list[str | Path], watch_interval: float = 30.0) -> None:
    """Serve the recipes' deployments against the Prefect server in PREFECT_API_URL, watching
    their data for new files. Blocks until interrupted."""
    if not os.environ.get("PREFECT_API_URL"):
        raise TunelineError(
            "serve: PREFECT_API_URL is not set; start a server (prefect server start) and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    check_api(os.environ["PREFECT_API_URL"].rstrip("/"))
    from prefect import serve as prefect_serve

    recipes = [load_recipe(p) for p in (paths or shipped_recipes())]
    deployments = [finetune_deployment(r) for r in recipes]
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_loop, args=(recipes, watch_interval, stop), daemon=True, name="watcher"
    )
    watcher.start()
    try:
        prefect_serve(*deployments)
    finally:
        stop.set()
