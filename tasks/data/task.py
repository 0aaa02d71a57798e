"""The data stage's Prefect task: load a recipe's data (`tasks.data.load`), retried because
sources may be remote."""

from __future__ import annotations

from prefect import task

from tasks.core import settings
from tasks.core.errors import retry_unless_user_error
from tasks.data.load import DataRef, DataSpec, load


@task(
    name="load_data",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_unless_user_error,
)
def load_data(spec: DataSpec, seed: int = settings.DEFAULT_SEED) -> DataRef:
    """Load the recipe's data (retried: sources may be remote)."""
    return load(spec, seed)
