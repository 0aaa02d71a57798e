"""How trl's fused LM head runs where its Triton kernels do not (CPU above all).

trl scores a causal LM through its fused head (`trl.trainer.utils.add_fused_lm_head`): per-token
log-probabilities (and entropy, top-1 hits...) of the labelled positions, computed by
`ChunkedLogProbFunction` in vocabulary tiles so that the `[positions, vocab]` logits never exist
whole. On a GPU that is a Triton kernel; elsewhere trl folds each tile with a dozen torch
operations over the tile in the forward pass, recomputes the tile's product in the backward pass
and folds it again. Two things change here, neither what is computed:

- `labelled_positions_only`: only the positions that carry a label are projected (trl does that
  only under Triton, to keep one shape for XLA devices);
- `whole_logits_when_small`: on CPU, where a batch's logits fit in one tile anyway (a small
  vocabulary, or few labelled positions), `whole_log_probs` computes them as trl's fallback does
  on that tile, with the same operations, so the same numbers and gradients, minus what one tile
  makes needless (the backward pass recomputing the product, a one-hot matrix, the masked
  search for the first maximum): the LM head's share of a step halves for the tiny models of
  the benchmarks. Larger logits keep trl's tiles.

`eager_lm_head` applies both for the length of a training run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

# Whole logits up to this many elements ([positions, vocab]; 32 MB in float32): the forward and
# backward passes then hold a few tensors of that size at most, against trl's tile buffer of
# up to 4096 x 32768 elements.
WHOLE_LOGITS_ELEMENTS = 8 * 1024 * 1024

# Devices where a batch's shapes may change from step to step at no cost (nothing is compiled per
# shape, unlike XLA devices).
_EAGER_DEVICES = ("cpu", "cuda", "xpu", "mps")


@contextmanager
def _in_trl_utils(name: str, replacement: Callable[[Any], Any]) -> Iterator[None]:
    """While it lasts, trl's fused-head module (`trl.trainer.utils`) holds
    `replacement(original)` as `name`; a trl without `name` keeps its own behaviour."""
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, name, None)
    if original is None:
        yield
        return
    setattr(trl_utils, name, replacement(original))
    try:
        yield
    finally:
        setattr(trl_utils, name, original)


def labelled_positions_only() -> AbstractContextManager[None]:
    """While it lasts, trl's fused LM head projects only the positions that carry a label.

    trl does that only where its Triton kernels run (CUDA, XPU); on other devices it projects every
    position, prompt and padding included, so that XLA devices see one shape. In eager PyTorch a
    varying shape costs nothing, and in demonstrations most positions are prompt: the loss, its
    gradients and the logged metrics are the same, for a fraction of the LM head's work."""

    def compact(original: Callable[[Any], bool]) -> Callable[[Any], bool]:
        return lambda device: device.type in _EAGER_DEVICES or bool(original(device))

    return _in_trl_utils("_use_triton", compact)


@functools.cache
def whole_log_probs() -> Any:
    """The autograd function below, defined on first use (torch is imported by then, not when
    this module is)."""
    import torch

    class WholeLogProbs(torch.autograd.Function):
        """`ChunkedLogProbFunction` for logits that fit in one tile, as trl's torch fallback
        computes it on that tile (the same product, the same operations on it, so the same
        numbers and gradients), less what one whole tile makes needless: the product is kept
        for the backward pass instead of recomputed, the target is found by `argmax` (its first
        maximum, as trl counts a tie with an earlier token as a miss), multiplications by 1 and
        a one-hot matrix are left out."""

        @staticmethod
        def forward(  # type: ignore[override]
            ctx: Any,
            hidden: Any,
            weight: Any,
            bias: Any,
            targets: Any,
            temperature: float,
            softcap: float | None,
            logit_scale: float,
            outputs: tuple[str, ...],
        ) -> tuple[Any, Any, Any, Any, Any]:
            ctx.set_materialize_grads(False)  # an unused entropy sends no gradient
            tile = torch.mm(hidden, weight.t())
            if bias is not None:
                tile.add_(bias)
            inv_t = 1 / temperature
            z, squash = _transform(tile, logit_scale, softcap, inv_t)
            running_max = z.amax(-1)
            e = torch.exp(z - running_max.unsqueeze(-1))
            sum_exp = e.sum(-1)
            log_z = running_max + torch.log(sum_exp)
            target_logit = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            log_probs = target_logit - log_z
            entropy = log_sum_sq = mean_logits = is_top1 = None
            if "entropy" in outputs:
                entropy = log_z - (e * z).sum(-1) / sum_exp
            if "log_sum_sq_probs" in outputs:
                log_sum_sq = torch.log((e * e).sum(-1)) - 2 * torch.log(sum_exp)
            if "mean_logits" in outputs:
                mean_logits = z.sum(-1) / z.size(-1)
            if "is_top1" in outputs:
                is_top1 = z.argmax(-1) == targets
            ctx.save_for_backward(
                hidden, weight, bias, targets, z, log_z, log_z if entropy is None else entropy
            )
            ctx.scales = (logit_scale, inv_t, squash)
            ctx.mark_non_differentiable(
                *(x for x in (log_sum_sq, mean_logits, is_top1) if x is not None)
            )
            return log_probs, entropy, log_sum_sq, mean_logits, is_top1

        @staticmethod
        def backward(ctx: Any, grad_log_probs: Any, grad_entropy: Any, *_: Any) -> Any:
            hidden, weight, bias, targets, z, log_z, entropy = ctx.saved_tensors
            logit_scale, inv_t, squash = ctx.scales
            log_p = z - log_z.unsqueeze(-1)
            p = torch.exp(log_p)
            grad = torch.zeros_like(z)
            if grad_log_probs is not None:
                # d log p_target / dz_j = 1[j = target] - p_j, written without a one-hot matrix
                rows = torch.arange(z.size(0), device=z.device)
                step = -p
                step[rows, targets] = 1.0 - p[rows, targets]
                grad += grad_log_probs.float().unsqueeze(-1) * step
            if grad_entropy is not None:
                # d entropy / dz_j = -p_j (log p_j + entropy)
                grad -= grad_entropy.float().unsqueeze(-1) * p * (log_p + entropy.unsqueeze(-1))
            if inv_t != 1:
                grad = grad * inv_t
            if squash is not None:
                grad = grad * (1 - squash * squash)
            if logit_scale != 1:
                grad = grad * logit_scale
            needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
            grad_hidden = grad_weight = grad_bias = None
            if needs_hidden:
                grad_hidden = torch.zeros(
                    hidden.shape, device=z.device, dtype=torch.float32
                ).addmm_(grad, weight)
            if needs_weight:
                grad_weight = torch.zeros(
                    weight.shape, device=z.device, dtype=torch.float32
                ).addmm_(grad.t(), hidden)
            if needs_bias:
                grad_bias = grad.sum(dim=0, dtype=torch.float32)
            return grad_hidden, grad_weight, grad_bias, None, None, None, None, None

    return WholeLogProbs


def _transform(tile: Any, logit_scale: float, softcap: float | None, inv_t: float) -> Any:
    """trl's scaling of the logits (scale, soft cap, temperature), skipping multiplications by 1
    (exact either way); also the soft cap's tanh, which its gradient needs."""
    import torch

    z = tile * logit_scale if logit_scale != 1 else tile
    squash = None
    if softcap is not None:
        squash = torch.tanh(z / softcap)
        z = softcap * squash
    return (z * inv_t if inv_t != 1 else z), squash


def _small_enough(hidden: Any, weight: Any) -> bool:
    import torch

    return (
        hidden.device.type == "cpu"
        and hidden.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not hasattr(weight, "ds_id")  # DeepSpeed ZeRO-3 gathers the head for the forward only
        and hidden.size(0) * weight.size(0) <= WHOLE_LOGITS_ELEMENTS
    )


class _WholeOrChunked:
    """Stands in for `ChunkedLogProbFunction` in trl's fused head: its `apply`, same arguments,
    same results; the whole logits where they are small, trl's tiles otherwise."""

    def __init__(self, chunked: Any) -> None:
        self.chunked = chunked

    def apply(
        self,
        hidden: Any,
        weight: Any,
        bias: Any,
        targets: Any,
        temperature: float,
        chunk_size: int,
        softcap: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = ("log_probs",),
    ) -> Any:
        if not _small_enough(hidden, weight):
            return self.chunked.apply(
                hidden,
                weight,
                bias,
                targets,
                temperature,
                chunk_size,
                softcap,
                logit_scale,
                outputs,
            )
        return whole_log_probs().apply(
            hidden, weight, bias, targets, temperature, softcap, logit_scale, outputs
        )


def whole_logits_when_small() -> AbstractContextManager[None]:
    """While it lasts, trl's fused LM head computes small logits whole on CPU (see the module
    docstring)."""
    return _in_trl_utils("_ChunkedLogProbFunction", _WholeOrChunked)


@contextmanager
def eager_lm_head() -> Iterator[None]:
    """Both of this module's changes to trl's fused LM head, for a training run."""
    with labelled_positions_only(), whole_logits_when_small():
        yield
