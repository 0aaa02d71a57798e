"""The evaluate stage: one entry for every trained model, encoder classifier or causal LM, on the
held-out split beside the base model. What kind of model it is comes from the artifact itself."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.data.load import DataRef
from tasks.evaluation.causal import evaluate_causal, report_causal
from tasks.evaluation.classifier import (
    EvalResult,
    EvaluateSpec,
    evaluate_classifier,
    report_classifier,
)
from tasks.models.artifacts import read_manifest
from tasks.models.base import BaseModelSpec
from tasks.services.secret_blocks import with_token
from tasks.tokenization.encoding import TokenizedRef


def is_causal_artifact(artifact: str) -> bool:
    return read_manifest(Path(artifact)).get("task") == "causal-lm"


def evaluate(
    artifact: str,
    data: DataRef,
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    seed: int,
    out_dir: Path,
) -> EvalResult:
    """The trained `artifact` and the base on the eval split: a classifier reads the rows of
    `data`, a causal LM the rendered rows of `tokenized`."""
    if is_causal_artifact(artifact):
        return evaluate_causal(artifact, tokenized, base, spec, seed, out_dir)
    return evaluate_classifier(artifact, data, base, spec, seed, out_dir)


@task(name="evaluate_model")
def evaluate_model(
    artifact: str,
    data: DataRef,
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    seed: int,
    out_dir: str,
    run_id: str | None,
) -> EvalResult:
    """Evaluate the trained model and the base on the held-out split; log both to MLflow and the
    before/after table to Prefect."""
    base = with_token(base)
    if is_causal_artifact(artifact):  # the manifest read once, for both evaluating and logging
        result = evaluate_causal(artifact, tokenized, base, spec, seed, Path(out_dir))
        report_causal(result, run_id)
    else:
        result = evaluate_classifier(artifact, data, base, spec, seed, Path(out_dir))
        report_classifier(result, Path(out_dir), run_id)
    return result
