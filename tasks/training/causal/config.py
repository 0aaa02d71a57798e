"""What the causal-LM methods share: which weights train (full or a LoRA adapter, 4-bit QLoRA
on a GPU with bitsandbytes), and the builder that applies that choice to a loaded model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, TrainSpec

log = logging.getLogger(__name__)


class CausalMethod(MethodConfig):
    """Weights settings every causal-LM method shares."""

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


@dataclass
class TrainerInputs:
    """What a causal method's trainer builder gets from the shared loop: the model to train, the
    tokenized splits (`held` is the few eval rows of the loss curve, or None), the
    `TrainingArguments` every method shares, and a way to load a frozen reference copy of the
    base (for methods that compare against one when the whole network trains)."""

    model: Any
    tokenizer: Any
    method: Any  # the method's own config (the builder's module narrows it)
    spec: TrainSpec
    train: Any
    held: Any
    shared: dict[str, Any]
    max_length: int
    callbacks: list[Any]
    load_reference: Callable[[], Any]

    def text_pairs(self, columns: tuple[str, ...] = ("prompt", "chosen", "rejected")) -> tuple:
        """The train and held-out splits reduced to those of `columns` they have."""

        def kept(split: Any) -> Any:
            return split.select_columns([c for c in columns if c in split.column_names])

        return kept(self.train), (kept(self.held) if self.held is not None else None)


def first_row(
    rows: Any, column: str, keeps: Callable[[Any], bool], batch: int = 1000
) -> int | None:
    """The index of the first row whose `column` value `keeps`, read a batch at a time (a large
    dataset's column is never held whole); None when there is none."""
    for start in range(0, len(rows), batch):
        for offset, value in enumerate(rows[start : start + batch][column]):
            if keeps(value):
                return start + offset
    return None


def reference_for(inputs: TrainerInputs) -> Any:
    """The frozen reference a preference method compares against: None for a LoRA adapter (the
    base with the adapter switched off), a frozen copy of the base for full weights."""
    return inputs.load_reference() if inputs.method.weights == "full" else None


def base_as_reference(trainer: Any) -> Any:
    """The reference of a fresh LoRA adapter run without the adapter's matrices; returns `trainer`.

    Handed a model already wrapped in an adapter, trl's preference trainers copy that adapter as
    the reference ("ref") and run it beside the base at every reference pass. A fresh LoRA adapter
    is a zero update (PEFT starts each B matrix at zero), so that copy adds exactly zero: the base
    with the adapter off is the same reference, the one trl uses for an adapter it wraps itself
    (and LLaMA-Factory for its own), without the adapter's extra multiplications. The copy is
    dropped only when it is such a zero update; a trained adapter being trained further keeps
    its copy, which is then a real reference."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    configs = getattr(model, "peft_config", None)
    if not configs or "ref" not in configs or getattr(configs["ref"], "use_dora", False):
        return trainer
    for name, param in model.named_parameters():
        if ".ref." not in name or "lora_A" in name:
            continue
        if "lora_B" not in name or not param.numel() or bool(param.detach().count_nonzero()):
            # not a plain zero update (or one held in shards elsewhere, so not known to be one):
            # trl's copy stays the reference
            return trainer
    model.delete_adapter("ref")
    return trainer
