"""Right padding without a mask while a causal LM trains on CPU.

A batch padded on the right needs no attention mask in a causal model: a real token attends
to itself and the tokens before it, all real; only the padding's own positions would read other
values, and they carry no label and feed no real position. Without the mask, transformers hands
PyTorch's attention `is_causal` instead of a `[batch, 1, length, length]` mask built at every
layer call, and the CPU kernel skips the blocks above the diagonal instead of masking them: the
same numbers for every real position (the losses of `bench/lm_head.py` are equal bit for bit),
3-6% less time per step for the benchmark's tiny model.

Only on CPU, only for a 2D mask whose every row is ones then zeros, only for text-only
decoder backbones; anything else passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _right_padded(mask: Any) -> bool:
    import torch

    return bool(
        isinstance(mask, torch.Tensor)
        and mask.dim() == 2
        and mask.device.type == "cpu"
        and mask.size(1) > 1
        and (mask[:, 1:] <= mask[:, :-1]).all()
    )


def _drop_right_padding_mask(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    if not _right_padded(kwargs.get("attention_mask")):
        return None
    return args, {**kwargs, "attention_mask": None}


def decoder_backbones(*models: Any) -> list[Any]:
    """The decoder backbones (transformers' base models, e.g. `LlamaModel`) inside `models`,
    each once; none when any model in there is multimodal or an encoder-decoder (their masks
    say more than where the padding is)."""
    from transformers import PreTrainedModel

    found: dict[int, Any] = {}
    for model in (m for m in models if m is not None):
        for module in model.modules():
            if not isinstance(module, PreTrainedModel):
                continue
            config = module.config
            if (
                getattr(config, "is_encoder_decoder", False)
                or config.get_text_config() is not config
            ):
                return []
            if module.base_model is module:
                found[id(module)] = module
    return list(found.values())


@contextmanager
def right_padding_unmasked(*models: Any) -> Iterator[None]:
    """While it lasts, the decoder backbones of `models` run right-padded CPU batches without
    their attention mask (see the module docstring)."""
    handles = [
        backbone.register_forward_pre_hook(_drop_right_padding_mask, with_kwargs=True)
        for backbone in decoder_backbones(*models)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
