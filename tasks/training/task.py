"""The train stage's Prefect task: one for every method, encoder or causal LM. It trains in this
process or across processes (`launch`), then logs the figures and the loss curve to MLflow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task

from tasks.models.base import BaseModelSpec
from tasks.services.secret_blocks import with_token
from tasks.tokenization.encoding import TokenizedRef
from tasks.training import launch
from tasks.training.base import MethodConfig, TrainResult, TrainSpec


@task(name="train_model", log_prints=False)  # dill prints disassembly via print()
def train_model(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: MethodConfig,
    spec: TrainSpec,
    max_length: int,
    out_dir: str,
    run_id: str | None = None,
    checkpoint_dir: str | None = None,
    init: str | None = None,
    labels: Sequence[str] = (),
    data_format: str = "",
) -> TrainResult:
    """Train the recipe's method (never cached, never blindly retried); log its figures. With
    `init` (a trained artifact folder) training starts from its weights. `labels` are the
    classifier's classes; `data_format` tells a causal LM how its prompts are rendered."""
    result = launch.train(
        tokenized,
        with_token(base),
        method,
        spec,
        Path(out_dir),
        Path(checkpoint_dir) if checkpoint_dir else None,
        labels=list(labels),
        data_format=data_format,
        max_length=max_length,
        init=init,
    )
    if run_id:
        log_training(run_id, result)
    return result


def log_training(run_id: str, result: TrainResult) -> None:
    from tasks.services import tracking

    tracking.log_metrics(
        run_id,
        {
            "trainable_params": result.trainable_params,
            "total_params": result.total_params,
            "trainable_share": result.trainable_share,
            "train_loss_final": result.train_loss,
            "train_steps": result.steps,
            "train_seconds": result.train_seconds,
            "train_samples_per_second": result.train_samples_per_second,
            "padding_share": result.padding_share,
            "train_tokens_per_second": result.tokens_per_second,
            **result.extra,
        },
    )
    history = json.loads((Path(result.path) / "history.json").read_text())
    names = {"loss": "train_loss", "eval_loss": "eval_loss", "reward": "train_reward"}
    tracking.log_series(
        run_id,
        [
            (name, point[key], int(point["step"]))
            for point in history
            for key, name in names.items()
            if key in point
        ],
    )
    history = [p for p in history if "loss" in p or "eval_loss" in p]
    if history:
        from tasks.core import plots

        picture = plots.loss_curve(history, Path(result.path).parent / "loss_curve.png")
        tracking.log_file(run_id, picture, "plots")
