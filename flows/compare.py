"""The `compare` flow: several methods on the same data, contract and tokenization (done once per
rendering), one training per method, and a table of the eval metrics, trainable share, time and
memory. Methods compared must all train the recipe's task and data format."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.recipe import Recipe
from tasks.core import settings
from tasks.core.errors import ContractFailed, RecipeError
from tasks.data.task import load_data
from tasks.evaluation.task import evaluate_model
from tasks.services import tracking
from tasks.tokenization.task import tokenize_dataset
from tasks.training import METHODS, MethodConfig
from tasks.training.task import train_model
from tasks.validation.contract import ValidationInputs
from tasks.validation.task import validate_data


@dataclass(frozen=True)
class ComparisonRow:
    method: str
    metrics: dict[str, float]
    trainable_params: int
    trainable_share: float
    train_seconds: float
    peak_memory_mb: float
    learning_rate: float
    mlflow_run_id: str


@dataclass(frozen=True)
class Comparison:
    rows: list[ComparisonRow]
    base_metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str = ""

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.rows])


def fitting_methods(recipe: Recipe, runnable: bool = True) -> list[str]:
    """The methods that can train the recipe's task on its data format (with `runnable`, only
    those that also run on default settings, or are the recipe's own)."""
    return [
        name
        for name, spec in METHODS.items()
        if recipe.task in spec.tasks
        and recipe.data.format in spec.formats
        and (not runnable or name == recipe.method.name or not _needs_settings(name))
    ]


def _needs_settings(name: str) -> bool:
    return any(f.is_required() for f in METHODS[name].config.model_fields.values())


def method_settings(recipe: Recipe, name: str) -> tuple[MethodConfig, float]:
    """The recipe's own block and learning rate for its method; defaults for the others."""
    fitting = fitting_methods(recipe, runnable=False)
    if name not in fitting:
        what = (
            "is not a method"
            if name not in METHODS
            else f"cannot train this recipe's {recipe.task} data (format {recipe.data.format})"
        )
        raise RecipeError(f"--methods: '{name}' {what}; methods that can: {', '.join(fitting)}")
    if recipe.method.name == name:
        return recipe.method, recipe.train.learning_rate
    spec = METHODS[name]
    if _needs_settings(name):
        required = [k for k, f in spec.config.model_fields.items() if f.is_required()]
        raise RecipeError(
            f"--methods: '{name}' needs settings with no default ({', '.join(required)}); "
            f"compare it from a recipe whose method block is '{name}'"
        )
    return spec.config.model_validate({"name": name}), spec.default_learning_rate


def table_rows(rows: list[ComparisonRow], base: dict[str, float]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if base:
        out.append({"method": "base", **{k: round(v, 4) for k, v in base.items()}})
    for row in rows:
        out.append(
            {
                "method": row.method,
                **{k: round(v, 4) for k, v in row.metrics.items()},
                "trainable": f"{row.trainable_share:.3%}",
                "train_s": round(row.train_seconds, 1),
                # process RSS growth while training (CPU) or the CUDA allocator's peak (GPU)
                "peak_mb": round(row.peak_memory_mb, 1),
                "lr": row.learning_rate,
            }
        )
    return out


@task(name="log_comparison", retries=2, retry_delay_seconds=[2, 10])
def log_comparison(run_id: str, rows: list[dict[str, Any]]) -> None:
    tracking.log_dict(run_id, rows, "comparison.json")
    create_table_artifact(key="method-comparison", table=rows, description="Methods compared")


# A failure, a cancel or an abort must not leave the MLflow run RUNNING forever.
@flow(
    name="compare",
    log_prints=True,
    on_failure=[tracking.end_runs_on_state],
    on_crashed=[tracking.end_runs_on_state],
    on_cancellation=[tracking.end_runs_on_state],
)
def compare(recipe: Recipe, methods: list[str]) -> Comparison:
    """Train and evaluate each method on the same validated, tokenized data."""
    settings_by_method = {name: method_settings(recipe, name) for name in methods}
    data = load_data(recipe.data, recipe.train.seed)
    parent = tracking.start_tracking(
        recipe.name,
        {"methods": ",".join(methods), "data_fingerprint": data.fingerprint},
        {"recipe_name": recipe.name, "kind": "comparison"},
    )
    out_dir = settings.runs_dir() / recipe.name / parent
    inputs = ValidationInputs(
        data,
        recipe.contract,
        Path(recipe.base_dir) if recipe.base_dir else None,
        model=recipe.base_model,
        max_length=recipe.tokenize.max_length,
    )
    report = validate_data(inputs, parent, str(out_dir))
    if not report.passed:
        tracking.end_tracking(parent, "FAILED")
        raise ContractFailed(f"{report.summary}\nReport: {report.report_html}", report)
    causal = recipe.task == "causal-lm"
    tokenized = tokenize_dataset(
        data, recipe.base_model, recipe.tokenize, parent, recipe.method if causal else None
    )
    rows: list[ComparisonRow] = []
    base_metrics: dict[str, float] = {}
    for i, name in enumerate(methods):
        method, learning_rate = settings_by_method[name]
        train_spec = recipe.train.model_copy(update={"learning_rate": learning_rate})
        child = tracking.start_tracking(
            recipe.name,
            {"method": name, "learning_rate": learning_rate},
            {"recipe_name": recipe.name, "method": name},
            None,
            parent,
            name,
        )
        evaluate = recipe.evaluate.model_copy(update={"compare_base": i == 0})
        if causal:
            # rendering depends on the method (cached per rendering, so shared ones tokenize once)
            tokenized = tokenize_dataset(data, recipe.base_model, recipe.tokenize, None, method)
        trained = train_model(
            tokenized,
            recipe.base_model,
            method,
            train_spec,
            recipe.tokenize.max_length,
            str(out_dir / name),
            child,
            labels=data.labels,
            data_format=data.format,
        )
        evaluated = evaluate_model(
            trained.path,
            data,
            tokenized,
            recipe.base_model,
            evaluate,
            recipe.train.seed,
            str(out_dir / name),
            child,
        )
        base_metrics = base_metrics or evaluated.base_metrics
        tracking.end_tracking(child)
        rows.append(
            ComparisonRow(
                name,
                evaluated.metrics,
                trained.trainable_params,
                trained.trainable_share,
                trained.train_seconds,
                max(trained.extra.get("peak_rss_mb", 0.0), trained.extra.get("peak_gpu_mb", 0.0)),
                learning_rate,
                child,
            )
        )
    log_comparison(parent, table_rows(rows, base_metrics))
    tracking.end_tracking(parent)
    return Comparison(rows, base_metrics, parent)
