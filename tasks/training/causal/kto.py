"""Kahneman-Tversky optimisation (trl `KTOTrainer`): preference learning from answers marked
good or bad one by one, not in pairs. A preference pair gives one of each; the loss weighs the
good and the bad answers separately, against the reference model, and estimates the KL term from
the other answers of the same batch. With a LoRA adapter the reference model is the base with the
adapter switched off; with full weights, a frozen copy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import (
    CausalMethod,
    TrainerInputs,
    base_as_reference,
    build_lm,
    reference_for,
)


class KtoMethod(CausalMethod):
    """Preference optimisation from answers marked good or bad one at a time."""

    name: Literal["kto"] = "kto"
    beta: float = Field(
        default=0.1, gt=0, description="Strength of the pull towards the reference model."
    )
    desirable_weight: float = Field(
        default=1.0, gt=0, description="Weight of the good answers' loss (trl option)."
    )
    undesirable_weight: float = Field(
        default=1.0, gt=0, description="Weight of the bad answers' loss (trl option)."
    )


def _unpaired(split: Any, seed: int) -> Any:
    """Each `{prompt, chosen, rejected}` pair as two rows `{prompt, completion, label}`, shuffled
    once with the recipe's seed: KTO's KL estimate pairs each row with its neighbours in a batch,
    so the trainer reads them in this order rather than reshuffling."""
    from trl.data_utils import unpair_preference_dataset

    rows = unpair_preference_dataset(split.select_columns(["prompt", "chosen", "rejected"]))
    return rows.shuffle(seed=seed)


def trainer(inputs: TrainerInputs) -> Any:
    from trl import KTOConfig, KTOTrainer

    method: KtoMethod = inputs.method
    args = KTOConfig(
        **{**inputs.shared, "train_sampling_strategy": "sequential"},
        max_length=inputs.max_length,
        beta=method.beta,
        desirable_weight=method.desirable_weight,
        undesirable_weight=method.undesirable_weight,
    )
    held = inputs.held
    trainer = KTOTrainer(
        model=inputs.model,
        ref_model=reference_for(inputs),
        args=args,
        train_dataset=_unpaired(inputs.train, inputs.spec.seed),
        eval_dataset=_unpaired(held, inputs.spec.seed) if held is not None else None,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )
    return base_as_reference(trainer)


SPEC = MethodSpec(
    config=KtoMethod,
    build=build_lm,
    trainer=trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("preference",),
    objective="preference",
    default_metric="preference_accuracy",
    default_learning_rate=5e-5,
)
