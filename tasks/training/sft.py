"""Supervised fine-tuning (trl `SFTTrainer`): prompt-completion pairs, alpaca triplets rendered
through `prompt_template`, or chat messages through the tokenizer's chat template. The loss is
on the completion only by default; sequences are packed (best-fit decreasing, padding-free, each
example attending only to itself) by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal_config import CausalMethod, build_lm

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


SPEC = MethodSpec(
    config=SftMethod,
    build=build_lm,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("prompt-completion", "alpaca", "chat"),
    objective="lm",
    default_metric="perplexity",
    default_learning_rate=2e-4,
)
