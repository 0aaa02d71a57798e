"""Serialising work that must not overlap anywhere (registrations to one model name): the file
lock of `tasks.core.locks` and, when `PREFECT_API_URL` names a shared server (runs on several machines
or workers), a Prefect global concurrency limit of 1 over it. The limit is created on first use
and shows in the Prefect UI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from tasks.core.locks import file_lock, slug


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the Prefect global concurrency limit `name` if the server does not have it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )


@contextlib.contextmanager
def exclusive(name: str, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold `name` exclusively on this machine and, with a Prefect server, across machines."""
    with file_lock(name):
        if not os.environ.get("PREFECT_API_URL"):
            yield
            return
        from prefect.concurrency.sync import concurrency

        limit = f"tuneline-{slug(name)}"
        ensure_limit(limit)
        with concurrency(limit, occupy=1, timeout_seconds=timeout_seconds, strict=True):
            yield
