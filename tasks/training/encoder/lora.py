"""LoRA (peft): low-rank update matrices on chosen linear layers; the classifier head trains too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class LoraMethod(MethodConfig):
    """LoRA adapter settings (peft `LoraConfig`)."""

    name: Literal["lora"] = "lora"
    r: int = Field(default=8, ge=1, le=1024, description="Rank of the update matrices.")
    lora_alpha: int = Field(default=16, ge=1, description="Scaling numerator (alpha / r).")
    lora_dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | None = Field(
        default=None,
        description="Module names to adapt (e.g. [query, value]); peft's default for the "
        "architecture when absent.",
    )


def build(model: Any, config: LoraMethod, ctx: BuildContext) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    peft_config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
    )
    return get_peft_model(model, peft_config)


SPEC = MethodSpec(config=LoraMethod, build=build, artifact="adapter", continuable=True)
