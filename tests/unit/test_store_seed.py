"""A new embedded MLflow store starts as a copy of an empty one kept in the user cache: the same
store MLflow would build, its default experiment's artifacts inside its own home, the kept copy
never touched by what the new store records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tasks.core import settings
from tasks.services import tracking


def _fresh(monkeypatch: pytest.MonkeyPatch, home: Path, cache: Path) -> None:
    monkeypatch.setenv("TUNELINE_HOME", str(home))
    monkeypatch.setenv("TUNELINE_CACHE_DIR", str(cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow sets it when used
    tracking._READY.clear()


def _tables(database: Path) -> dict[str, list[str]]:
    with sqlite3.connect(database) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            n: [c[1] for c in db.execute(f"PRAGMA table_info('{n}')").fetchall()] for n in names
        }


def test_new_store_is_seeded_from_the_kept_empty_one(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    _fresh(monkeypatch, tmp_path / "first", cache)
    first = tracking.client()
    template = tracking._store_template()
    assert template is not None and template.is_file()  # kept while still empty
    experiment = tracking.ensure_experiment("seeded")
    first.create_run(experiment)
    with sqlite3.connect(template) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    kept = template.stat().st_mtime_ns

    _fresh(monkeypatch, tmp_path / "second", cache)
    second = tracking.client()
    database = settings.home() / "mlflow.db"
    assert _tables(database) == _tables(tmp_path / "first" / "mlflow.db")
    default = second.get_experiment("0").artifact_location
    assert default.startswith((tmp_path / "second").as_uri())
    # the seeded store works like a built one, and is its own file
    run = second.create_run(tracking.ensure_experiment("seeded"))
    second.log_metric(run.info.run_id, "accuracy", 0.5)
    second.create_registered_model("seeded-model")
    assert [r.info.run_id for r in second.search_runs([run.info.experiment_id])] == [
        run.info.run_id
    ]
    assert len(first.search_runs([experiment])) == 1
    assert template.stat().st_mtime_ns == kept


def test_unwritable_cache_leaves_mlflow_to_build_the_store(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    _fresh(monkeypatch, tmp_path / "home", blocker / "cache")
    assert settings.user_cache() is None
    mlc = tracking.client()
    assert mlc.get_experiment("0") is not None
    assert (tmp_path / "home" / "mlflow.db").is_file()
