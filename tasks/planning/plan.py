"""The pre-flight plan of a training run: rows and tokens after loading and tokenization,
optimiser steps, trainable parameters, estimated training time and peak memory (from warm-up
steps measured on this machine), and what the promotion gate will need to see.

`tuneline plan` builds the whole plan and trains only `warmup.WARMUP_STEPS` steps, in a scratch
folder (no checkpoint, no artifact, no MLflow run). `tuneline run` logs the same plan before
training (the parts known before a step is taken) and, after training, the estimate made from its
own first steps against what the run took (`plan.*` metrics). The sums are pure functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.core.promotion import (
    LOWER_IS_BETTER,
    POINT_METRICS,
    GateSpec,
    fewest_rows,
    mcnemar_interval,
)
from tasks.tokenization.encoding import TokenizedRef
from tasks.training import METHODS
from tasks.training.base import TrainResult, TrainSpec

# tasks.training.warmup imports transformers (its step timer is a Trainer callback): imported
# where it is used, so that importing the flow (every CLI command, the unchanged-run answer)
# does not import torch.


@dataclass
class Plan:
    """What a run will do and cost, before it trains (`tuneline plan`, the `plan.json` artifact)."""

    name: str
    method: str
    train_rows: int
    eval_rows: int
    tokens: dict[str, float]  # per_epoch, per_step, total, mean, p95, max, truncated_share
    batch_size: int
    gradient_accumulation_steps: int
    epochs: float
    max_steps: int
    batches_per_epoch: int
    optimizer_steps: int
    gate: dict[str, Any]
    trainable_params: int | None = None
    total_params: int | None = None
    device: str = "cpu"
    estimated_train_seconds: float | None = None
    estimated_peak_rss_mb: float | None = None
    estimated_peak_gpu_mb: float | None = None
    warmup: dict[str, float] = field(default_factory=dict)
    load_average: float | None = None  # of this machine's CPUs while the warm-up ran
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


# -- pure sums ---------------------------------------------------------------------------------


def token_figures(
    lengths: list[int], max_length: int, examples_per_step: int, steps: int, rows: int
) -> dict[str, float]:
    """Tokens trained on: `lengths` are the untruncated train lengths, cut at `max_length`."""
    cut = [min(n, max_length) for n in lengths]
    per_epoch = float(sum(cut))
    mean = per_epoch / len(cut) if cut else 0.0
    ordered = sorted(lengths)
    p95 = float(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]) if cut else 0.0
    # every step but an epoch's last takes `examples_per_step` rows; `rows` caps a short epoch
    per_step = mean * min(examples_per_step, rows) if rows else 0.0
    return {
        "per_epoch": per_epoch,
        "per_step": per_step,
        "total": per_step * steps,
        "mean": mean,
        "p95": p95,
        "max": float(max(lengths, default=0)),
        "truncated_share": sum(n > max_length for n in lengths) / len(lengths) if lengths else 0.0,
        "max_length": float(max_length),
    }


def smallest_detectable_gain(metric: str, n: int, margin: float, confidence: float) -> float | None:
    """The smallest true gain in a share metric that the gate's test could show on `n` paired
    eval rows in the best case (the candidate better on `gain * n` rows and worse on none): the
    inverse of `promotion.rows_needed`. None when no gain could clear (too few rows) or the
    metric is not a share of rows."""
    if metric not in POINT_METRICS or metric == "rougeL" or n < fewest_rows(confidence):
        return None

    def clears(wins: int) -> bool:
        return (
            wins >= fewest_rows(confidence) and mcnemar_interval(wins, 0, n, confidence)[0] > margin
        )

    if not clears(n):
        return None
    low, high = 0, n  # clears(high) holds, clears(low) does not
    while high - low > 1:
        middle = (low + high) // 2
        if clears(middle):
            high = middle
        else:
            low = middle
    return high / n


def gate_figures(
    gate: GateSpec | None, data_format: str, n_eval: int, generation_rows: int | None
) -> dict[str, Any]:
    """What the gate will need to see, and whether this eval set can show it."""
    if gate is None:
        return {"enabled": False}
    from tasks.validation.contract import gate_needs

    needs = gate_needs(gate, data_format, n_eval, generation_rows)
    metric = gate.metric_name
    used = int(needs["eval_rows_used"])
    gain = smallest_detectable_gain(metric, used, gate.beat_champion_by, gate.confidence)
    return {
        "enabled": True,
        "metric": metric,
        "lower_is_better": metric in LOWER_IS_BETTER,
        "min": gate.min,
        "beat_base": gate.beat_base,
        "beat_champion_by": gate.beat_champion_by,
        "confidence": gate.confidence,
        "detect_gain": gate.detect_gain,
        "eval_rows_used": used,
        "eval_rows_needed": int(needs["eval_rows_needed"]),
        "enough": used >= int(needs["eval_rows_needed"]),
        "smallest_detectable_gain": gain,
        "target": needs["gate_target"],
    }


def static_plan(
    name: str,
    method: Any,
    spec: TrainSpec,
    train_lengths: list[int],
    eval_rows: int,
    max_length: int,
    gate: dict[str, Any],
    batches: int | None = None,
) -> Plan:
    """The plan's parts known before a step is taken. `batches` (per epoch) is the training
    loader's own count where a trainer was built (packing, RL groups), else rows / batch."""
    from tasks.training.warmup import batches_per_epoch, optimizer_steps

    rows = len(train_lengths)
    per_epoch = batches if batches else batches_per_epoch(rows, spec.batch_size)
    steps = optimizer_steps(
        per_epoch, spec.gradient_accumulation_steps, spec.epochs, spec.max_steps
    )
    examples = spec.batch_size * spec.gradient_accumulation_steps
    tokens = token_figures(train_lengths, max_length, examples, steps, rows)
    if METHODS[method.name].fit is not None:  # the probe fits in one pass, not by steps
        steps, per_epoch = 0, 0
        tokens["total"] = tokens["per_epoch"]
    return Plan(
        name=name,
        method=method.name,
        train_rows=rows,
        eval_rows=eval_rows,
        tokens=tokens,
        batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        epochs=spec.epochs,
        max_steps=spec.max_steps,
        batches_per_epoch=per_epoch,
        optimizer_steps=steps,
        gate=gate,
    )


def machine_load() -> float | None:
    """The one-minute load average (other work on the machine slows every step alike)."""
    import os

    try:
        return os.getloadavg()[0]
    except OSError:  # not on every platform
        return None


def scales_with_tokens(method: Any) -> bool:
    """Whether the warm-up's token counts are in the same units as the plan's (the trainer's
    collator counts what `full_length` measures): classifiers and language modelling."""
    return METHODS[method.name].objective in ("classify", "lm")


def with_estimate(plan: Plan, warmup: dict[str, float], method: Any, device: str) -> Plan:
    """The plan with its time and memory estimates from warm-up figures."""
    from tasks.training.warmup import estimate_train_seconds, optimizer_steps

    if warmup.get("warmup_batches_per_epoch"):
        # the trainer's own count of batches (packing, RL groups) decides the step count
        plan.batches_per_epoch = int(warmup["warmup_batches_per_epoch"])
        plan.optimizer_steps = optimizer_steps(
            plan.batches_per_epoch, plan.gradient_accumulation_steps, plan.epochs, plan.max_steps
        )
    tokens = plan.tokens.get("per_step") if scales_with_tokens(method) else None
    plan.warmup = dict(warmup)
    plan.device = device
    plan.load_average = machine_load()
    plan.estimated_train_seconds = estimate_train_seconds(warmup, plan.optimizer_steps, tokens)
    if warmup:
        plan.estimated_peak_rss_mb = warmup.get("warmup_peak_rss_mb")
        plan.estimated_peak_gpu_mb = warmup.get("warmup_peak_gpu_mb") or None
    return plan


def plan_vs_actual(plan: Plan, result: TrainResult, method: Any, device: str) -> dict[str, float]:
    """The estimate from the run's own first steps against what the run took (`plan.*`)."""
    from tasks.training.warmup import relative_error

    warmup = {k: v for k, v in result.extra.items() if k.startswith("warmup_")}
    estimated = with_estimate(Plan(**asdict(plan)), warmup, method, device)
    figures: dict[str, float | None] = {
        "plan.optimizer_steps": float(estimated.optimizer_steps),
        "plan.actual_steps": float(result.steps),
        "plan.estimated_train_seconds": estimated.estimated_train_seconds,
        "plan.actual_train_seconds": result.train_seconds,
        "plan.train_seconds_error": relative_error(
            estimated.estimated_train_seconds, result.train_seconds
        ),
        "plan.estimated_peak_rss_mb": estimated.estimated_peak_rss_mb,
        "plan.actual_peak_rss_mb": result.extra.get("peak_rss_mb"),
        "plan.peak_rss_error": relative_error(
            estimated.estimated_peak_rss_mb, result.extra.get("peak_rss_mb")
        ),
        "plan.trainable_params": float(result.trainable_params),
        "plan.load_average": machine_load(),
    }
    if result.extra.get("peak_gpu_mb"):
        figures["plan.estimated_peak_gpu_mb"] = estimated.estimated_peak_gpu_mb
        figures["plan.actual_peak_gpu_mb"] = result.extra["peak_gpu_mb"]
        figures["plan.peak_gpu_error"] = relative_error(
            estimated.estimated_peak_gpu_mb, result.extra["peak_gpu_mb"]
        )
    return {k: float(v) for k, v in figures.items() if v is not None}


# -- showing it --------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "not estimated"
    if value < 120:
        return f"about {value:.0f} s" if value >= 10 else f"about {value:.1f} s"
    return f"about {value / 60:.1f} min"


def gate_line(gate: dict[str, Any]) -> str:
    """'accuracy >= 0.70, beat the base and the champion by 0 points at 95%: with 62 eval rows
    the gate can see a gain of >= 9.7 points (asked for 10: enough)'."""
    if not gate.get("enabled"):
        return "registry off: no gate"
    metric, level = gate["metric"], f"{gate['confidence'] * 100:g}%"
    rules = [metric]
    if gate["min"] is not None:
        rules.append(f"{'<=' if gate['lower_is_better'] else '>='} {gate['min']:g}")
    points = metric in POINT_METRICS and metric != "rougeL"
    margin = (
        f"{gate['beat_champion_by'] * 100:g} points" if points else f"{gate['beat_champion_by']:g}"
    )
    beat = "the base and the champion" if gate["beat_base"] else "the champion"
    head = f"{' '.join(rules)}, beat {beat} by {margin} at {level}"
    rows = f"{gate['eval_rows_used']:,} eval rows"
    gain = gate["smallest_detectable_gain"]
    verdict = "enough" if gate["enough"] else "NOT enough: add eval rows or raise detect_gain"
    if points and gain is not None:
        return (
            f"{head}: with {rows} the gate can see a gain of >= {gain * 100:.1f} points "
            f"(detect_gain {gate['detect_gain'] * 100:g} points needs about "
            f"{gate['eval_rows_needed']:,} rows: {verdict})"
        )
    if points:
        return f"{head}: {rows} are too few for any gain to clear ({verdict})"
    return (
        f"{head}: {rows}; a paired comparison needs at least {gate['eval_rows_needed']:,} "
        f"({verdict})"
    )


def plan_lines(plan: Plan) -> list[tuple[str, str]]:
    """The plan as (label, text) rows, for the terminal and the Prefect artifact."""
    t = plan.tokens
    span = (
        f"{plan.max_steps} max_steps"
        if plan.max_steps > 0
        else f"{plan.batches_per_epoch} batches per epoch x {plan.epochs:g} epochs"
    )
    rows = [
        ("rows", f"train {plan.train_rows:,}, eval {plan.eval_rows:,}"),
        (
            "tokens",
            f"{t['per_epoch']:,.0f} per epoch, about {t['total']:,.0f} trained on (mean "
            f"{t['mean']:.1f} a row, p95 {t['p95']:.0f}, max {t['max']:.0f}; "
            f"{t['truncated_share'] * 100:.1f}% cut at {t['max_length']:.0f})",
        ),
        (
            "steps",
            f"{plan.optimizer_steps:,} optimiser steps ({span}, batch {plan.batch_size}, "
            f"accumulation {plan.gradient_accumulation_steps})"
            if plan.optimizer_steps
            else f"none: {plan.method} fits in one pass over the data",
        ),
    ]
    if plan.trainable_params is not None and plan.total_params:
        share = plan.trainable_params / plan.total_params * 100
        rows.append(
            (
                "parameters",
                f"{plan.trainable_params:,} trainable of {plan.total_params:,} ({share:.2f}%)",
            )
        )
    w = plan.warmup
    if w:
        how = (
            f"first step {w['warmup_first_step_seconds']:.2f} s, then "
            f"{w['warmup_step_seconds']:.3f} s a step over {w['warmup_steps_timed']:.0f} timed "
            f"steps on {plan.device}"
        )
        if plan.load_average is not None:
            import os

            how += f", load average {plan.load_average:.1f} on {os.cpu_count()} CPUs"
        rows.append(("time", f"{_seconds(plan.estimated_train_seconds)} of training ({how})"))
        memory = f"about {plan.estimated_peak_rss_mb or 0:,.0f} MB above the process at start"
        if plan.estimated_peak_gpu_mb:
            memory += f"; GPU about {plan.estimated_peak_gpu_mb:,.0f} MB"
        rows.append(("peak memory", memory))
    rows.append(("gate", gate_line(plan.gate)))
    rows += [("note", note) for note in plan.notes]
    return rows


def plan_markdown(plan: Plan) -> str:
    lines = [f"**Training plan for {plan.name}** ({plan.method})", ""]
    lines += [f"- **{label}**: {text}" for label, text in plan_lines(plan)]
    return "\n".join(lines)


def outcome_markdown(plan: Plan, figures: dict[str, float]) -> str:
    def cell(key: str, unit: str) -> str:
        value = figures.get(key)
        return "-" if value is None else f"{value:,.1f} {unit}"

    def error(key: str) -> str:
        value = figures.get(key)
        return "-" if value is None else f"{value * 100:+.0f}%"

    rows = [
        (
            "train time",
            "plan.estimated_train_seconds",
            "plan.actual_train_seconds",
            "s",
            "plan.train_seconds_error",
        ),
        (
            "peak RSS",
            "plan.estimated_peak_rss_mb",
            "plan.actual_peak_rss_mb",
            "MB",
            "plan.peak_rss_error",
        ),
        (
            "peak GPU",
            "plan.estimated_peak_gpu_mb",
            "plan.actual_peak_gpu_mb",
            "MB",
            "plan.peak_gpu_error",
        ),
    ]
    lines = [
        f"**Plan against the run: {plan.name}** (estimate from the run's first steps)",
        "",
        "| | estimated | actual | error |",
        "|---|---:|---:|---:|",
    ]
    for label, est, act, unit, err in rows:
        if est in figures or act in figures:
            lines.append(f"| {label} | {cell(est, unit)} | {cell(act, unit)} | {error(err)} |")
    return "\n".join(lines)


# -- tasks -------------------------------------------------------------------------------------


def train_lengths(tokenized: TokenizedRef, method: Any) -> tuple[list[int], int]:
    """Untruncated lengths of the rows training will see, and the eval rows."""
    from tasks.tokenization.encoding import load_split

    train = load_split(tokenized, "train")
    held = load_split(tokenized, "eval")
    import numpy as np

    def column(split: Any, name: str) -> Any:
        return np.asarray(split.data.column(name)) if len(split) else np.zeros(0, dtype=int)

    lengths = column(train, "full_length")
    if METHODS[method.name].objective == "classify":  # rows outside the label set are skipped
        kept = lengths[column(train, "labels") >= 0]
        return kept.tolist(), int((column(held, "labels") >= 0).sum())
    return lengths.tolist(), len(held)


def warmup_spec(spec: TrainSpec) -> TrainSpec:
    """The recipe's train block cut to the warm-up steps: one process, no checkpoint, and one
    held-out loss evaluation at the end (its memory counts, as in the run) when the run has any."""
    from tasks.training.base import DistributedSpec
    from tasks.training.warmup import WARMUP_STEPS

    return spec.model_copy(
        update={
            "max_steps": WARMUP_STEPS,
            "save_steps": 0,
            "eval_loss_points": min(spec.eval_loss_points, 1),
            "distributed": DistributedSpec(),
        }
    )


def measure_warmup(
    kind: str,
    tokenized: TokenizedRef,
    base: Any,
    method: Any,
    spec: TrainSpec,
    max_length: int,
    labels: list[str],
    data_format: str,
) -> tuple[dict[str, float], int, int]:
    """Build the method on the base model as training does, count its parameters and train the
    warm-up steps in a scratch folder that is removed after: (warm-up figures, trainable, total).
    The probe trains by its own fit, not by steps: no warm-up figures."""
    import tempfile
    from pathlib import Path

    from tasks.training.base import PeakMemory, count_parameters, total_steps

    steps = total_steps(int(tokenized.stats.get("count", 0)), spec)
    short = warmup_spec(spec)
    with tempfile.TemporaryDirectory(prefix="tuneline-plan-") as scratch:
        work = Path(scratch)
        if kind == "causal":
            from tasks.training.causal import runner as causal

            tokenizer = causal.load_tokenizer(base)
            model = causal.prepare_model(base, method, tokenizer, spec.seed, steps)
            if spec.gradient_checkpointing and method.weights == "lora":
                model.enable_input_require_grads()
            trainable, total = count_parameters(model)
            with PeakMemory() as memory:
                stats = causal.fit(
                    model, tokenizer, tokenized, method, short, work, max_length, base
                )
        else:
            from tasks.models import base as models
            from tasks.training.encoder import runner as classifier

            tokenizer = models.load_tokenizer(base)
            model = classifier.prepare_model(base, method, labels, spec.seed, steps)
            trainable, total = count_parameters(model)
            if METHODS[method.name].fit is not None:
                return {}, trainable, total
            with PeakMemory() as memory:
                stats = classifier.fit_method(
                    model, tokenizer, tokenized, method, short, work, max_length
                )
    figures = dict(stats.warmup)
    if figures:  # the whole warm-up's peak: its held-out evaluation included
        figures["warmup_peak_rss_mb"] = max(figures["warmup_peak_rss_mb"], memory.peak_rss_mb)
        figures["warmup_peak_gpu_mb"] = max(figures["warmup_peak_gpu_mb"], memory.peak_gpu_mb)
    return figures, trainable, total
