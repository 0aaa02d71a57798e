"""Training methods: one module per method, same shape (a config model, one builder, a SPEC),
listed in the explicit `METHODS` registry below and checked at import."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tasks.training import full, lora
from tasks.training.base import MethodConfig, MethodSpec, TrainResult, TrainSpec

METHODS: dict[str, MethodSpec] = {
    "full": full.SPEC,
    "lora": lora.SPEC,
}

# The recipe's `method` block: a discriminated union on `name`, so LoRA fields cannot reach DPO.
Method = Annotated[full.FullMethod | lora.LoraMethod, Field(discriminator="name")]


def _check_registry() -> None:
    for key, spec in METHODS.items():
        default = spec.config.model_fields["name"].default
        if default != key:
            raise RuntimeError(f"METHODS['{key}'] has a config named '{default}'")


_check_registry()

__all__ = ["METHODS", "Method", "MethodConfig", "MethodSpec", "TrainResult", "TrainSpec"]
