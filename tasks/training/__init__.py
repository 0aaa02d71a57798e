"""Training methods: one module per method, same shape (a config model, one builder, a SPEC),
listed in the explicit `METHODS` registry below and checked at import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec, TrainResult, TrainSpec
from tasks.training.causal import dpo, kto, pretrain, reward, rlhf, sft
from tasks.training.encoder import (
    adalora,
    full,
    ia3,
    last_layers,
    lora,
    prefix_tuning,
    probe,
    prompt_tuning,
)

METHODS: dict[str, MethodSpec] = {
    "probe": probe.SPEC,
    "last_layers": last_layers.SPEC,
    "full": full.SPEC,
    "lora": lora.SPEC,
    "adalora": adalora.SPEC,
    "ia3": ia3.SPEC,
    "prefix_tuning": prefix_tuning.SPEC,
    "prompt_tuning": prompt_tuning.SPEC,
    # causal language models
    "pretrain": pretrain.SPEC,
    "sft": sft.SPEC,
    "dpo": dpo.SPEC,
    "kto": kto.SPEC,
    "reward": reward.SPEC,
    "rlhf": rlhf.SPEC,
}

# The recipe's `method` block: a discriminated union on `name` of the configs above, so LoRA
# fields cannot reach DPO. (Type checkers see the common base; each method's module narrows it.)
if TYPE_CHECKING:
    Method = MethodConfig
else:
    Method = Annotated[
        Union[tuple(spec.config for spec in METHODS.values())],  # noqa: UP007 - built at runtime
        Field(discriminator="name"),
    ]


def is_causal(method: str) -> bool:
    """Whether the method trains a causal LM (else an encoder classifier)."""
    return "causal-lm" in METHODS[method].tasks


def _check_registry() -> None:
    from typing import get_args

    union_members = {m.model_fields["name"].default for m in get_args(get_args(Method)[0])}
    for key, spec in METHODS.items():
        default = spec.config.model_fields["name"].default
        if default != key:
            raise RuntimeError(f"METHODS['{key}'] has a config named '{default}'")
    if union_members != set(METHODS):
        raise RuntimeError(f"Method union {sorted(union_members)} != METHODS {sorted(METHODS)}")


_check_registry()

__all__ = [
    "METHODS",
    "is_causal",
    "BuildContext",
    "Method",
    "MethodConfig",
    "MethodSpec",
    "TrainResult",
    "TrainSpec",
]
