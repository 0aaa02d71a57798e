"""Reinforcement learning from a reward model (trl `GRPOTrainer` or `RLOOTrainer`): the policy
samples several completions per prompt, a reward model named in the recipe scores them, and the
policy moves towards the better ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal_config import CausalMethod, build_lm


class RlhfMethod(CausalMethod):
    """Online policy optimisation against a reward model."""

    name: Literal["rlhf"] = "rlhf"
    reward_model: str = Field(
        description="The reward model: a registered one (`models:/<name>@champion` or "
        "`models:/<name>/<version>`) or a folder holding a tuneline reward artifact."
    )
    algorithm: Literal["grpo", "rloo"] = Field(
        default="grpo", description="trl's GRPO or RLOO trainer."
    )
    num_generations: int = Field(
        default=4, ge=2, le=64, description="Completions sampled per prompt."
    )
    max_completion_length: int = Field(
        default=32, ge=1, le=4096, description="Longest sampled completion, in tokens."
    )
    beta: float = Field(default=0.04, ge=0, description="KL penalty towards the base policy.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")


SPEC = MethodSpec(
    config=RlhfMethod,
    build=build_lm,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("prompt-completion", "alpaca", "chat", "preference"),
    objective="rl",
    default_metric="mean_reward",
    default_learning_rate=1e-5,
)
