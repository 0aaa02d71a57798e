"""Continued pretraining: next-token prediction on a text corpus (`.txt` files or `{text}`),
sequences packed to `tokenize.max_length` (trl `SFTTrainer`, language-modelling form)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, build_lm
from tasks.training.causal.sft import lm_trainer


class PretrainMethod(CausalMethod):
    """Continued self-supervised training on a corpus."""

    name: Literal["pretrain"] = "pretrain"
    packing: bool | None = Field(
        default=None,
        description="Pack examples into full-length rows without padding, each still attending "
        "only to itself. Default: on where the attention kernel takes packed rows natively "
        "(flash attention on a GPU); off elsewhere, where examples are batched by length "
        "instead (SDPA on CPU attends over the whole packed batch and is slower).",
    )


SPEC = MethodSpec(
    config=PretrainMethod,
    build=build_lm,
    trainer=lm_trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("text",),
    objective="lm",
    default_metric="perplexity",
    default_learning_rate=2e-4,
    continuable=True,
)
