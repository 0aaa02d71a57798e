"""trl's fused LM head as tuneline runs it on CPU (`tasks.training.causal.lm_head`): small logits
computed whole give trl's numbers and gradients bit for bit; large ones, other dtypes and other
devices keep trl's tiles; a training run's head really takes the whole-logits path."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from trl.kernels.chunked_logprob import ChunkedLogProbFunction
from trl.trainer import utils as trl_utils

from tasks.training.causal import lm_head
from tasks.training.causal.lm_head import eager_lm_head, whole_log_probs, whole_logits_when_small

ALL_OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def _both(
    n: int, vocab: int, bias: bool, temperature: float, softcap: float | None, scale: float
) -> list[list[torch.Tensor]]:
    """Outputs and gradients (hidden, weight, bias) of trl's tiles and of the whole logits, for
    a loss using both the log-probabilities and the entropy."""
    generator = torch.Generator().manual_seed(n + vocab)
    hidden = torch.randn(n, 16, generator=generator)
    weight = torch.randn(vocab, 16, generator=generator) * 0.5
    offset = torch.randn(vocab, generator=generator) if bias else None
    targets = torch.randint(0, vocab, (n,), generator=generator)
    first = hidden[0] @ weight.t() + (offset if offset is not None else 0)
    targets[0] = int(first.argmax())  # one top-1 hit at least
    results = []
    for whole in (False, True):
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        b = offset.clone().requires_grad_() if offset is not None else None
        if whole:
            out = whole_log_probs().apply(
                h, w, b, targets, temperature, softcap, scale, ALL_OUTPUTS
            )
        else:
            out = ChunkedLogProbFunction.apply(
                h, w, b, targets, temperature, 32768, softcap, scale, ALL_OUTPUTS
            )
        (-out[0].sum() + 0.3 * out[1].sum()).backward()
        grads = [h.grad, w.grad] + ([b.grad] if b is not None else [])
        results.append([*out, *grads])
    return results


@pytest.mark.parametrize(
    ("bias", "temperature", "softcap", "scale"),
    list(itertools.product((False, True), (1.0, 0.7), (None, 30.0), (1.0, 0.5))),
)
def test_whole_logits_are_trls_numbers_bit_for_bit(
    bias: bool, temperature: float, softcap: float | None, scale: float
) -> None:
    tiles, whole = _both(300, 749, bias, temperature, softcap, scale)
    assert bool(whole[4].any()), "no top-1 hit to compare"
    names = (*ALL_OUTPUTS, "grad hidden", "grad weight", "grad bias")[: len(tiles)]
    assert len(tiles) == len(whole) == 7 + bias
    for name, a, b in zip(names, tiles, whole, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_unrequested_outputs_stay_none() -> None:
    hidden = torch.randn(5, 8, requires_grad=True)
    out = whole_log_probs().apply(
        hidden, torch.randn(11, 8), None, torch.arange(5), 1.0, None, 1.0, ("log_probs",)
    )
    assert out[0].shape == (5,) and all(x is None for x in out[1:])
    out[0].sum().backward()  # no entropy, no gradient for it: still a gradient for the hidden
    assert hidden.grad is not None and bool(hidden.grad.abs().sum() > 0)


def test_only_small_float32_logits_on_cpu_are_whole() -> None:
    small = torch.zeros(8, 4)
    assert lm_head._small_enough(small, torch.zeros(100, 4))
    rows = lm_head.WHOLE_LOGITS_ELEMENTS // 100 + 1
    assert not lm_head._small_enough(torch.zeros(rows, 4), torch.zeros(100, 4))
    assert not lm_head._small_enough(small.bfloat16(), torch.zeros(100, 4).bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lm_head._small_enough(small, torch.zeros(100, 4))


def test_large_logits_keep_trls_tiles() -> None:
    original = trl_utils._ChunkedLogProbFunction
    rows = lm_head.WHOLE_LOGITS_ELEMENTS // 64 + 1
    hidden = torch.randn(rows, 4, requires_grad=True)
    args = (torch.randn(64, 4), None, torch.zeros(rows, dtype=torch.long), 1.0, 64)
    with whole_logits_when_small():
        head = trl_utils._ChunkedLogProbFunction
        assert head is not original
        large = head.apply(hidden, *args)[0]
        small = head.apply(hidden[:10], *args[:2], args[2][:10], *args[3:])[0]
    assert trl_utils._ChunkedLogProbFunction is original  # restored
    assert type(large.grad_fn).__name__ == "ChunkedLogProbFunctionBackward"
    assert type(small.grad_fn).__name__ == "WholeLogProbsBackward"


def test_training_head_takes_the_whole_logits_path(tiny_causal_lm: Path) -> None:
    """A fused head on the tiny model, as trl's trainers add it: inside `eager_lm_head` the
    labelled positions go through the whole-logits function, with the loss, entropy, top-1 hits
    and gradients of trl's own path."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (4, 40), generator=generator)
    labels = ids.clone()
    labels[:, :30] = -100
    mask = torch.ones_like(ids)

    def run() -> tuple[set[str], list[torch.Tensor]]:
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return _graph_nodes(out.loss.grad_fn), [
            out.loss.detach(),
            out.entropy.detach(),
            out.is_top1,
            grads,
        ]

    trl_path, trl_figures = run()
    with eager_lm_head():
        our_path, our_figures = run()
    assert "ChunkedLogProbFunctionBackward" in trl_path and "WholeLogProbsBackward" not in trl_path
    assert "WholeLogProbsBackward" in our_path and "ChunkedLogProbFunctionBackward" not in our_path
    for a, b in zip(trl_figures, our_figures, strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=1e-5)


def _graph_nodes(node: object) -> set[str]:
    """The names of the autograd nodes a result was computed through."""
    seen: set[str] = set()
    stack = [node]
    visited: set[int] = set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in visited:
            continue
        visited.add(id(current))
        seen.add(type(current).__name__)
        stack.extend(child for child, _ in getattr(current, "next_functions", ()))
    return seen
