"""Right-padded CPU batches run without their attention mask while a causal LM trains
(`tasks.training.causal.padding`): the real positions come out the same, the mask really is
dropped, and any other mask (left padding, holes) is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tasks.training.causal.padding import decoder_backbones, right_padding_unmasked


def _model(tiny_causal_lm: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_causal_lm).eval()


def _seen_masks(model: Any) -> tuple[list[Any], Any]:
    """What the backbone's forward receives as its mask, recorded after tuneline's hook."""
    seen: list[Any] = []
    (backbone,) = decoder_backbones(model)
    handle = backbone.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True
    )
    return seen, handle


def test_right_padding_runs_unmasked_with_the_same_real_positions(tiny_causal_lm: Path) -> None:
    model = _model(tiny_causal_lm)
    ids = torch.randint(
        2, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0)
    )
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # right padding
    mask[2, 10:] = 0
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask).logits
        with right_padding_unmasked(model):
            seen, handle = _seen_masks(model)
            unmasked = model(input_ids=ids, attention_mask=mask).logits
            handle.remove()
    assert seen == [None], "the mask reached the backbone"
    real = mask.bool()
    assert torch.allclose(masked[real], unmasked[real], atol=1e-6, rtol=1e-5)
    assert bool((masked[~real] != unmasked[~real]).any()), "padding positions: no change seen"


def test_other_masks_are_kept(tiny_causal_lm: Path) -> None:
    model = _model(tiny_causal_lm)
    ids = torch.randint(
        2, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1)
    )
    left = torch.ones_like(ids)
    left[0, :3] = 0
    holes = torch.ones_like(ids)
    holes[1, 4] = 0
    with right_padding_unmasked(model), torch.no_grad():
        seen, handle = _seen_masks(model)
        for mask in (left, holes):
            model(input_ids=ids, attention_mask=mask)
        handle.remove()
    assert [
        m is not None and torch.equal(m, e) for m, e in zip(seen, (left, holes), strict=True)
    ] == [True, True]


def test_the_hook_goes_with_the_block(tiny_causal_lm: Path) -> None:
    model = _model(tiny_causal_lm)
    (backbone,) = decoder_backbones(model)
    before = len(backbone._forward_pre_hooks)
    with right_padding_unmasked(model, None):
        assert len(backbone._forward_pre_hooks) == before + 1
    assert len(backbone._forward_pre_hooks) == before
