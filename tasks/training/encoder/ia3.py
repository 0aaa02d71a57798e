"""IA3 (peft): learned rescaling vectors on keys, values and feed-forward activations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class IA3Method(MethodConfig):
    """IA3 settings (peft `IA3Config`)."""

    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        default=None,
        description="Modules to rescale; peft's default for the architecture if absent.",
    )
    feedforward_modules: list[str] | None = Field(
        default=None, description="Which of them are feed-forward (scaled on the input side)."
    )


def build(model: Any, config: IA3Method, ctx: BuildContext) -> Any:
    from peft import IA3Config, TaskType, get_peft_model

    peft_config = IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=config.target_modules,
        feedforward_modules=config.feedforward_modules,
    )
    return get_peft_model(model, peft_config)


SPEC = MethodSpec(
    config=IA3Method, build=build, artifact="adapter", default_learning_rate=5e-3, continuable=True
)
