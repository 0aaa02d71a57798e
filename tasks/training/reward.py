"""Reward modelling (trl `RewardTrainer`): a one-output scoring head on the base model, trained
so a chosen answer scores above the rejected one (Bradley-Terry loss)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal_config import CausalMethod, build_scorer


class RewardMethod(CausalMethod):
    """A reward model trained on preference pairs."""

    name: Literal["reward"] = "reward"
    center_rewards_coefficient: float | None = Field(
        default=None, ge=0, description="Pull mean rewards towards zero (trl option)."
    )


SPEC = MethodSpec(
    config=RewardMethod,
    build=build_scorer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("preference",),
    objective="score",
    default_metric="preference_accuracy",
    default_learning_rate=1e-4,
)
