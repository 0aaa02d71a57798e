"""Last-N layers: freeze the encoder except its last N transformer blocks; the head trains."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec


class LastLayersMethod(MethodConfig):
    """Train the classifier head (and pooler) plus the last `n_layers` blocks."""

    name: Literal["last_layers"] = "last_layers"
    n_layers: int = Field(default=2, ge=0, description="How many final blocks to train.")


def encoder_blocks(model: Any) -> list[Any]:
    """The transformer blocks of an encoder, first to last (BERT, RoBERTa, DistilBERT shapes)."""
    import torch

    candidates: list[list[Any]] = [
        list(module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("layer", "layers"))
    ]
    if not candidates:
        raise ValueError(f"cannot find the encoder blocks of {type(model).__name__}")
    return max(candidates, key=len)


def build(model: Any, config: LastLayersMethod, ctx: BuildContext) -> Any:
    base_prefix = getattr(model, "base_model_prefix", "")
    for name, parameter in model.named_parameters():
        # The head (classifier, pooler) lives outside the base model; it always trains.
        parameter.requires_grad = not name.startswith(f"{base_prefix}.") or ".pooler." in name
    blocks = encoder_blocks(model)
    for block in blocks[len(blocks) - config.n_layers :] if config.n_layers else []:
        for parameter in block.parameters():
            parameter.requires_grad = True
    return model


SPEC = MethodSpec(
    config=LastLayersMethod,
    build=build,
    artifact="weights",
    default_learning_rate=2e-4,
    continuable=True,
)
