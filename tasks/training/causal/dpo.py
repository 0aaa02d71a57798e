"""Direct preference optimisation (trl `DPOTrainer`): `{prompt, chosen, rejected}` pairs, or
whole transcripts sharing a prefix (the prompt is the shared prefix). With a LoRA adapter the
reference model is the base with the adapter switched off; with full weights, a frozen copy."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import (
    CausalMethod,
    TrainerInputs,
    base_as_reference,
    build_lm,
    first_row,
    reference_for,
)

log = logging.getLogger(__name__)
TEXT_COLUMNS = ("prompt", "chosen", "rejected")


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

    from tasks.models.prompts import PAIR_IDS

    method: DpoMethod = inputs.method
    train, held = inputs.text_pairs((*TEXT_COLUMNS, *PAIR_IDS))
    args = DPOConfig(
        **inputs.shared,
        max_length=inputs.max_length,
        beta=method.beta,
        loss_type=[method.loss_type],
    )
    trainer = pretokenized_pairs_trainer(held_out_reference_trainer(DPOTrainer))(
        model=inputs.model,
        ref_model=reference_for(inputs),
        args=args,
        train_dataset=train,
        eval_dataset=held,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )
    return base_as_reference(trainer)


def held_out_reference_trainer(base: type) -> type:
    """trl's `DPOTrainer` (`base`) that runs the reference over the held-out pairs once.

    The reference (the base with the adapter off, or a frozen copy of it) does not change while the
    policy trains, yet trl runs it over every held-out batch at every held-out loss point. This
    trainer lets trl compute the reference's two log-probability sums of a batch the first time
    it meets that batch (`compute_ref_log_probs`, trl's own precompute path), keeps them by the
    batch's tokens, and hands them to trl's precomputed path at later points: the same figures,
    for one reference pass over the held-out rows instead of one per point. Training steps, a
    reference that moves (`sync_ref_model`) and trl's own precomputation are trl's as they come."""
    import hashlib

    class HeldOutReferenceDPOTrainer(base):  # type: ignore[misc, valid-type]
        precompute_ref_logps: bool  # trl's, set in its __init__

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            if self.model.training or self.precompute_ref_logps or self.args.sync_ref_model:
                return super()._compute_loss(model, inputs, return_outputs)
            digest = hashlib.blake2b(digest_size=16)
            for name in ("input_ids", "attention_mask", "completion_mask"):
                if name in inputs:
                    tensor = inputs[name]
                    digest.update(repr((name, tuple(tensor.shape))).encode())
                    digest.update(tensor.detach().cpu().numpy().tobytes())
            key = digest.digest()
            kept: dict[bytes, tuple[Any, Any]] = self.__dict__.setdefault("_held_reference", {})
            if key not in kept:
                kept[key] = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
            chosen, rejected = kept[key]
            self.precompute_ref_logps = True  # trl reads the two sums from the batch
            try:
                batch = {**inputs, "ref_chosen_logps": chosen, "ref_rejected_logps": rejected}
                return super()._compute_loss(model, batch, return_outputs)
            finally:
                self.precompute_ref_logps = False

    return HeldOutReferenceDPOTrainer


def pretokenized_pairs_trainer(base: type) -> type:
    """trl's `DPOTrainer` (`base`) that takes the pairs' token ids tuneline's tokenization made.

    trl tokenizes the text pairs row by row when its trainer is built, at every run (about 0.5 s
    for 1,000 pairs on a small machine, minutes for large data). The tokenization stage has made
    the same ids already, in batches, once per data fingerprint, often in the run's process ahead
    (`tasks.tokenization.encoding._pairs`). This trainer checks them against trl's own on the first
    pair trl keeps and then keeps them, applying trl's last step (dropping pairs whose prompt alone fills
    `max_length`); when they are absent or differ (another trl's way of making them), trl
    tokenizes the text as it comes."""
    from datasets import Dataset

    from tasks.models.prompts import PAIR_IDS

    class PretokenizedPairsDPOTrainer(base):  # type: ignore[misc, valid-type]
        def _prepare_dataset(
            self, dataset: Any, processing_class: Any, args: Any, dataset_name: str
        ) -> Any:
            def trls(rows: Any) -> Any:
                return super(PretokenizedPairsDPOTrainer, self)._prepare_dataset(
                    rows, processing_class, args, dataset_name
                )

            columns = getattr(dataset, "column_names", None) or ()
            present = [c for c in PAIR_IDS if c in columns]
            if len(present) < len(PAIR_IDS) or not isinstance(dataset, Dataset) or not len(dataset):
                return trls(dataset.remove_columns(present) if present else dataset)
            limit = args.max_length if args.truncation_mode == "keep_start" else None
            first = first_row(dataset, "prompt_ids", lambda ids: limit is None or len(ids) < limit)
            text = dataset.remove_columns(list(PAIR_IDS))
            # trl's own preparation of the first pair it keeps, to compare with ours
            probe = trls(text.select([first])) if first is not None else None
            if (
                probe is None
                or len(probe) != 1
                or any(probe[0][c] != dataset[first][c] for c in PAIR_IDS)
            ):
                log.info("the tokenized pairs differ from trl's: trl tokenizes %s", dataset_name)
                return trls(text)
            if limit is None:
                return dataset
            return dataset.filter(
                lambda row: len(row["prompt_ids"]) < limit,
                num_proc=args.dataset_num_proc,
                desc=f"Dropping fully truncated examples from {dataset_name} dataset",
            )

    return PretokenizedPairsDPOTrainer


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
