"""The `finetune` flow: one recipe end to end.

load data -> validate (contract) -> tokenize -> train -> evaluate -> register
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.recipe import Recipe
from tasks.core import settings
from tasks.core.errors import EXIT_GATE, EXIT_OK, ContractFailed
from tasks.data.load import DataRef
from tasks.data.task import load_data
from tasks.evaluation.classifier import EvalResult
from tasks.evaluation.task import evaluate_model
from tasks.models.base import reference
from tasks.planning.task import plan_training, record_plan_outcome
from tasks.registry.approval import await_approval, find_awaited_version
from tasks.registry.continual import (
    InitPlan,
    evaluate_previous,
    fetch_parent,
    keep_eval_set,
    lineage_tags,
    plan_init,
    resolve_init,
)
from tasks.registry.pending import register_pending
from tasks.registry.register import (
    APPROVAL_POLICY,
    Candidate,
    RegistrationRef,
    candidate_key,
    registration_line,
    settle_candidate,
)
from tasks.registry.task import publish_registration, register_model, stage_registration
from tasks.services import tracking
from tasks.tokenization.encoding import TokenizedRef
from tasks.tokenization.task import tokenize_dataset
from tasks.training.base import TrainResult
from tasks.training.task import train_model
from tasks.validation.contract import ValidationInputs
from tasks.validation.task import validate_data


@dataclass(frozen=True)
class FinetuneOutcome:
    """What a finetune run produced, by reference (the CLI prints it, `--json` as JSON)."""

    status: str  # registered | promoted | not_promoted | awaiting_approval | unchanged | trained
    model_name: str
    model_version: str | None
    mlflow_run_id: str | None
    promoted: bool
    metrics: dict[str, float] = field(default_factory=dict)
    base_metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    data_fingerprint: str = ""
    contract_report: str | None = None
    artifact: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    init: str = ""  # where training started, when not the base model (train.init_from)
    parent_version: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_GATE if self.status == "not_promoted" else EXIT_OK

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def candidate_key_for(recipe: Recipe, data_fingerprint: str, parent: str = "") -> str:
    return candidate_key(recipe.fingerprint(), data_fingerprint, settings.code_version(), parent)


def lineage(
    recipe: Recipe, data: DataRef, contract_summary: str = "", init: InitPlan | None = None
) -> dict[str, str]:
    """The tags every registered version carries (DESIGN.md, registry conventions)."""
    ref = reference(recipe.base_model)
    context = tracking.flow_run_context()
    data_fingerprint = data.fingerprint
    return {
        "recipe_name": recipe.name,
        "recipe_hash": recipe.fingerprint(),
        "data_fingerprint": data_fingerprint,
        "base_model": recipe.base_model.path,
        "base_model_revision": str(recipe.base_model.revision or ref.get("package_version") or ""),
        "base_model_ref": json.dumps(ref, sort_keys=True),
        "method": recipe.method.name,
        "tuneline_version": settings.tuneline_version(),
        "git_sha": settings.git_sha(),
        "code_version": settings.code_version(),
        "candidate_key": candidate_key_for(recipe, data_fingerprint, init.key if init else ""),
        **lineage_tags(init or InitPlan()),
        "data_rows": str(data.n_train),
        "eval_rows": str(data.n_eval),
        "contract_summary": contract_summary.splitlines()[0] if contract_summary else "",
        APPROVAL_POLICY: recipe.registry.approval,
        **context,
    }


def outcome(
    name: str,
    data_fingerprint: str,
    registered: RegistrationRef | None = None,
    run_id: str | None = None,
    evaluated: EvalResult | None = None,
    trained: TrainResult | None = None,
    contract_report: str | None = None,
    init: InitPlan | None = None,
) -> FinetuneOutcome:
    """The one place a `FinetuneOutcome` is built: from what the run got as far as."""
    if registered is None:
        status = "trained"
    elif registered.already_registered:
        status = "unchanged"  # this candidate was registered before (or by another run first)
    elif registered.awaiting_approval:
        status = "awaiting_approval"  # challenger; a person approves or rejects it
    else:
        status = "promoted" if registered.promoted else "not_promoted"
    if init is not None:
        parent_version = init.parent.version if init.parent else None
    else:  # registered from a kept run: its lineage says where training started
        parent_version = (registered.tags.get("parent_version") if registered else None) or None
    return FinetuneOutcome(
        status=status,
        model_name=name,
        model_version=registered.version if registered is not None else None,
        mlflow_run_id=run_id,
        promoted=registered.promoted if registered is not None else False,
        metrics=evaluated.metrics if evaluated is not None else {},
        base_metrics=evaluated.base_metrics if evaluated is not None else {},
        reasons=list(registered.reasons) if registered is not None else [],
        data_fingerprint=data_fingerprint,
        contract_report=contract_report,
        artifact=trained.path if trained is not None else None,
        train=asdict(trained) if trained is not None else {},
        baselines=evaluated.baselines if evaluated is not None else {},
        init=init.note if init is not None else "",
        parent_version=parent_version,
    )


@task(name="find_registered_version")
def find_registered_version(name: str, key: str) -> RegistrationRef | None:
    """The version already registered for this candidate key (same recipe, data and code), its
    interrupted promotion completed; None when there is none. Registry failures are retried
    inside (`TUNELINE_REGISTRY_RETRY_DELAYS`), then fail the run: never a needless retrain."""
    return settle_candidate(name, key)


def register_kept(folder: str) -> FinetuneOutcome:
    """`tuneline register FOLDER`: register a run whose registration could not reach MLflow, with
    the recipe's gate as the run would have; the outcome in the run's own shape."""
    kept, registered = register_pending(folder)
    fingerprint = kept.lineage.get("data_fingerprint", "")
    return outcome(kept.name, fingerprint, registered, kept.run_id, kept.ev, kept.train)


def unchanged_outcome(recipe: Recipe) -> FinetuneOutcome | None:
    """Without starting a flow: the outcome of a run that would find this recipe, data and code
    already registered (sources hashed, not parsed; one registry query), or None."""
    from tasks.data.load import load

    data = load(recipe.data, recipe.train.seed)
    init = plan_init(*init_arguments(recipe, data))
    settled = settle_candidate(recipe.name, candidate_key_for(recipe, data.fingerprint, init.key))
    return None if settled is None else outcome(recipe.name, data.fingerprint, settled, init=init)


def init_arguments(recipe: Recipe, data: DataRef) -> tuple[Any, ...]:
    """What `plan_init` resolves `train.init_from` with."""
    return (
        recipe.name,
        recipe.train.init_from,
        recipe.base_model,
        recipe.method.name,
        recipe.fingerprint(),
        data.fingerprint,
    )


# A failure, a cancel or an abort must not leave the MLflow run RUNNING forever.
@flow(
    name="finetune",
    log_prints=True,
    on_failure=[tracking.end_runs_on_state],
    on_crashed=[tracking.end_runs_on_state],
    on_cancellation=[tracking.end_runs_on_state],
)
def finetune(recipe: Recipe) -> FinetuneOutcome:
    """Validate, tokenize, train, evaluate and register one recipe."""
    data = load_data(recipe.data, recipe.train.seed)
    init = resolve_init(*init_arguments(recipe, data))
    run = Run(recipe, data, init, candidate_key_for(recipe, data.fingerprint, init.key))
    existing = find_awaited_version(recipe.name) or find_registered_version(recipe.name, run.key)
    if existing is not None:
        return answer_existing(run, existing)
    run = start_run(run)
    report = validate(run)
    tokenized = tokenize_dataset(data, recipe.base_model, recipe.tokenize, run.id, recipe.method)
    keep_eval_set(data, run.id)
    parent = fetch_parent(init, recipe.method, data.labels, run.out_dir)
    estimate = plan(run, tokenized)
    trained = train(run, tokenized, parent)
    record_plan_outcome(estimate, trained, recipe.method, run.id)
    evaluated = evaluate(run, trained, tokenized)
    if not recipe.registry.enabled:
        tracking.end_tracking(run.id)
        return outcome(
            recipe.name,
            data.fingerprint,
            None,
            run.id,
            evaluated,
            trained,
            report.report_html,
            init,
        )
    registered = register(run, trained, evaluated, report.summary)
    return outcome(
        recipe.name,
        data.fingerprint,
        registered,
        run.id,
        evaluated,
        trained,
        report.report_html,
        init,
    )


# -- the stages, each the task calls of one step with the recipe's settings ------------------------


@dataclass(frozen=True)
class Run:
    """What every stage of one run needs: the recipe, its data, where training starts, the
    candidate key, and once tracking started, the MLflow run and the run's folder."""

    recipe: Recipe
    data: DataRef
    init: InitPlan
    key: str
    id: str = ""
    out_dir: str = ""

    @property
    def gate(self) -> Any:
        return self.recipe.registry.gate if self.recipe.registry.enabled else None


def answer_existing(run: Run, existing: RegistrationRef) -> FinetuneOutcome:
    """This candidate is registered already: say so; a version awaiting approval waits for (or
    takes) the answer, as on a resumed run."""
    print(registration_line(existing))
    if existing.awaiting_approval:
        existing = await_approval(existing, run.recipe.registry.approval_timeout)
    return outcome(run.recipe.name, run.data.fingerprint, existing, init=run.init)


def start_run(run: Run) -> Run:
    recipe = run.recipe
    run_id = tracking.start_tracking(
        recipe.name,
        recipe_params(recipe),
        lineage(recipe, run.data, init=run.init),
        recipe_document(recipe),
    )
    return replace(run, id=run_id, out_dir=str(settings.runs_dir() / recipe.name / run_id))


def contract_inputs(recipe: Recipe, data: DataRef) -> ValidationInputs:
    """What the recipe's data contract runs on."""
    return ValidationInputs(
        data,
        recipe.contract,
        Path(recipe.base_dir) if recipe.base_dir else None,
        recipe.method.name,
        recipe.base_model,
        recipe.tokenize.max_length,
        recipe.registry.gate if recipe.registry.enabled else None,
        recipe.evaluate.generation_rows,
    )


def validate(run: Run) -> Any:
    """The data contract; a failed one ends the MLflow run FAILED and stops the flow (exit 2)."""
    report = validate_data(contract_inputs(run.recipe, run.data), run.id, run.out_dir)
    if not report.passed:
        tracking.end_tracking(run.id, "FAILED")
        raise ContractFailed(f"{report.summary}\nReport: {report.report_html}", report)
    return report


def plan(run: Run, tokenized: TokenizedRef) -> Any:
    recipe = run.recipe
    return plan_training(
        recipe.name,
        recipe.method,
        recipe.train,
        tokenized,
        recipe.tokenize.max_length,
        run.gate,
        run.data.format,
        recipe.evaluate.generation_rows,
        run.id,
    )


def train(run: Run, tokenized: TokenizedRef, parent: str | None) -> TrainResult:
    recipe = run.recipe
    return train_model(
        tokenized,
        recipe.base_model,
        recipe.method,
        recipe.train,
        recipe.tokenize.max_length,
        run.out_dir,
        run.id,
        str(settings.checkpoint_dir(recipe.name, run.key)),
        parent,
        labels=run.data.labels,
        data_format=run.data.format,
    )


def evaluate(run: Run, trained: TrainResult, tokenized: TokenizedRef) -> EvalResult:
    """The held-out evaluation beside the base model, and for a continued run, on the parent's
    eval set too (the forgetting guard)."""
    recipe = run.recipe
    evaluated = evaluate_model(
        trained.path,
        run.data,
        tokenized,
        recipe.base_model,
        recipe.evaluate,
        recipe.train.seed,
        run.out_dir,
        run.id,
    )
    return evaluate_previous(
        evaluated,
        trained.path,
        run.init,
        run.data,
        recipe.base_model,
        recipe.evaluate,
        recipe.tokenize,
        recipe.method,
        recipe.train.seed,
        run.out_dir,
        run.id,
    )


def register(
    run: Run, trained: TrainResult, evaluated: EvalResult, contract_summary: str
) -> RegistrationRef:
    """Register the version (staged first, so an interrupted registration is completed by the next
    run), let the gate decide on `champion`, and wait for a person when the recipe asks."""
    recipe = run.recipe
    tags = lineage(recipe, run.data, contract_summary, run.init)
    candidate = Candidate(recipe.name, run.id, trained, evaluated, recipe.registry.gate, tags)
    registered = register_model(candidate, stage_registration(run.out_dir, candidate))
    print(registration_line(registered))
    publish_registration(registered, evaluated, run.id)
    tracking.end_tracking(run.id)
    if registered.awaiting_approval:  # suspends here in a deployment run, until a person answers
        registered = await_approval(registered, recipe.registry.approval_timeout)
    return registered


def recipe_params(recipe: Recipe) -> dict[str, Any]:
    return tracking.flatten("", recipe.model_dump(mode="json", exclude={"base_dir", "description"}))


def recipe_document(recipe: Recipe) -> dict[str, Any]:
    return {"recipe.json": recipe.model_dump(mode="json")}
