"""What the causal-LM methods share: which weights train (full or a LoRA adapter, 4-bit QLoRA
on a GPU with bitsandbytes), and the builder that applies that choice to a loaded model."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig

log = logging.getLogger(__name__)


class CausalMethod(MethodConfig):
    """Weights settings shared by pretrain, sft, dpo, reward and rlhf."""

    weights: Literal["lora", "full"] = Field(
        default="lora", description="Train a LoRA adapter (registered alone) or every weight."
    )
    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank (weights: lora).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear",
        description="Modules LoRA adapts: a list of names, or `all-linear` (every linear layer "
        "but the output head).",
    )
    load_in_4bit: bool = Field(
        default=False,
        description="QLoRA: load the base in 4-bit NF4 (needs a CUDA GPU and bitsandbytes; "
        "without them training runs in full precision and the run says so).",
    )


def quantization_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def load_kwargs(config: CausalMethod) -> dict[str, Any]:
    """`from_pretrained` arguments for the method's weights settings (4-bit when asked and able)."""
    if not config.load_in_4bit:
        return {}
    if not quantization_available():
        log.warning("load_in_4bit: no CUDA GPU with bitsandbytes here; training in full precision")
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        ),
        "device_map": {"": 0},
    }


def apply_weights(model: Any, config: CausalMethod, task_type: str) -> Any:
    """Wrap `model` in a LoRA adapter, or leave every weight trainable."""
    if config.weights == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model)
    peft_config = LoraConfig(
        task_type=task_type,
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
    )
    return get_peft_model(model, peft_config)


def build_lm(model: Any, config: CausalMethod, ctx: BuildContext) -> Any:
    return apply_weights(model, config, "CAUSAL_LM")


def build_scorer(model: Any, config: CausalMethod, ctx: BuildContext) -> Any:
    return apply_weights(model, config, "SEQ_CLS")
