"""Training methods: one module per method, same shape (a config model, one builder, a SPEC),
listed in the explicit `METHODS` registry below and checked at import."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tasks.training import (
    adalora,
    dpo,
    full,
    ia3,
    last_layers,
    lora,
    prefix_tuning,
    pretrain,
    probe,
    prompt_tuning,
    reward,
    rlhf,
    sft,
)
from tasks.training.base import BuildContext, MethodConfig, MethodSpec, TrainResult, TrainSpec

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
    "reward": reward.SPEC,
    "rlhf": rlhf.SPEC,
}

# The recipe's `method` block: a discriminated union on `name`, so LoRA fields cannot reach DPO.
Method = Annotated[
    probe.ProbeMethod
    | last_layers.LastLayersMethod
    | full.FullMethod
    | lora.LoraMethod
    | adalora.AdaLoraMethod
    | ia3.IA3Method
    | prefix_tuning.PrefixTuningMethod
    | prompt_tuning.PromptTuningMethod
    | pretrain.PretrainMethod
    | sft.SftMethod
    | dpo.DpoMethod
    | reward.RewardMethod
    | rlhf.RlhfMethod,
    Field(discriminator="name"),
]


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
    "BuildContext",
    "Method",
    "MethodConfig",
    "MethodSpec",
    "TrainResult",
    "TrainSpec",
]
