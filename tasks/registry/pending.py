"""Registering later: what a run that could not reach MLflow keeps beside its artifact
(`registration.json`), and `tuneline register FOLDER` registering from it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tasks.core.errors import RegistryError, first_line
from tasks.core.promotion import GateSpec
from tasks.core.secrets import redact_obj
from tasks.evaluation.classifier import EvalResult
from tasks.registry.register import Candidate, RegistrationRef, register_or_outage
from tasks.services import tracking
from tasks.training.base import TrainResult

PENDING = "registration.json"


def save_pending(folder: str, candidate: Candidate) -> str:
    """Write everything registration needs beside the trained artifact (atomically), so a
    registration MLflow refused can be done later with `tuneline register FOLDER`."""
    from dataclasses import asdict

    target = Path(folder) / PENDING
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": candidate.name,
        "run_id": candidate.run_id,
        "train": asdict(candidate.train),
        "eval": asdict(candidate.ev),
        "gate": candidate.gate.model_dump(),
        "lineage": candidate.lineage,
        "registered_version": None,
    }
    _write_pending(target, payload)
    return str(Path(folder))


def _write_pending(target: Path, payload: dict[str, Any]) -> None:
    tmp = target.with_name(f".{PENDING}.tmp")
    tmp.write_text(json.dumps(redact_obj(payload), indent=1, default=str))
    tmp.replace(target)


def mark_registered(folder: str, registered: RegistrationRef) -> None:
    target = Path(folder) / PENDING
    if target.is_file():
        payload = json.loads(target.read_text())
        payload["registered_version"] = registered.version
        _write_pending(target, payload)


def register_pending(path: str) -> tuple[Candidate, RegistrationRef]:
    """Register a run kept by `save_pending` (idempotent: a second call registers nothing):
    what was kept, and what registration made of it."""
    folder = Path(path)
    file = folder if folder.name == PENDING else folder / PENDING
    if not file.is_file():
        raise RegistryError(
            f"{path}: no {PENDING} here; name the run folder a failed registration printed"
        )
    candidate = _read_pending(file)
    if not Path(candidate.train.path).is_dir():
        raise RegistryError(
            f"{path}: the trained artifact {candidate.train.path} is gone; re-run the recipe"
        )
    registered = register_or_outage(candidate, "try again later")
    mark_registered(str(file.parent), registered)
    with contextlib.suppress(Exception):
        tracking.end(candidate.run_id)
    return candidate, registered


def _read_pending(file: Path) -> Candidate:
    """The registration kept in `file`; a damaged one (cut short, edited, not tuneline's) is one
    line saying so, never a traceback."""
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
        lineage = {str(k): str(v) for k, v in payload["lineage"].items()}
        lineage["candidate_key"]  # noqa: B018 - registration is keyed by it
        return Candidate(
            str(payload["name"]),
            str(payload["run_id"]),
            TrainResult(**payload["train"]),
            EvalResult(**payload["eval"]),
            GateSpec(**payload["gate"]),
            lineage,
        )
    except json.JSONDecodeError as exc:
        problem = f"not JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except KeyError as exc:
        problem = f"no {exc} entry"
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        problem = first_line(exc)
    raise RegistryError(
        f"{file}: damaged, cannot register from it ({problem}); re-run the recipe to train and "
        "register it again"
    )
