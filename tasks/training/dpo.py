"""Direct preference optimisation (trl `DPOTrainer`): `{prompt, chosen, rejected}` pairs, or
whole transcripts sharing a prefix (the prompt is the shared prefix). With a LoRA adapter the
reference model is the base with the adapter switched off; with full weights, a frozen copy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal_config import CausalMethod, build_lm


class DpoMethod(CausalMethod):
    """Preference optimisation without a reward model."""

    name: Literal["dpo"] = "dpo"
    beta: float = Field(
        default=0.1, gt=0, description="Strength of the pull towards the reference model."
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        default="sigmoid", description="DPO loss (trl `loss_type`)."
    )


SPEC = MethodSpec(
    config=DpoMethod,
    build=build_lm,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("preference",),
    objective="preference",
    default_metric="preference_accuracy",
    default_learning_rate=5e-5,
)
