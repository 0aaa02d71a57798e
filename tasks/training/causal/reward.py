"""Reward modelling (trl `RewardTrainer`): a one-output scoring head on the base model, trained
so a chosen answer scores above the rejected one (Bradley-Terry loss)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, TrainerInputs, build_scorer


class RewardMethod(CausalMethod):
    """A reward model trained on preference pairs."""

    name: Literal["reward"] = "reward"
    center_rewards_coefficient: float | None = Field(
        default=None, ge=0, description="Pull mean rewards towards zero (trl option)."
    )


def trainer(inputs: TrainerInputs) -> Any:
    from trl import RewardConfig, RewardTrainer

    method: RewardMethod = inputs.method
    train, held = inputs.text_pairs()
    args = RewardConfig(
        **inputs.shared,
        max_length=inputs.max_length,
        center_rewards_coefficient=method.center_rewards_coefficient,
    )
    return RewardTrainer(
        model=inputs.model,
        args=args,
        train_dataset=train,
        eval_dataset=held,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


SPEC = MethodSpec(
    config=RewardMethod,
    build=build_scorer,
    trainer=trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("preference",),
    objective="score",
    default_metric="preference_accuracy",
    default_learning_rate=1e-4,
)
