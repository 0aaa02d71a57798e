"""The registry stage's Prefect tasks: keep what registration needs on disk, register the
model and apply the promotion gate (`tasks.registry.register`), publish the outcome."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.core import settings
from tasks.core.errors import retry_unless_user_error
from tasks.core.promotion import decision_markdown
from tasks.core.secrets import redact
from tasks.evaluation.classifier import EvalResult, before_after_markdown
from tasks.registry.pending import mark_registered, save_pending
from tasks.registry.register import (
    Candidate,
    RegistrationRef,
    register_or_outage,
    registration_line,
)
from tasks.services import tracking


@task(
    name="register_model",
    retries=len(settings.registry_retry_delays()),
    retry_delay_seconds=settings.registry_retry_delays(),
    retry_condition_fn=retry_unless_user_error,
)
def register_model(candidate: Candidate, pending: str | None = None) -> RegistrationRef:
    """Register the trained model with its lineage and apply the promotion gate. When MLflow
    does not answer, wait and retry; the last failure says how to register the kept artifacts."""
    later = f"`tuneline register {pending}`" if pending else "`tuneline register RUN_FOLDER`"
    registered = register_or_outage(
        candidate,
        f"'{candidate.name}' was trained and evaluated; its registration did not finish. Nothing was lost: "
        f"once MLflow answers again, run {later}",
    )
    if pending:
        mark_registered(pending, registered)
    verdict = decision_markdown(registered.promoted, registered.reasons)
    if registered.awaiting_approval:
        verdict = verdict.replace("**not promoted**", "**passed the gate: awaiting approval**")
    create_markdown_artifact(
        key="promotion",
        markdown=verdict,
        description="Promotion gate decision",
    )
    return registered


@task(name="publish_registration")
def publish_registration(registered: RegistrationRef, ev: EvalResult, run_id: str) -> None:
    """The before/after table again, now with what registration decided, so the flow run in
    Prefect (and the MLflow run) shows the version and the reasons, not only green."""
    from prefect.artifacts import create_markdown_artifact

    reasons = "".join(f"\n- {reason}" for reason in registered.reasons)
    markdown = (
        f"{before_after_markdown(ev)}\n\n**{redact(registration_line(registered))}**\n{reasons}"
    )
    tracking.log_text(run_id, markdown, "eval/before_after.md")
    create_markdown_artifact(
        key="before-after", markdown=redact(markdown), description="Base vs fine-tuned, outcome"
    )


@task(name="stage_registration")
def stage_registration(folder: str, candidate: Candidate) -> str:
    """Keep what registration needs on disk before talking to MLflow."""
    return save_pending(folder, candidate)
