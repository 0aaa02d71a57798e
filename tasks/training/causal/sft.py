"""Supervised fine-tuning (trl `SFTTrainer`): prompt-completion pairs, alpaca triplets rendered
through `prompt_template`, or chat messages through the tokenizer's chat template. The loss is
on the completion only by default; sequences are packed (best-fit decreasing, padding-free, each
example attending only to itself) by default."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, TrainerInputs, build_lm

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task{input_clause}. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n{input_block}"
    "### Response:\n"
)


class SftMethod(CausalMethod):
    """Supervised fine-tuning on demonstrations."""

    name: Literal["sft"] = "sft"
    completion_only_loss: bool = Field(
        default=True, description="Train on the completion tokens only (not the prompt)."
    )
    packing: bool | None = Field(
        default=None,
        description="Pack examples into full-length rows without padding, each still attending "
        "only to itself. Default: on where the attention kernel takes packed rows natively "
        "(flash attention on a GPU); off elsewhere, where examples are batched by length "
        "instead (SDPA on CPU attends over the whole packed batch and is slower).",
    )
    prompt_template: str = Field(
        default=ALPACA_TEMPLATE,
        description="How alpaca rows become a prompt: a Python format string with "
        "{instruction}, {input}, {input_clause} (', paired with an input...' when there is "
        "one) and {input_block} ('### Input:\\n<input>\\n\\n' when there is one).",
    )


def use_packing(model: Any, choice: bool | None) -> bool:
    """The recipe's packing choice; by default on only with a varlen (flash) attention kernel."""
    if choice is not None:
        return choice
    implementation = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in implementation


def _lm_columns(split: Any) -> Any:
    keep = [c for c in ("input_ids", "completion_mask") if c in split.column_names]
    return split.select_columns(keep)


def lm_trainer(inputs: TrainerInputs) -> Any:
    """trl's `SFTTrainer` on token ids: demonstrations (loss on the completion by default) or, for
    continued pretraining, a corpus."""
    from trl import SFTConfig, SFTTrainer

    method = inputs.method
    shared = dict(inputs.shared)
    packing = use_packing(inputs.model, method.packing)
    if not packing and inputs.spec.group_by_length:
        shared["train_sampling_strategy"] = "group_by_length"
    args = SFTConfig(
        **shared,
        max_length=inputs.max_length,
        packing=packing,
        # a corpus document longer than a sequence continues in the next; a demonstration is
        # truncated rather than split from its prompt
        packing_strategy="bfd_split" if method.name == "pretrain" else "bfd",
        completion_only_loss=bool(getattr(method, "completion_only_loss", False)),
    )
    return SFTTrainer(
        model=inputs.model,
        args=args,
        train_dataset=_lm_columns(inputs.train),
        eval_dataset=_lm_columns(inputs.held) if inputs.held is not None else None,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


SPEC = MethodSpec(
    config=SftMethod,
    build=build_lm,
    trainer=lm_trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("prompt-completion", "alpaca", "chat"),
    objective="lm",
    default_metric="perplexity",
    default_learning_rate=2e-4,
    continuable=True,
)
