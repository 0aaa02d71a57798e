"""Prompt tuning (peft): trained soft-prompt embeddings before the input; the encoder is frozen."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class PromptTuningMethod(MethodConfig):
    """Prompt tuning settings (peft `PromptTuningConfig`)."""

    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(default=16, ge=1, le=512, description="Soft-prompt length.")


def build(model: Any, config: PromptTuningMethod, ctx: BuildContext) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    peft_config = PromptTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )
    return get_peft_model(model, peft_config)


SPEC = MethodSpec(
    config=PromptTuningMethod, build=build, artifact="adapter", default_learning_rate=1e-2
)
