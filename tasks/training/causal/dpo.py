"""Direct preference optimisation (trl `DPOTrainer`): `{prompt, chosen, rejected}` pairs, or
whole transcripts sharing a prefix (the prompt is the shared prefix). With a LoRA adapter the
reference model is the base with the adapter switched off; with full weights, a frozen copy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, TrainerInputs, build_lm, reference_for


class DpoMethod(CausalMethod):
    """Preference optimisation without a reward model."""

    name: Literal["dpo"] = "dpo"
    beta: float = Field(
        default=0.1, gt=0, description="Strength of the pull towards the reference model."
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        default="sigmoid", description="DPO loss (trl `loss_type`)."
    )


def trainer(inputs: TrainerInputs) -> Any:
    from trl import DPOConfig, DPOTrainer

    method: DpoMethod = inputs.method
    train, held = inputs.text_pairs()
    args = DPOConfig(
        **inputs.shared,
        max_length=inputs.max_length,
        beta=method.beta,
        loss_type=[method.loss_type],
    )
    return DPOTrainer(
        model=inputs.model,
        ref_model=reference_for(inputs),
        args=args,
        train_dataset=train,
        eval_dataset=held,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


SPEC = MethodSpec(
    config=DpoMethod,
    build=build_lm,
    trainer=trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("preference",),
    objective="preference",
    default_metric="preference_accuracy",
    default_learning_rate=5e-5,
)
