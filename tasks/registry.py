"""Registering a trained model in the MLflow registry with its lineage, and moving aliases.

One version per candidate: the `candidate_key` tag (recipe hash + data fingerprint + code version)
makes registration idempotent. `champion` moves only when `decide_promotion` says so; the one it
replaces keeps `previous-champion` for rollback.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks import tracking
from tasks.errors import retry_unless_user_error
from tasks.evaluation import EvalResult
from tasks.promotion import Decision, GateSpec, decide_promotion
from tasks.training.base import TrainResult

CHAMPION = "champion"
PREVIOUS = "previous-champion"
PIP_PINS = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "safetensors",
    "mlflow",
    "numpy",
    "pandas",
)


class RegisterSpec(BaseModel):
    """Whether and how the trained model enters the registry."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Register the trained model in MLflow.")
    gate: GateSpec = Field(default_factory=GateSpec, description="When a version becomes champion.")


@dataclass(frozen=True)
class RegistrationRef:
    model_name: str
    version: str | None
    promoted: bool
    reasons: list[str]
    already_registered: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def candidate_key(recipe_hash: str, data_fingerprint: str, code_version: str) -> str:
    payload = json.dumps([recipe_hash, data_fingerprint, code_version])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def find_candidate(name: str, key: str) -> Any | None:
    """The version of `name` already registered for this candidate key, if any."""
    mlc = tracking.client()
    try:
        found = mlc.search_model_versions(f"name = '{name}' and tags.candidate_key = '{key}'")
    except Exception:  # model does not exist yet
        return None
    return found[0] if found else None


def version_metrics(version: Any) -> dict[str, float]:
    return {
        k.removeprefix("metric."): float(v)
        for k, v in (version.tags or {}).items()
        if k.startswith("metric.")
    }


def current_champion(name: str) -> Any | None:
    mlc = tracking.client()
    try:
        return mlc.get_model_version_by_alias(name, CHAMPION)
    except Exception:
        return None


def _pip_requirements() -> list[str]:
    from importlib import metadata

    pins = []
    for dist in PIP_PINS:
        try:
            pins.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_model_version(run_id: str, name: str, train: TrainResult) -> str:
    """Log the artifact as an MLflow pyfunc model in `run_id` and register it; returns the version."""
    import mlflow

    from tasks.serving import ClassifierModel

    code = str(Path(__file__).resolve().parent)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ClassifierModel(),
            artifacts={"artifact": train.path},
            code_paths=[code],
            pip_requirements=_pip_requirements(),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def model_card(
    name: str, lineage: dict[str, str], train: TrainResult, ev: EvalResult, decision: Decision
) -> str:
    metrics = "\n".join(
        f"| {k} | {ev.base_metrics.get(k, float('nan')):.4f} | {v:.4f} |"
        for k, v in ev.metrics.items()
    )
    return f"""# {name}

Fine-tuned by tuneline with method `{train.method}` ({train.artifact}) from base model
`{lineage.get("base_model")}` (revision `{lineage.get("base_model_revision")}`).

- data fingerprint: `{lineage.get("data_fingerprint")}`
- trainable parameters: {train.trainable_params:,} of {train.total_params:,} ({train.trainable_share:.2%})
- training: {train.steps} steps, {train.train_seconds:.1f}s, final loss {train.train_loss:.4f}
- code: {lineage.get("code_version")}

| metric | base model | this version |
|---|---|---|
{metrics}

Promotion: {decision.summary}

Intended use: classify texts into {", ".join(f"`{x}`" for x in ev.labels)} like the curated training data.
Load with `mlflow.pyfunc.load_model("models:/{name}@champion").predict(["some text"])`.
"""


def register(
    name: str,
    run_id: str,
    train: TrainResult,
    ev: EvalResult,
    gate: GateSpec,
    lineage: dict[str, str],
) -> RegistrationRef:
    """Register (once per candidate key), tag lineage, decide promotion and move aliases."""
    mlc = tracking.client()
    key = lineage["candidate_key"]
    existing = find_candidate(name, key)
    if existing is not None:
        return RegistrationRef(
            name,
            str(existing.version),
            promoted=False,
            reasons=[
                f"same recipe, data and code as version {existing.version}; nothing registered"
            ],
            already_registered=True,
        )
    champion = current_champion(name)
    decision = decide_promotion(
        ev.metrics,
        version_metrics(champion) if champion is not None else None,
        ev.base_metrics,
        gate,
    )
    version = log_model_version(run_id, name, train)
    tags = {
        **lineage,
        **{f"metric.{k}": f"{v:.6f}" for k, v in ev.metrics.items()},
        **{f"base_metric.{k}": f"{v:.6f}" for k, v in ev.base_metrics.items()},
        "method": train.method,
        "artifact": train.artifact,
        "trainable_share": f"{train.trainable_share:.6f}",
        "promotion": "promoted" if decision.promote else "not promoted",
        "promotion_reasons": "; ".join(decision.reasons)[:5000],
    }
    for tag, value in tags.items():
        mlc.set_model_version_tag(name, version, tag, str(value))
    mlc.update_model_version(
        name, version, description=model_card(name, lineage, train, ev, decision)
    )
    tracking.log_text(run_id, model_card(name, lineage, train, ev, decision), "README.md")
    if decision.promote:
        if champion is not None:
            mlc.set_registered_model_alias(name, PREVIOUS, champion.version)
        mlc.set_registered_model_alias(name, CHAMPION, version)
    return RegistrationRef(name, version, decision.promote, decision.reasons, False, tags)


@task(
    name="register_model",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_unless_user_error,
)
def register_model(
    name: str,
    run_id: str,
    train: TrainResult,
    ev: EvalResult,
    gate: GateSpec,
    lineage: dict[str, str],
) -> RegistrationRef:
    """Register the trained model with its lineage and apply the promotion gate."""
    return register(name, run_id, train, ev, gate, lineage)


__all__ = ["RegisterSpec", "RegistrationRef", "candidate_key", "register", "register_model"]
