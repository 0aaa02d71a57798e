"""Prefix tuning (peft): trained key/value prefixes in every attention layer; the encoder is frozen."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class PrefixTuningMethod(MethodConfig):
    """Prefix tuning settings (peft `PrefixTuningConfig`)."""

    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(default=16, ge=1, le=512, description="Prefix length.")
    prefix_projection: bool = Field(
        default=False, description="Reparameterise the prefix through an MLP."
    )


def build(model: Any, config: PrefixTuningMethod, ctx: BuildContext) -> Any:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    peft_config = PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=config.num_virtual_tokens,
        prefix_projection=config.prefix_projection,
    )
    return get_peft_model(model, peft_config)


SPEC = MethodSpec(
    config=PrefixTuningMethod, build=build, artifact="adapter", default_learning_rate=1e-2
)
