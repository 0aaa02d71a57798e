"""The planning stage's Prefect tasks: log the plan of a run before training
(`tasks.planning.plan`) and, after training, its estimate beside what the run took."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.core.promotion import GateSpec
from tasks.planning.plan import (
    Plan,
    gate_figures,
    outcome_markdown,
    plan_markdown,
    plan_vs_actual,
    static_plan,
    train_lengths,
)
from tasks.services import tracking
from tasks.tokenization.encoding import TokenizedRef
from tasks.training.base import TrainResult, TrainSpec, device_name


@task(name="plan_training")
def plan_training(
    name: str,
    method: Any,
    spec: TrainSpec,
    tokenized: TokenizedRef,
    max_length: int,
    gate: GateSpec | None,
    data_format: str,
    generation_rows: int | None,
    run_id: str | None = None,
) -> Plan:
    """The plan's parts known before training, logged to the run (params, `plan.json`) and as a
    Prefect artifact; the time and memory estimate follows from the first steps."""
    lengths, n_eval = train_lengths(tokenized, method)
    needs = gate_figures(gate, data_format, n_eval, generation_rows)
    plan = static_plan(name, method, spec, lengths, n_eval, max_length, needs)
    plan.notes.append("time and memory: estimated from this run's first steps, logged after")
    if run_id:
        tracking.log_params(
            run_id,
            {
                "plan.train_rows": plan.train_rows,
                "plan.eval_rows": plan.eval_rows,
                "plan.optimizer_steps": plan.optimizer_steps,
                "plan.train_tokens": round(plan.tokens["total"]),
                "plan.gate_eval_rows_needed": plan.gate.get("eval_rows_needed", ""),
            },
        )
        tracking.log_dict(run_id, asdict(plan), "plan/plan.json")
    create_markdown_artifact(key="training-plan", markdown=plan_markdown(plan), description="Plan")
    return plan


@task(name="record_plan_outcome")
def record_plan_outcome(plan: Plan, result: TrainResult, method: Any, run_id: str | None) -> None:
    """The estimate from the run's first steps beside what the run took: `plan.*` metrics, a
    `plan/plan_vs_actual.json` artifact and a Prefect artifact."""
    figures = plan_vs_actual(plan, result, method, device_name())
    if run_id:
        tracking.log_metrics(run_id, figures)
        tracking.log_dict(run_id, figures, "plan/plan_vs_actual.json")
    create_markdown_artifact(
        key="plan-vs-actual", markdown=outcome_markdown(plan, figures), description="Plan vs run"
    )
