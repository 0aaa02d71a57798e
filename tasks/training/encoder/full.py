"""Full fine-tuning: every weight of the encoder and the classifier head trains."""

from __future__ import annotations

from typing import Any, Literal

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class FullMethod(MethodConfig):
    """Train all parameters (no extra settings; the learning rate is in `train`)."""

    name: Literal["full"] = "full"


def build(model: Any, config: FullMethod, ctx: BuildContext) -> Any:
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model


SPEC = MethodSpec(
    config=FullMethod, build=build, artifact="weights", default_learning_rate=5e-5, continuable=True
)
