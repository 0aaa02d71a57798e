"""AdaLoRA (peft): LoRA whose rank budget is reallocated across layers during training."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class AdaLoraMethod(MethodConfig):
    """AdaLoRA settings (peft `AdaLoraConfig`); `total_step` comes from the training length."""

    name: Literal["adalora"] = "adalora"
    init_r: int = Field(default=12, ge=1, description="Initial rank of every update matrix.")
    target_r: int = Field(default=4, ge=1, description="Average rank after reallocation.")
    lora_alpha: int = Field(default=16, ge=1, description="Scaling numerator.")
    lora_dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA path.")
    tinit: float = Field(default=0.1, ge=0, lt=1, description="Share of steps before pruning.")
    tfinal: float = Field(
        default=0.2, ge=0, lt=1, description="Share of final steps at fixed rank."
    )
    deltaT: int = Field(default=1, ge=1, description="Steps between budget reallocations.")
    target_modules: list[str] | None = Field(
        default=None, description="Modules to adapt; peft's default for the architecture if absent."
    )


def build(model: Any, config: AdaLoraMethod, ctx: BuildContext) -> Any:
    from peft import AdaLoraConfig, TaskType, get_peft_model

    total = max(ctx.total_steps, 3)
    tinit = int(config.tinit * total)
    tfinal = min(int(config.tfinal * total), total - tinit - 1)
    peft_config = AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        init_r=config.init_r,
        target_r=config.target_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=config.deltaT,
        total_step=total,
        target_modules=config.target_modules,
    )
    return get_peft_model(model, peft_config)


def callbacks(model: Any) -> list[Any]:
    from transformers import TrainerCallback

    class RankAllocation(TrainerCallback):  # type: ignore[misc]
        """AdaLoRA needs `update_and_allocate` after each optimiser step, before zero_grad."""

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model.base_model.update_and_allocate(state.global_step)

    return [RankAllocation()]


SPEC = MethodSpec(config=AdaLoraMethod, build=build, artifact="adapter", callbacks=callbacks)
