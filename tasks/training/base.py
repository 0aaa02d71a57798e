"""What every training method shares: the method config base, the registry entry shape, the
training settings block and the result a training task returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ArtifactKind = Literal["adapter", "weights", "probe"]


class MethodConfig(BaseModel):
    """Base of every method's config; `name` is the discriminator."""

    model_config = ConfigDict(extra="forbid")

    name: str


@dataclass(frozen=True)
class MethodSpec:
    """One registry entry: the config model, the builder and the form the result registers in."""

    config: type[MethodConfig]
    build: Callable[[Any, Any], Any]  # (model, config) -> model with the method applied
    artifact: ArtifactKind
    tasks: tuple[str, ...] = ("classification",)


class TrainSpec(BaseModel):
    """Optimiser and loop settings, named as in `transformers.TrainingArguments`."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(default=3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(
        default=-1, description="Cap on optimiser steps; -1 means run all `epochs`."
    )
    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(default=16, ge=1, le=4096, description="Examples per optimiser step.")
    eval_batch_size: int = Field(default=64, ge=1, le=4096, description="Examples per eval batch.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1, description="Share of steps warming up.")
    seed: int = Field(default=42, description="Seed for initialisation, shuffling and splits.")
    group_by_length: bool = Field(
        default=True, description="Batch examples of similar length together (less padding)."
    )
    logging_steps: int = Field(default=5, ge=1, description="Log the training loss every N steps.")


@dataclass(frozen=True)
class TrainResult:
    """A trained artifact on disk and what it took to make it."""

    path: str
    method: str
    artifact: str
    trainable_params: int
    total_params: int
    train_loss: float
    steps: int
    train_seconds: float
    train_samples_per_second: float
    padding_share: float
    tokens_per_second: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0
