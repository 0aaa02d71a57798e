"""Evaluation on the held-out split, for the trained model and for the untrained base (the
before/after table that shows what fine-tuning bought)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.promotion import PreviousEval, RowScores, rows_from_records
from tasks.data.load import DataRef
from tasks.models import artifacts
from tasks.models.base import BaseModelSpec, load_tokenizer
from tasks.services import tracking

Metric = Literal["accuracy", "f1"]


class EvaluateSpec(BaseModel):
    """What to measure on the held-out split."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[Metric] = Field(
        default_factory=lambda: list[Metric](["accuracy", "f1"]),
        description="Metrics on the eval split; f1 is macro-averaged.",
    )
    compare_base: bool = Field(
        default=True, description="Also evaluate the untrained base model (before/after)."
    )
    batch_size: int = Field(default=64, ge=1, description="Examples per eval batch.")
    generation_rows: int = Field(
        default=200,
        ge=1,
        description="Causal LMs: eval rows that are generated from or scored in pairs (the "
        "loss and perplexity use every row).",
    )
    max_new_tokens: int = Field(
        default=48, ge=1, le=4096, description="Causal LMs: longest generated answer, in tokens."
    )
    icl_shots: int = Field(
        default=3,
        ge=0,
        le=32,
        description="sft: also evaluate the base model prompted with this many training "
        "examples (in-context learning); 0 skips it.",
    )
    sample_table_rows: int = Field(
        default=10, ge=0, description="Causal LMs: sample generations shown in the run's table."
    )


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    base_metrics: dict[str, float]
    table_path: str
    confusion: list[list[int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    # other reference points beside the base model (e.g. the base prompted with k examples)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # per-row results of the fine-tuned and the base model (what the gate pairs rows on); saved
    # in the run's `eval/` artifacts, so a later candidate is compared with them row by row
    rows_path: str = ""
    # a run started from a registered version (`train.init_from`): this model on the eval set that
    # version was judged on (`tasks.registry.continual.evaluate_previous`): against, metrics,
    # parent_metrics, rows_path, parent_rows_path, missing
    previous: dict[str, Any] = field(default_factory=dict)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, wanted: list[str]
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    out: dict[str, float] = {}
    if "accuracy" in wanted:
        out["accuracy"] = float(accuracy_score(y_true, y_pred))
    if "f1" in wanted:
        out["f1"] = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return out


def _predict(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int
) -> np.ndarray:
    probs = artifacts.predict_proba(model, tokenizer, texts, max_length, batch)
    return probs.argmax(axis=-1) if len(texts) else np.zeros(0, dtype=int)


def evaluate_classifier(
    artifact: str,
    data: DataRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    seed: int,
    out_dir: Path,
) -> EvalResult:
    from sklearn.metrics import confusion_matrix

    from tasks.training.encoder.runner import load_base_classifier

    frame = data.eval().dropna(subset=["text", "label"])
    labels = data.labels
    label_ids = {lab: i for i, lab in enumerate(labels)}
    frame = frame[frame["label"].isin(label_ids)]
    texts = frame["text"].astype(str).tolist()
    y_true = frame["label"].map(label_ids).to_numpy()
    model, tokenizer, manifest = artifacts.load_classifier(artifact)
    max_length = int(manifest["max_length"])
    y_pred = _predict(model, tokenizer, texts, max_length, spec.batch_size)
    metrics = classification_metrics(y_true, y_pred, list(spec.metrics))
    base_metrics: dict[str, float] = {}
    base_pred = np.full_like(y_pred, -1)
    if spec.compare_base:
        base_model = load_base_classifier(base, labels, seed)
        base_model.eval()
        base_pred = _predict(base_model, load_tokenizer(base), texts, max_length, spec.batch_size)
        base_metrics = classification_metrics(y_true, base_pred, list(spec.metrics))
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "eval_predictions.jsonl"
    with table.open("w") as handle:
        for where, text, truth, pred, bpred in zip(
            frame["_where"], texts, y_true, y_pred, base_pred, strict=True
        ):
            row = {
                "where": where,
                "text": text,
                "label": labels[int(truth)],
                "prediction": labels[int(pred)],
                "base_prediction": labels[int(bpred)] if bpred >= 0 else None,
            }
            handle.write(json.dumps(row) + "\n")
    confusion = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist()
    return EvalResult(metrics, base_metrics, str(table), confusion, labels, rows_path=str(table))


# The per-row tables a run's `eval/` artifacts may hold, in the order they are looked for.
ROW_TABLES = ("eval_rows.jsonl", "eval_predictions.jsonl")


def load_rows(path: str | Path) -> tuple[RowScores, RowScores | None] | None:
    """The fine-tuned and base models' per-row results from a saved eval table (see
    `tasks.core.promotion.rows_from_records`), or None when there is no readable table."""
    file = Path(path)
    if not str(path) or not file.is_file():
        return None
    try:
        records = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    return rows_from_records(records) if records else None


def previous_rows(result: EvalResult) -> PreviousEval | None:
    """What the gate's `previous_eval` guard pairs: the candidate's and its parent's per-row
    results on the parent's eval set (None for a run from the base model)."""
    info = result.previous
    if not info:
        return None
    mine = load_rows(info.get("rows_path", ""))
    theirs = load_rows(info.get("parent_rows_path", ""))
    return PreviousEval(
        str(info.get("against", "parent version")),
        mine[0] if mine else None,
        theirs[0] if theirs else None,
        str(info.get("missing", "")),
    )


def before_after_markdown(result: EvalResult) -> str:
    extra = list(result.baselines)
    head = ["metric", "base model", *extra, "fine-tuned", "change"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, value in result.metrics.items():
        base = result.base_metrics.get(name)
        others = [_fmt(result.baselines[b].get(name)) for b in extra]
        change = "-" if base is None else f"{value - base:+.4f}"
        lines.append(
            f"| {name} | {_fmt(base)} | {' | '.join([*others, ''])}{value:.4f} | {change} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def samples_markdown(samples: list[dict[str, Any]]) -> str:
    """Sample generations as a table (cells shortened, pipes and newlines escaped)."""
    if not samples:
        return ""
    keys = list(samples[0])

    def cell(value: Any) -> str:
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 120 else text[:117] + "..."

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(k, "")) for k in keys) + " |" for row in samples]
    return "\n".join(lines)


def report_classifier(result: EvalResult, out_dir: Path, run_id: str | None) -> None:
    """Log a classifier's evaluation to MLflow and the before/after table to Prefect."""
    if run_id:
        tracking.log_metrics(run_id, {f"eval_{k}": v for k, v in result.metrics.items()})
        tracking.log_metrics(run_id, {f"base_{k}": v for k, v in result.base_metrics.items()})
        tracking.log_file(run_id, result.table_path, "eval")
        tracking.log_text(run_id, before_after_markdown(result), "eval/before_after.md")
        from tasks.core import plots

        picture = plots.confusion(result.confusion, result.labels, out_dir / "confusion.png")
        tracking.log_file(run_id, picture, "plots")
    create_markdown_artifact(
        key="before-after", markdown=before_after_markdown(result), description="Base vs fine-tuned"
    )
