"""Reinforcement learning from a reward model (trl `GRPOTrainer` or `RLOOTrainer`): the policy
samples several completions per prompt, a reward model named in the recipe scores them, and the
policy moves towards the better ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, TrainerInputs, base_as_reference, build_lm


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


def trainer(inputs: TrainerInputs) -> Any:
    """GRPO or RLOO on the prompts, rewarded by the recipe's reward model."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from tasks.models.reward_models import load_reward_model

    method: RlhfMethod = inputs.method
    scorer, scorer_tokenizer = load_reward_model(method.reward_model)
    groups = max(1, inputs.spec.batch_size // method.num_generations)
    settings = {
        **inputs.shared,
        # every batch holds whole groups of completions of the same prompts
        "per_device_train_batch_size": groups * method.num_generations,
        "num_generations": method.num_generations,
        "max_completion_length": method.max_completion_length,
        "beta": method.beta,
        "temperature": method.temperature,
    }
    pair: tuple[Any, Any] = (GRPOConfig, GRPOTrainer)
    if method.algorithm == "rloo":
        pair = (RLOOConfig, RLOOTrainer)
    config, trainer_class = pair
    trainer = trainer_class(
        model=inputs.model,
        reward_funcs=[scorer],
        args=config(**settings),
        train_dataset=inputs.train.select_columns(["prompt"]),
        processing_class=inputs.tokenizer,
        reward_processing_classes=[scorer_tokenizer],
        callbacks=inputs.callbacks,
    )
    return base_as_reference(trainer)


SPEC = MethodSpec(
    config=RlhfMethod,
    build=build_lm,
    trainer=trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("prompt-completion", "alpaca", "chat", "preference"),
    objective="rl",
    default_metric="mean_reward",
    default_learning_rate=1e-5,
)
