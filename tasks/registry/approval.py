"""A person's approval before promotion (`register.approval: required`).

A version the gate passed holds `challenger` (tasks.registry.register). A run from a deployment then
suspends (Prefect's `suspend_flow_run`: the process exits, nothing sits in memory) on a typed form
the Prefect UI shows: approve or reject, a note, a name. Resumed, the run starts again from the
top; the candidate key (or this flow run's id on the version) finds the version, so it goes
straight back to the wait, which now returns the answer. A run outside a deployment has nothing
to resume it: it leaves the version `challenger` and says how to answer.

Answering, from the form or from `tuneline approve/reject`, goes through `record_answer`:
serialised per model name like every alias move; an approval moves `champion` the way an
automatic promotion does (`previous-champion` kept), a rejection tags the version `rejected`. The
answer, note, who and when are tags on the version and a line in its model card. A terminal
answer also resumes the run waiting for it, through the same API call the UI makes.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import task
from prefect.input import RunInput
from pydantic import Field

from tasks.core import settings
from tasks.core.errors import TunelineError, first_line
from tasks.core.secrets import redact
from tasks.registry import aliases
from tasks.registry import register as registry
from tasks.services import concurrency, tracking

APPROVED, REJECTED, AWAITING = "approved", "rejected", "awaiting"
# Tags on the version (with `approval` itself: awaiting | approved | rejected).
NOTE, BY, AT, VIA = "approval.note", "approval.by", "approval.at", "approval.via"
FLOW_RUN, FLOW_RUN_URL, REQUESTED = (
    "approval.flow_run_id",
    "approval.flow_run_url",
    "approval.requested_at",
)
CHAMPION_BEFORE = "approval.champion_before"
UI = "Prefect UI"
# A Prefect server on SQLite answers HTTP 500 ("database is locked") now and then when busy; the
# state change is rolled back, so resuming again is safe.
RESUME_RETRY_DELAYS = (1.0, 2.0, 4.0)


class ApprovalError(TunelineError):
    """An answer that cannot be applied: no such version, not awaiting approval, answered
    already the other way, or `champion` moved since the gate compared against it."""


class ApprovalAnswer(RunInput):
    """What a person answers on the form of a run waiting for approval."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: this version becomes `champion` (the current one keeps "
        "`previous-champion`). reject: `champion` stays as it is; the version is tagged rejected."
    )
    note: str = Field(
        default="", description="Why: kept on the version (tag and model card) with your answer."
    )
    reviewer: str = Field(default="", description="Your name, kept with the answer.")


@dataclass(frozen=True)
class Answered:
    name: str
    version: str
    approved: bool
    message: str
    changed: bool = True  # False: this answer had been recorded before


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def record_answer(
    name: str, version: str, approve: bool, note: str, who: str, via: str
) -> Answered:
    """Apply a person's answer to a version awaiting approval (see the module docstring).
    Answering again the same way changes nothing; the other way is an `ApprovalError`."""
    with concurrency.exclusive(f"register-{name}"):
        target = aliases.get_version(name, version)
        tags = dict(target.tags or {})
        verdict = APPROVED if approve else REJECTED
        if tags.get("approval") in {APPROVED, REJECTED}:
            return _answered_before(name, version, target, tags, verdict)
        if tags.get(registry.PROMOTION_STATE) != registry.AWAITING:
            raise ApprovalError(
                f"{name} version {version} is not awaiting approval (promotion: "
                f"{tags.get('promotion') or 'none'}); `tuneline promote {name} {version}` makes "
                "any version champion"
            )
        champion = registry.current_champion(name)
        if approve:
            _check_champion_unchanged(name, version, tags, champion)
        mlc = tracking.client()
        at = _now()
        answer_tags = {"approval": verdict, NOTE: note[:5000], BY: who, AT: at, VIA: via}
        if approve:
            # "pending" first: an approval cut short is completed by the next run (settle)
            answer_tags |= {"promotion": f"promoted (approved by {who})"}
            answer_tags |= {registry.PROMOTION_STATE: "pending"}
        else:
            answer_tags |= {"promotion": f"rejected by {who}", registry.PROMOTION_STATE: REJECTED}
        for key, value in answer_tags.items():
            mlc.set_model_version_tag(name, version, key, redact(value))
        if approve:
            registry._move_champion(name, version, champion)
        _drop_challenger(name, version)
        _append_to_card(name, target, verdict, who, at, via, note)
        was = f" (was version {champion.version})" if champion is not None and approve else ""
        if approve:
            message = f"{name} version {version} approved by {who}: now champion{was}"
        else:
            held = f"version {champion.version}" if champion is not None else "no version"
            message = f"{name} version {version} rejected by {who}; champion unchanged ({held})"
        return Answered(name, version, approve, message)


def _answered_before(
    name: str, version: str, target: Any, tags: dict[str, str], verdict: str
) -> Answered:
    before = tags.get("approval", "")
    said = f"{before} by {tags.get(BY, '?')} at {tags.get(AT, '?')}"
    if before != verdict:
        undo = (
            f"`tuneline promote {name} {version}` makes it champion anyway"
            if before == REJECTED
            else f"`tuneline rollback {name}` gives champion back"
        )
        raise ApprovalError(f"{name} version {version} was already {said}; {undo}")
    if before == APPROVED and tags.get(registry.PROMOTION_STATE) == "pending":
        registry._finish_promotion(name, target)  # an approval cut short: finish it
    return Answered(
        name, version, before == APPROVED, f"{name} version {version} already {said}", False
    )


def _check_champion_unchanged(
    name: str, version: str, tags: dict[str, str], champion: Any | None
) -> None:
    """The gate compared this version with the champion of the time; if `champion` has moved
    since, that comparison no longer says this version is better."""
    then = tags.get(CHAMPION_BEFORE, "")
    now = str(champion.version) if champion is not None else ""
    if then != now:
        raise ApprovalError(
            f"{name} version {version} was compared with {_holder(then)} but champion is now "
            f"{_holder(now)}: the gate's comparison no longer holds. Run the recipe again to "
            f"compare with the new champion, or `tuneline promote {name} {version}` to make it "
            "champion anyway"
        )


def _holder(version: str) -> str:
    return f"version {version}" if version else "no version"


def _drop_challenger(name: str, version: str) -> None:
    mlc = tracking.client()
    model = mlc.get_registered_model(name)
    if str((model.aliases or {}).get(registry.CHALLENGER, "")) == str(version):
        mlc.delete_registered_model_alias(name, registry.CHALLENGER)


def _append_to_card(
    name: str, target: Any, verdict: str, who: str, at: str, via: str, note: str
) -> None:
    """The answer as a line of the model card: the version's description and its README.md."""
    line = f"Approval: {verdict} by {who} on {at} ({via})" + (f": {note}" if note else "")
    card = (target.description or "").rstrip() + f"\n\n{line}\n"
    tracking.client().update_model_version(name, str(target.version), description=redact(card))
    run_id = (target.tags or {}).get("mlflow_run_id") or target.run_id
    if run_id:
        tracking.log_text(run_id, card, "README.md")


# -- the wait, inside a flow run ---------------------------------------------------------------


def await_approval(registered: registry.RegistrationRef, timeout: timedelta) -> Any:
    """In the flow body: suspend until a person answers, then apply the answer; returns the
    `RegistrationRef` as it stands after it. Outside a deployment nothing could resume the run:
    the version stays `challenger` and the log says how to answer."""
    from prefect.context import FlowRunContext
    from prefect.flow_runs import suspend_flow_run

    name, version = registered.model_name, str(registered.version)
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        print(
            f"{name} v{version} awaits approval (challenger); this run is not from a deployment, "
            f"so nothing waits for the answer: `tuneline approve {name} {version} --note ...` or "
            f"`tuneline reject {name} {version} --note ...`"
        )
        return registered
    form = ApprovalAnswer.with_initial_data(description=request_approval(name, version, timeout))
    answer = suspend_flow_run(
        wait_for_input=form, key=f"approval-{name}-v{version}", timeout=int(timeout.total_seconds())
    )
    return apply_answer(registered, answer.decision == "approve", answer.note, answer.reviewer)


@task(name="request_approval")
def request_approval(name: str, version: str, timeout: timedelta) -> str:
    """Note on the version which flow run waits for its answer, and return the form's text."""
    from prefect.runtime import flow_run

    mlc = tracking.client()
    target = aliases.get_version(name, version)
    tags = dict(target.tags or {})
    run_tags = {
        FLOW_RUN: str(flow_run.get_id()),
        FLOW_RUN_URL: str(flow_run.get_flow_run_ui_url() or ""),
    }
    if REQUESTED not in tags:
        run_tags[REQUESTED] = _now()
    for key, value in run_tags.items():
        mlc.set_model_version_tag(name, version, key, value)
    return form_description(name, target, tags, timeout)


@task(name="apply_approval")
def apply_answer(
    registered: registry.RegistrationRef, approve: bool, note: str, reviewer: str
) -> registry.RegistrationRef:
    """The answer from the form, recorded; one that cannot be applied (answered the other way
    from a terminal meanwhile, champion moved) leaves the version as it is and says why."""
    name, version = registered.model_name, str(registered.version)
    try:
        answered = record_answer(name, version, approve, note, reviewer or UI, UI)
    except ApprovalError as exc:
        print(f"approval not applied: {exc.message}")
        return replace(registered, awaiting_approval=False, reasons=[exc.message])
    print(answered.message)
    reasons = [*registered.reasons, answered.message]
    return replace(
        registered,
        promoted=answered.approved,
        awaiting_approval=False,
        already_registered=False,
        reasons=reasons,
    )


def form_description(name: str, target: Any, tags: dict[str, str], timeout: timedelta) -> str:
    """The markdown above the form: the before/after table, the gate's decision with its
    intervals, the data contract summary, links to the version and the contract report."""
    version = str(target.version)
    metrics = registry.version_metrics(target)
    base = {
        k.removeprefix("base_metric."): float(v)
        for k, v in tags.items()
        if k.startswith("base_metric.")
    }
    before = tags.get(CHAMPION_BEFORE, "")
    champion = aliases.get_version(name, before) if before else None
    champion_metrics = registry.version_metrics(champion) if champion is not None else {}
    rows = "\n".join(
        f"| {k} | {_fmt(base.get(k))} | {_fmt(champion_metrics.get(k))} | {v:.4f} |"
        for k, v in metrics.items()
    )
    gate = "\n".join(f"- {r}" for r in _reasons(tags.get("promotion_reasons", "")))
    deadline = (datetime.now(UTC) + timeout).strftime("%Y-%m-%d %H:%M UTC")
    links = " · ".join(_links(name, version, tags))
    return redact(
        f"""### Approve `{name}` version {version} as champion?

It passed the promotion gate; a person decides. Champion now: {_holder(before)}.

| metric | base model | champion ({_holder(before)}) | version {version} |
|---|---|---|---|
{rows}

**Gate decision** (paired on the same eval rows, {_level(tags)} intervals):
{gate or "- (no reasons recorded)"}

**Data contract:** {tags.get("contract_summary") or "not recorded"}

{links}

**approve**: `champion` moves to version {version}, the current one keeps `previous-champion`.
**reject**: `champion` stays; version {version} is tagged `rejected` with your note.
Unanswered by {deadline}, this run fails as timed out and version {version} stays `challenger`.
From a terminal: `tuneline approve {name} {version} --note ...` / `tuneline reject {name} {version} --note ...`.
"""
    )


def _reasons(joined: str) -> list[str]:
    """The gate's reasons, joined by "; " on the tag, apart again (a comparison's own "; the
    lower bound ..." stays with it)."""
    out: list[str] = []
    for part in (p for p in joined.split("; ") if p):
        if out and part.startswith("the lower bound"):
            out[-1] += f"; {part}"
        else:
            out.append(part)
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _level(tags: dict[str, str]) -> str:
    texts = [v for k, v in tags.items() if k.startswith("gate.") and k.count(".") == 2]
    for text in texts:
        if "% interval" in text:
            return text.split("% interval")[0].rsplit(" ", 1)[-1] + "%"
    return "confidence"


def _links(name: str, version: str, tags: dict[str, str]) -> list[str]:
    """Links into the MLflow UI when MLflow is a server; the model URI and run id otherwise."""
    uri = settings.tracking_uri().rstrip("/")
    run_id = tags.get("mlflow_run_id", "")
    if settings.uses_embedded_store() or not uri.startswith("http"):
        return [f"MLflow version: `models:/{name}/{version}`", f"MLflow run: `{run_id}`"]
    links = [f"[MLflow version {version}]({uri}/#/models/{name}/versions/{version})"]
    if run_id:
        experiment = tracking.client().get_run(run_id).info.experiment_id
        report = f"{uri}/#/experiments/{experiment}/runs/{run_id}/artifacts/data_contract"
        links.append(f"[data contract report]({report}/data_contract.html)")
        links.append(f"[MLflow run]({uri}/#/experiments/{experiment}/runs/{run_id})")
    return links


# -- answering from a terminal -----------------------------------------------------------------


def answer_from_terminal(
    name: str, version: str, approve: bool, note: str, who: str | None = None
) -> list[str]:
    """`tuneline approve/reject`: record the answer, then resume the run waiting for it (if
    any); returns the lines to print."""
    if not approve and not note.strip():
        raise ApprovalError(f"reject {name} {version}: say why with --note '...'")
    who = who or getpass.getuser()
    via = "tuneline approve" if approve else "tuneline reject"
    answered = record_answer(name, version, approve, note, who, via)
    lines = [answered.message]
    flow_run_id = (aliases.get_version(name, version).tags or {}).get(FLOW_RUN)
    if flow_run_id:
        answer = {"decision": "approve" if approve else "reject", "note": note, "reviewer": who}
        lines.append(resume_waiting_run(flow_run_id, answer))
    return lines


def resume_waiting_run(flow_run_id: str, answer: dict[str, str]) -> str:
    """Send the answer to the suspended flow run (the call the Prefect UI's form makes), so it
    resumes and finishes; a line saying what happened."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound

    from tasks.services.prefect_api import configured_api_url

    if not configured_api_url():
        return (
            f"flow run {flow_run_id} waits for this answer on a Prefect server: set "
            "PREFECT_API_URL to it and run this again to resume it (the answer is recorded)"
        )
    failure = ""
    for delay in (*RESUME_RETRY_DELAYS, None):
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(UUID(flow_run_id))
                if run.state is None or not run.state.is_paused():
                    state = run.state.name if run.state is not None else "no state"
                    return f"flow run '{run.name}' no longer waits ({state}); nothing to resume"
                response = client.resume_flow_run(UUID(flow_run_id), run_input=answer)
            break
        except ObjectNotFound:
            return f"flow run {flow_run_id} is not on the Prefect server at {configured_api_url()}"
        except Exception as exc:  # e.g. HTTP 500 "database is locked" from a busy SQLite server
            failure = first_line(exc)
            if delay is None:  # the answer is recorded either way; say what failed
                return f"could not resume flow run {flow_run_id} ({failure}); answer in its UI form"
            time.sleep(delay)
    if response.status != SetStateStatus.ACCEPT:
        reason = getattr(response.details, "reason", "") or response.status.value
        return f"flow run '{run.name}' did not resume: {reason}"
    return f"resumed flow run '{run.name}': it finishes when its deployment's worker picks it up"


@task(name="find_awaited_version")
def find_awaited_version(name: str) -> registry.RegistrationRef | None:
    """In a flow run resumed after an approval wait: the version it waited for, found by this
    flow run's id (so a resume never retrains, even if the code changed meanwhile); None in any
    other run (no registry query then)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    keys = context.flow_run.empirical_policy.pause_keys or set()
    if not any(str(k).startswith(f"approval-{name}-v") for k in keys):
        return None
    query = f"name = '{name}' and tags.`{FLOW_RUN}` = '{context.flow_run.id}'"
    found = registry.with_registry_retries(
        lambda: tracking.client().search_model_versions(query),
        f"look up the version flow run {context.flow_run.id} waited for",
        "run again once MLflow answers",
    )
    if not found:
        return None
    with concurrency.exclusive(f"register-{name}"):
        return registry._settle(name, found[0])
