"""The MLflow run behind a flow run: one per flow run, named after it, written through a client.

Tasks pass the run id around and log to it with `MlflowClient`, so no task depends on MLflow's
thread-local active run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import closing as contextlib_closing
from pathlib import Path
from typing import Any

from prefect import task

from tasks.core import settings
from tasks.core.errors import RegistryError, retry_unless_user_error
from tasks.core.secrets import redact, redact_obj

_READY: set[str] = set()
# Runs this process started and has not ended: what an interrupt or a failure must not leave
# RUNNING (MLflow keeps a run RUNNING forever otherwise).
_OPEN: set[str] = set()


def client() -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    # MLflow prints "View run ... at: <tracking URI>/#/..." on stdout when a run ends, with any
    # credentials inside the URI; tuneline prints the run id itself.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not uri.startswith("sqlite:") or uri in _READY:
        return MlflowClient(tracking_uri=uri)
    # Two runs starting together would both create the embedded store's tables (and one fail):
    # the first use in each process goes one at a time.
    from tasks.core import locks

    with locks.file_lock("mlflow-store"):
        database = _sqlite_path(uri)
        new = database is not None and not database.exists()
        if new and database is not None:
            new = not _seed_store(database)
        mlc = MlflowClient(tracking_uri=uri)
        mlc.search_experiments(max_results=1)
        mlc.search_registered_models(max_results=1)
        if new and database is not None:
            _keep_empty_store(database)
    _READY.add(uri)
    return mlc


# -- a new embedded store, from an empty one made before ----------------------------------------
# MLflow builds a new SQLite store through its whole migration history: seconds for every new
# TUNELINE_HOME (and every test). The first store this MLflow version creates is kept, empty, in
# the user cache; later new stores start as a copy of it, their default experiment's artifact
# folder pointed into their own home.


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or "?" in uri:
        return None
    path = uri[len(prefix) :]
    return Path(path) if path and path != ":memory:" else None


def _store_template() -> Path | None:
    import mlflow

    cache = settings.user_cache()
    return cache / f"mlflow-{mlflow.__version__}-empty.db" if cache is not None else None


def _seed_store(database: Path) -> bool:
    """Start the new store `database` as a copy of the kept empty one; False when there is none
    (or it cannot be used), and MLflow creates the store itself."""
    import shutil
    import sqlite3

    template = _store_template()
    if template is None or not template.is_file():
        return False
    staging = database.with_name(f".{database.name}.seeding-{os.getpid()}")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, staging)
        with contextlib_closing(sqlite3.connect(staging)) as db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (f"{settings.artifact_root()}/0",),
            )
            db.commit()
        os.replace(staging, database)
    except (OSError, sqlite3.Error):
        staging.unlink(missing_ok=True)
        return False
    return True


def _keep_empty_store(database: Path) -> None:
    """Keep a copy of the store MLflow just created, while it is still empty, for the next new
    home (written aside and moved into place: a reader never sees half a file)."""
    import sqlite3

    template = _store_template()
    if template is None or template.exists():
        return
    staging = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        with (
            contextlib_closing(sqlite3.connect(database)) as source,
            contextlib_closing(sqlite3.connect(staging)) as copy,
        ):
            source.backup(copy)
            empty = (
                all(
                    copy.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
                    for table in ("runs", "registered_models", "model_versions")
                )
                and copy.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 1
            )
        if empty:
            os.replace(staging, template)
    except (OSError, sqlite3.Error):
        pass
    finally:
        staging.unlink(missing_ok=True)


def ensure_experiment(name: str) -> str:
    mlc = client()
    existing = mlc.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    kwargs: dict[str, Any] = {}
    if settings.uses_embedded_store():
        kwargs["artifact_location"] = f"{settings.artifact_root()}/{name}"
    try:
        return str(mlc.create_experiment(name, **kwargs))
    except Exception:  # created concurrently by another run
        again = mlc.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def flow_run_context() -> dict[str, str]:
    """The Prefect flow run this code runs in (empty outside a flow run)."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return {}
    info = {"prefect.flow_run_id": str(run_id), "prefect.flow_run_name": str(flow_run.get_name())}
    ui_url = flow_run.get_flow_run_ui_url() if hasattr(flow_run, "get_flow_run_ui_url") else None
    if ui_url:
        info["prefect.flow_run_url"] = str(ui_url)
    return info


def start(experiment: str, run_name: str | None, tags: Mapping[str, str]) -> str:
    mlc = client()
    experiment_id = ensure_experiment(experiment)
    run = mlc.create_run(experiment_id, run_name=run_name, tags=redact_obj(dict(tags)))
    _OPEN.add(str(run.info.run_id))
    return str(run.info.run_id)


def log_params(run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, redact(str(v))[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client().log_batch(run_id, params=items[i : i + 100])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    log_series(run_id, [(k, v, step or 0) for k, v in metrics.items()])


def log_series(run_id: str, points: Iterable[tuple[str, float | None, int]]) -> None:
    """Metric values at their steps (a training curve: name, value, step), in as few writes to
    the store as it takes (500 values each); values that are None are left out."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, int(step)) for k, v, step in points if v is not None]
    for i in range(0, len(items), 500):
        client().log_batch(run_id, metrics=items[i : i + 500])


TEXT_SUFFIXES = {".json", ".jsonl", ".html", ".md", ".txt", ".yaml", ".yml", ".csv"}


def log_file(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file as an artifact; text files go through `redact` on the way."""
    source = Path(path)
    if source.is_file() and source.suffix in TEXT_SUFFIXES:
        text = source.read_text(encoding="utf-8", errors="replace")
        masked = redact(text)
        if masked != text:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / source.name
                copy.write_text(masked, encoding="utf-8")
                client().log_artifact(run_id, str(copy), artifact_path)
            return
    client().log_artifact(run_id, str(path), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, redact(text), artifact_file)


def log_dict(run_id: str, payload: Any, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / Path(artifact_file).name
        target.write_text(json.dumps(redact_obj(payload), indent=2, default=str))
        parent = os.path.dirname(artifact_file) or None
        log_file(run_id, target, parent)


def end(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)
    _OPEN.discard(run_id)


def end_open_runs(status: str) -> list[str]:
    """End every run this process started and left open (FAILED, or KILLED on an interrupt);
    returns their ids. Never raises: it runs while something else already went wrong."""
    ended = []
    for run_id in sorted(_OPEN):
        try:
            if client().get_run(run_id).info.status == "RUNNING":
                end(run_id, status)
                ended.append(run_id)
            _OPEN.discard(run_id)
        except Exception:  # MLflow away too: nothing more to do here
            continue
    return ended


def end_runs_of_flow_run(flow_run_id: str, status: str) -> list[str]:
    """End the RUNNING MLflow runs of one Prefect flow run (found by their tag, so this works
    from any process, e.g. the runner that cancelled the flow run). Never raises."""
    try:
        mlc = client()
        experiments = [e.experiment_id for e in mlc.search_experiments()]
        runs = mlc.search_runs(
            experiments,
            f"tags.`prefect.flow_run_id` = '{flow_run_id}' and attributes.status = 'RUNNING'",
        )
    except Exception:
        return []
    ended = []
    for run in runs:
        try:
            end(run.info.run_id, status)
            ended.append(run.info.run_id)
        except Exception:
            continue
    return ended


def end_runs_on_state(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect flow hook (`on_failure`, `on_crashed`, `on_cancellation`): the flow run's MLflow
    runs end FAILED when it failed, KILLED when it was cancelled or aborted."""
    from prefect.runtime import flow_run as current

    status = "FAILED" if state.is_failed() else "KILLED"
    if str(current.get_id() or "") == str(flow_run.id):
        ended = end_open_runs(status)  # the flow's own process: it knows its runs
    else:  # e.g. the runner that cancelled it: find them by tag
        ended = end_runs_of_flow_run(str(flow_run.id), status)
    for run_id in ended:
        logging.getLogger("tuneline").warning("MLflow run %s marked %s", run_id, status)


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts to dotted keys, for MLflow params."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


@task(
    name="start_tracking",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_unless_user_error,
)
def start_tracking(
    experiment: str,
    params: dict[str, Any],
    tags: dict[str, str],
    documents: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
) -> str:
    """Open the MLflow run for this flow run (named after it, or a child run); returns its id."""
    context = flow_run_context()
    extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
    name = run_name or context.get("prefect.flow_run_name")
    try:
        run_id = start(experiment, name, {**tags, **context, **extra})
        log_params(run_id, params)
        for name, payload in (documents or {}).items():
            log_dict(run_id, payload, name)
    except Exception as exc:
        raise RegistryError(
            redact(f"MLflow at {settings.tracking_uri()} refused or is unreachable: {exc}")
        ) from exc
    return run_id


@task(
    name="end_tracking",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_unless_user_error,
)
def end_tracking(run_id: str, status: str = "FINISHED") -> None:
    end(run_id, status)
