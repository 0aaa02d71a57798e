"""Registering a trained model in the MLflow registry with its lineage, and moving aliases.

One version per candidate: the `candidate_key` tag (recipe hash + data fingerprint + code version)
makes registration idempotent. `champion` moves only when `decide_promotion` says so; the one it
replaces keeps `previous-champion` for rollback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core import settings
from tasks.core.errors import (
    RegistryError,
    RegistryUnavailable,
    TunelineError,
    first_line,
)
from tasks.core.promotion import Decision, GateSpec, RowScores, decide_promotion
from tasks.core.secrets import redact, redact_obj
from tasks.evaluation.classifier import (
    ROW_TABLES,
    EvalResult,
    load_rows,
    previous_rows,
)
from tasks.services import concurrency, tracking
from tasks.training.base import TrainResult

CHAMPION = "champion"
PREVIOUS = "previous-champion"
# A version the gate promoted carries "pending" here until `champion` points at it ("done"):
# what tells an interrupted promotion from one a person or a newer version has since undone.
PROMOTION_STATE = "promotion_state"
# On the registered model: when a person last moved `champion` (promote, rollback), in ms.
MOVED_BY_HAND = "champion_moved_by_hand_at"
# With `register.approval: required` a version the gate passed holds `challenger` and carries
# PROMOTION_STATE "awaiting-approval" until a person answers (tasks.registry.approval); the lineage tag
# APPROVAL_POLICY says which policy the version was registered under.
CHALLENGER = "challenger"
AWAITING = "awaiting-approval"
APPROVAL_POLICY = "approval_policy"
T = TypeVar("T")
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
    approval: Literal["auto", "required"] = Field(
        default="auto",
        description="auto: a version that passes the gate becomes champion at once. required: it "
        "is registered with the alias `challenger` and becomes champion only when a person "
        "approves it (the Prefect UI form of the waiting run, or `tuneline approve`).",
    )
    approval_timeout: timedelta = Field(
        default=timedelta(days=7),
        description="With approval required: how long a deployment run waits for the answer "
        "(e.g. 7d, 12h, 30m, or seconds). Unanswered, the run fails as timed out and the "
        "version stays `challenger`.",
    )

    @field_validator("approval_timeout", mode="before")
    @classmethod
    def _duration_shorthand(cls, value: Any) -> Any:
        """`7d`, `12h`, `30m`, `90s` besides seconds and ISO 8601 (`P7D`)."""
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        if isinstance(value, str) and value[-1:] in units:
            try:
                return float(value[:-1]) * units[value[-1]]
            except ValueError:
                pass
        return value

    @field_validator("approval_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1:
            raise ValueError("must be at least one second, e.g. 7d or 12h")
        return value


@dataclass(frozen=True)
class Candidate:
    """What registering one trained model needs, in one piece: the run flow stages it on disk
    (`registration.json`) before talking to MLflow, and `tuneline register` reads it back."""

    name: str  # the registered model's name (the recipe's)
    run_id: str  # the MLflow run it was trained and evaluated in
    train: TrainResult
    ev: EvalResult
    gate: GateSpec
    lineage: dict[str, str]  # the version's tags; its `candidate_key` keys registration

    @property
    def key(self) -> str:
        return self.lineage["candidate_key"]


@dataclass(frozen=True)
class RegistrationRef:
    model_name: str
    version: str | None
    promoted: bool
    reasons: list[str]
    already_registered: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    awaiting_approval: bool = False  # passed the gate, holds `challenger`, waits for a person


def candidate_key(
    recipe_hash: str, data_fingerprint: str, code_version: str, parent: str = ""
) -> str:
    """`parent` ("name/version") for a run started from a registered version: the same recipe
    and data from another starting point is another candidate."""
    payload = json.dumps(
        [recipe_hash, data_fingerprint, code_version, *([parent] if parent else [])]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def find_candidate(name: str, key: str) -> Any | None:
    """The version of `name` already registered for this candidate key, if any (None: not
    registered yet). A registry failure is not "not registered": the search is retried like the
    other registry calls, then a `RegistryUnavailable` says so (a retrain here would register a
    second version of the same candidate)."""
    return with_registry_retries(
        lambda: _search_candidate(name, key),
        f"look up '{name}' in the registry",
        "nothing was trained or registered; run again once MLflow answers",
    )


def _search_candidate(name: str, key: str) -> Any | None:
    query = f"name = '{name}' and tags.candidate_key = '{key}'"
    found = tracking.client().search_model_versions(query)
    return found[0] if found else None


def with_registry_retries(call: Callable[[], T], what: str, what_next: str) -> T:
    """`call()`, retried after each of `TUNELINE_REGISTRY_RETRY_DELAYS` when MLflow fails (on
    top of MLflow's own HTTP retries); the last failure as one `RegistryUnavailable` line."""
    delays = settings.registry_retry_delays()
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except TunelineError:
            raise
        except Exception as exc:
            if attempt == len(delays):
                raise RegistryUnavailable(
                    f"MLflow at {redact(settings.tracking_uri())} failed to {what} "
                    f"{attempt + 1} times ({first_line(exc)}); {what_next}"
                ) from None
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def version_metrics(version: Any) -> dict[str, float]:
    return {
        k.removeprefix("metric."): float(v)
        for k, v in (version.tags or {}).items()
        if k.startswith("metric.")
    }


def current_champion(name: str) -> Any | None:
    """The version holding `champion`; None only when MLflow says there is none (a failing
    registry must not read as "no champion", or any candidate would take it)."""
    from mlflow.exceptions import MlflowException

    mlc = tracking.client()
    try:
        return mlc.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None  # no such model yet, or no version holds the alias
        raise


def champion_rows(champion: Any) -> RowScores | None:
    """The champion's per-row eval results, from its run's `eval/` artifacts (None when they
    cannot be fetched: the gate then declines to promote on an unpaired comparison)."""
    import tempfile

    run_id = (champion.tags or {}).get("mlflow_run_id") or champion.run_id
    if not run_id:
        return None
    mlc = tracking.client()
    with tempfile.TemporaryDirectory() as folder:
        for table in ROW_TABLES:
            try:
                local = mlc.download_artifacts(run_id, f"eval/{table}", folder)
            except Exception:
                if not reachable():
                    raise  # an outage, not a missing table: the register task waits and retries
                continue  # not logged by this run (older or other model family)
            loaded = load_rows(local)
            if loaded is not None:
                return loaded[0]
    return None


def pip_requirements(manifest: dict[str, Any]) -> list[str]:
    """What a version needs installed to load: the libraries it runs on, pinned to the versions
    it was trained with, and the package its base model ships in (`package:` bases)."""
    from importlib import metadata

    from tasks.models.base import package_distribution

    pins = []
    for dist in PIP_PINS:
        try:
            pins.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    base = manifest.get("base") or {}
    package = package_distribution(str(base.get("path", "")))
    if package is not None and base.get("package_version"):
        pins.append(f"{package}=={base['package_version']}")
    return pins


@contextlib.contextmanager
def distributions_known_from_trl() -> Iterator[None]:
    """While it lasts, MLflow's map of installed modules to distributions is the one trl made.

    Logging a model, MLflow checks its pinned requirements against the installed distributions,
    mapping every installed module to its distribution first (`packages_distributions`: a look at
    every file every installed distribution lists, 0.2-0.3 s on the main thread). trl builds that
    same map when it is imported (`trl.import_utils.PACKAGE_DISTRIBUTION_MAPPING`); a causal run
    has it already. Without trl imported, MLflow builds its own."""
    import sys

    known = getattr(sys.modules.get("trl.import_utils"), "PACKAGE_DISTRIBUTION_MAPPING", None)
    if not known:
        yield
        return
    import importlib_metadata

    original = importlib_metadata.packages_distributions

    def from_trl() -> dict[str, list[str]]:
        return {module: list(dists) for module, dists in known.items()}  # MLflow adds to it

    importlib_metadata.packages_distributions = from_trl
    try:
        yield
    finally:
        importlib_metadata.packages_distributions = original


@contextlib.contextmanager
def without_inapplicable_advice() -> Iterator[None]:
    """Leave out MLflow's advice to log an input example, while a model is logged: MLflow would
    load the model and predict from the example to check it, seconds to minutes of every
    registration for a model of real size."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        yield


def serving_code(folder: Path) -> str:
    """The part of tuneline a registered model loads with, staged under `folder` as a `tasks`
    package: `tasks.models` and the `tasks.core` helpers it imports (neither imports Prefect or
    the stages). Bundled with every version (`code_paths`), so that a version loads where
    tuneline is not installed (`mlflow models serve` in the environment MLflow builds from the
    version's requirements), with the code it was registered with."""
    package = Path(__file__).resolve().parents[1]
    target = folder / "tasks"
    target.mkdir()
    shutil.copy2(package / "__init__.py", target / "__init__.py")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("core", "models"):
        shutil.copytree(package / part, target / part, ignore=skip)
    return str(target)


def log_model_version(
    run_id: str, name: str, train: TrainResult, tags: dict[str, str], description: str
) -> str:
    """Log the artifact as an MLflow pyfunc model in `run_id`, then register it with its tags and
    model card in one call (a version never exists without its lineage)."""
    import mlflow

    from tasks.models.artifacts import read_manifest
    from tasks.models.serving import model_code

    manifest = read_manifest(train.path)
    signature = None
    if manifest.get("task") == "causal-lm" and manifest.get("objective") != "score":
        from mlflow.models import infer_signature

        # declared so `predict(..., params={"max_new_tokens": 16})` reaches the model
        signature = infer_signature(
            ["a request"], ["an answer"], params={"max_new_tokens": 64, "raw": False}
        )
    with (
        mlflow.start_run(run_id=run_id),
        distributions_known_from_trl(),
        without_inapplicable_advice(),
        tempfile.TemporaryDirectory(prefix="tuneline-serving-code-") as staging,
    ):
        info = mlflow.pyfunc.log_model(
            name="model",
            signature=signature,
            python_model=model_code(manifest, Path(staging)),
            artifacts={"artifact": train.path},
            code_paths=[serving_code(Path(staging))],
            pip_requirements=pip_requirements(manifest),
        )
    mlc = tracking.client()
    try:
        mlc.get_registered_model(name)
    except Exception:
        with contextlib.suppress(Exception):  # created concurrently
            mlc.create_registered_model(name)
    version = mlc.create_model_version(
        name,
        info.model_uri,
        run_id=run_id,
        tags=redact_obj(tags),
        description=redact(description),
        model_id=info.model_id,
    )
    return str(version.version)


def model_card(
    name: str,
    lineage: dict[str, str],
    train: TrainResult,
    ev: EvalResult,
    decision: Decision,
    champion: Any | None = None,
    promotion: str | None = None,
) -> str:
    """The version's description and README.md: what it is, from what, how good, how to use."""
    previous = version_metrics(champion) if champion is not None else {}
    metrics = "\n".join(
        f"| {k} | {_fmt(ev.base_metrics.get(k))} | {_fmt(previous.get(k))} | {v:.4f} |"
        for k, v in ev.metrics.items()
    )
    champion_name = f"version {champion.version}" if champion is not None else "none"
    return f"""# {name}

Fine-tuned by tuneline with method `{train.method}` ({train.artifact}) from base model
`{lineage.get("base_model")}` (revision `{lineage.get("base_model_revision")}`).

- data fingerprint: `{lineage.get("data_fingerprint")}`
- trainable parameters: {train.trainable_params:,} of {train.total_params:,} ({train.trainable_share:.2%})
- training: {train.steps} steps, {train.train_seconds:.1f}s, final loss {train.train_loss:.4f}
- code: {lineage.get("code_version")}
{_started_from(lineage, ev)}- data: {lineage.get("data_rows", "?")} training rows, {lineage.get("eval_rows", "?")} eval rows
- data contract: {lineage.get("contract_summary", "not recorded")}

| metric | base model | champion before ({champion_name}) | this version |
|---|---|---|---|
{metrics}

Promotion: {promotion or decision.summary}

{_intended_use(name, train, ev)}
"""


def _started_from(lineage: dict[str, str], ev: EvalResult) -> str:
    """The model card's line on where training started (and how the version it continued does on
    its own eval set beside this one)."""
    parent = lineage.get("parent_version")
    if not parent:
        return "- started from: the base model\n"
    figures = ", ".join(
        f"{k} {v:.4f} (version {parent}: {ev.previous.get('parent_metrics', {}).get(k, float('nan')):.4f})"
        for k, v in ev.previous.get("metrics", {}).items()
    )
    seen = f"; on its eval set: {figures}" if figures else ""
    return (
        f"- started from: {lineage.get('parent_model')} version {parent} "
        f"(train.init_from: {lineage.get('init_from')}){seen}\n"
    )


def _intended_use(name: str, train: TrainResult, ev: EvalResult) -> str:
    load = f'mlflow.pyfunc.load_model("models:/{name}@champion")'
    if ev.labels:
        labels = ", ".join(f"`{x}`" for x in ev.labels)
        return (
            f"Intended use: classify texts into {labels} like the curated training data.\n"
            f'Load with `{load}.predict(["some text"])`.'
        )
    if train.method == "reward":
        return (
            "Intended use: score a prompt followed by an answer (higher is preferred), e.g. as "
            f'the reward model of an rlhf recipe.\nLoad with `{load}.predict(["prompt answer"])`.'
        )
    return (
        "Intended use: answer requests like the curated training data.\n"
        f'Load with `{load}.predict(["a request"])`; `params={{"max_new_tokens": 64}}` caps '
        "the answer."
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def register(candidate: Candidate) -> RegistrationRef:
    """Register (once per candidate key), tag lineage, decide promotion and move aliases.

    Serialised per model name, so two runs finishing together cannot both become champion or
    register the same candidate twice.
    """
    name, run_id, train, ev = candidate.name, candidate.run_id, candidate.train, candidate.ev
    gate, lineage = candidate.gate, candidate.lineage
    with concurrency.exclusive(f"register-{name}"):
        key = candidate.key
        # not retried here: the register task retries as a whole
        existing = _search_candidate(name, key)
        if existing is not None:
            return _settle(name, existing)
        champion = current_champion(name)
        candidate_rows, base_rows = load_rows(ev.rows_path) or (None, None)
        decision = decide_promotion(
            ev.metrics,
            version_metrics(champion) if champion is not None else None,
            ev.base_metrics,
            gate,
            candidate_rows,
            champion_rows(champion) if champion is not None else None,
            base_rows,
            f"champion (version {champion.version})" if champion is not None else "champion",
            previous_rows(ev),
        )
        # the gate passed, a person decides: `challenger` now, `champion` on approval
        awaiting = decision.promote and lineage.get(APPROVAL_POLICY) == "required"
        promoted = decision.promote and not awaiting
        tags = {
            **lineage,
            **{f"metric.{k}": f"{v:.6f}" for k, v in ev.metrics.items()},
            **{f"base_metric.{k}": f"{v:.6f}" for k, v in ev.base_metrics.items()},
            **{f"previous_eval.{k}": f"{v:.6f}" for k, v in ev.previous.get("metrics", {}).items()},
            "mlflow_run_id": run_id,
            "method": train.method,
            "artifact": train.artifact,
            "trainable_share": f"{train.trainable_share:.6f}",
            "promotion": "promoted" if promoted else "not promoted",
            **({PROMOTION_STATE: "pending"} if promoted else {}),
            **(_awaiting_tags(champion) if awaiting else {}),
            "promotion_reasons": "; ".join(decision.reasons)[:5000],
            **decision.tags(),
        }
        waiting = "passed the gate, awaiting approval as `challenger`: " + "; ".join(
            decision.reasons
        )
        card = model_card(
            name, lineage, train, ev, decision, champion, waiting if awaiting else None
        )
        version = log_model_version(run_id, name, train, tags, card)
        tracking.log_text(run_id, card, "README.md")
        if promoted:
            _move_champion(name, version, champion)
        if awaiting:
            tracking.client().set_registered_model_alias(name, CHALLENGER, version)
        return RegistrationRef(
            name, version, promoted, decision.reasons, False, tags, awaiting_approval=awaiting
        )


def _awaiting_tags(champion: Any | None) -> dict[str, str]:
    """What an approval needs to know later: that it is awaited, and which champion the gate
    compared against (an approval after `champion` has moved on is refused)."""
    return {
        "promotion": "awaiting approval",
        PROMOTION_STATE: AWAITING,
        "approval": "awaiting",
        "approval.champion_before": str(champion.version) if champion is not None else "",
    }


def _move_champion(name: str, version: str, champion: Any | None) -> None:
    """Give `champion` to `version` (the one it replaces keeps `previous-champion`), then mark
    its promotion done."""
    mlc = tracking.client()
    if champion is not None:
        mlc.set_registered_model_alias(name, PREVIOUS, champion.version)
    mlc.set_registered_model_alias(name, CHAMPION, version)
    mlc.set_model_version_tag(name, version, PROMOTION_STATE, "done")


def settle_candidate(name: str, key: str) -> RegistrationRef | None:
    """What an unchanged recipe, data and code finds before training: None when this candidate
    is not registered yet; else its version, with an interrupted promotion completed first."""
    existing = find_candidate(name, key)
    if existing is None:
        return None
    with concurrency.exclusive(f"register-{name}"):
        return with_registry_retries(
            lambda: _settle(name, existing),
            f"complete the promotion of '{name}' version {existing.version}",
            "nothing was trained; run again once MLflow answers",
        )


def _settle(name: str, existing: Any) -> RegistrationRef:
    finished = _finish_promotion(name, existing)
    if finished is not None:
        return finished
    tags = dict(existing.tags or {})
    if tags.get(PROMOTION_STATE) == AWAITING:
        return RegistrationRef(
            name,
            str(existing.version),
            promoted=False,
            reasons=[f"version {existing.version} passed the gate and awaits approval"],
            already_registered=True,
            tags=tags,
            awaiting_approval=True,
        )
    return RegistrationRef(
        name,
        str(existing.version),
        promoted=False,
        reasons=[f"same recipe, data and code as version {existing.version}; nothing registered"],
        already_registered=True,
        tags=tags,
    )


def _finish_promotion(name: str, existing: Any) -> RegistrationRef | None:
    """A registration that stopped between creating its version and moving `champion` (killed,
    or MLflow went away): the gate said promote, so finish it, unless `champion` has moved on
    since (a newer version took it, or a person promoted or rolled back after this version was
    created: their choice stands). None when there is nothing to finish."""
    tags = existing.tags or {}
    if tags.get(PROMOTION_STATE) != "pending":
        return None
    version = str(existing.version)
    champion = current_champion(name)
    mlc = tracking.client()
    reasons = [r for r in tags.get("promotion_reasons", "").split("; ") if r]
    if champion is not None and str(champion.version) == version:
        mlc.set_model_version_tag(name, version, PROMOTION_STATE, "done")
        return RegistrationRef(name, version, True, reasons, False, dict(tags))
    moved_on = champion is not None and int(champion.version) > int(existing.version)
    if moved_on or _moved_by_hand_since(name, int(existing.creation_timestamp or 0)):
        mlc.set_model_version_tag(name, version, PROMOTION_STATE, "superseded")
        holder = f"version {champion.version}" if champion is not None else "no version"
        return RegistrationRef(
            name,
            version,
            False,
            [
                f"version {version} passed the gate but its promotion was interrupted, and "
                f"champion has moved since ({holder}); left as it is"
            ],
            already_registered=True,
        )
    _move_champion(name, version, champion)
    completed = f"completed the interrupted promotion of version {version} to champion"
    return RegistrationRef(name, version, True, [completed, *reasons], False, dict(tags))


def _moved_by_hand_since(name: str, since_ms: int) -> bool:
    model = tracking.client().get_registered_model(name)
    return int((model.tags or {}).get(MOVED_BY_HAND, "0") or 0) >= since_ms


def note_moved_by_hand(name: str) -> None:
    tracking.client().set_registered_model_tag(name, MOVED_BY_HAND, str(int(time.time() * 1000)))


def _temporary(exc: BaseException) -> bool:
    """An HTTP 502/503/504 from MLflow or the proxy before it: down for now, worth waiting for."""
    text = str(exc)
    return "error responses" in text or any(f" {code}" in text for code in ("502", "503", "504"))


def reachable() -> bool:
    """Whether the MLflow tracking server answers at all."""
    try:
        tracking.client().search_experiments(max_results=1)
    except Exception:
        return False
    return True


def register_or_outage(candidate: Candidate, what_next: str) -> RegistrationRef:
    """`register`, telling an outage from a refusal: when MLflow does not answer at all, a
    `RegistryUnavailable` (retried, then shown) ending with `what_next`; anything else as it is."""
    from mlflow.exceptions import MlflowException

    try:
        return register(candidate)
    except TunelineError:
        raise
    except Exception as exc:
        if reachable() and not _temporary(exc):
            if isinstance(exc, MlflowException):  # MLflow refused: say what it said
                raise RegistryError(
                    f"MLflow at {redact(settings.tracking_uri())} refused to register "
                    f"'{candidate.name}': {first_line(exc)}"
                ) from None
            raise  # not MLflow: a bug here, keep its traceback
        raise RegistryUnavailable(
            f"MLflow at {redact(settings.tracking_uri())} does not answer ({first_line(exc)}); "
            f"{what_next}"
        ) from None


def registration_line(registered: RegistrationRef) -> str:
    """What became of a run's model, in one line (the flow's log, the Prefect artifact)."""
    name, version = registered.model_name, registered.version
    if registered.awaiting_approval:
        found = "found" if registered.already_registered else "registered"
        return f"{found} {name} v{version}: challenger, awaiting approval"
    if registered.already_registered:
        return f"unchanged: {name} v{version}: " + "; ".join(registered.reasons)
    if registered.promoted:
        return f"registered {name} v{version}: champion"
    return f"registered {name} v{version}, not promoted: " + "; ".join(registered.reasons)
