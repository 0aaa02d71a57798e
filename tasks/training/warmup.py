"""Timing the first optimiser steps of a training run, and what they say about the whole run.

Every gradient-step trainer carries a `StepTimer`: it notes when each of the first
`WARMUP_STEPS` optimiser steps ends, how many real tokens each took and the peak memory so far,
and nothing after that. `tuneline plan` trains exactly those steps and extrapolates; `tuneline
run` extrapolates from its own first steps (nothing trained twice) and records the estimate
beside what the run then took, so the estimate can be judged. The extrapolation is a pure
function (`estimate_train_seconds`), the same for both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from tasks.training.base import PeakMemory

# The first step is discarded (optimiser state allocated, kernels chosen, the longest batch when
# batches are grouped by length); the next three are timed.
WARMUP_STEPS = 4


class StepTimer(TrainerCallback):  # type: ignore[misc]
    """Wall time and real tokens of each of the first `steps` optimiser steps (held-out loss
    evaluations in between subtracted), batches per epoch, and the peak memory at the last step
    and after the first held-out loss evaluation (the first steps hold the optimiser state and
    the longest batch; an evaluation adds its own activations)."""

    def __init__(self, tokens: Callable[[], int], steps: int = WARMUP_STEPS) -> None:
        self.tokens = tokens
        self.steps = steps
        self.batches_per_epoch = 0
        self.ends: list[float] = []
        self.token_marks: list[int] = []
        self.evaluating = 0.0
        self.peak_rss_mb = 0.0
        self.peak_gpu_mb = 0.0
        self.evaluated = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        loader = kwargs.get("train_dataloader")
        try:
            self.batches_per_epoch = len(loader) if loader is not None else 0
        except TypeError:  # an iterable without a length
            self.batches_per_epoch = 0
        self.ends = [time.perf_counter()]
        self.token_marks = [self.tokens()]

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if len(self.ends) <= self.steps:
            self.evaluating += float((kwargs.get("metrics") or {}).get("eval_runtime", 0.0))
        if not self.evaluated:  # what a held-out loss evaluation adds counts, as in the run
            self.evaluated = True
            self._note_memory()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.ends or len(self.ends) > self.steps:
            return
        now = time.perf_counter()
        self.ends.append(now - self.evaluating)  # an evaluation is not a training step
        self.token_marks.append(self.tokens())
        if len(self.ends) == self.steps + 1:
            self._note_memory()

    def _note_memory(self) -> None:
        memory = PeakMemory.active
        if memory is not None:
            self.peak_rss_mb = max(self.peak_rss_mb, memory.peak_rss_mb)
            self.peak_gpu_mb = max(self.peak_gpu_mb, memory.current_gpu_peak_mb())

    def figures(self) -> dict[str, float]:
        """The warm-up figures (empty when the run took no step): `warmup_first_step_seconds`
        (start of training to the end of step 1), `warmup_step_seconds` and
        `warmup_step_tokens` (means over the timed steps), `warmup_steps_timed`,
        `warmup_batches_per_epoch`, `warmup_peak_rss_mb`, `warmup_peak_gpu_mb`."""
        if len(self.ends) < 2:
            return {}
        durations = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        tokens = [b - a for a, b in zip(self.token_marks, self.token_marks[1:], strict=False)]
        timed = durations[1:] or durations[:1]
        timed_tokens = tokens[1:] or tokens[:1]
        return {
            "warmup_first_step_seconds": durations[0],
            "warmup_step_seconds": sum(timed) / len(timed),
            "warmup_step_tokens": sum(timed_tokens) / len(timed_tokens),
            "warmup_steps_timed": float(len(timed)),
            "warmup_batches_per_epoch": float(self.batches_per_epoch),
            "warmup_peak_rss_mb": self.peak_rss_mb,
            "warmup_peak_gpu_mb": self.peak_gpu_mb,
        }


def optimizer_steps(
    batches_per_epoch: int, accumulation: int, epochs: float, max_steps: int
) -> int:
    """Optimiser steps of a run, as `transformers.Trainer` counts them: `max_steps` when set,
    else `ceil(epochs * updates per epoch)`, an epoch's last partial accumulation counting as a
    step."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(
        batches_per_epoch // accumulation + int(batches_per_epoch % accumulation > 0), 1
    )
    return math.ceil(epochs * per_epoch)


def batches_per_epoch(rows: int, batch_size: int) -> int:
    """Training batches in one pass over `rows` rows (the last may be short)."""
    return max(1, math.ceil(rows / batch_size)) if rows else 0


# Token counts explain some of a step's time, not all of it (the optimiser update, the Python
# around each step): a step with twice the tokens is taken to cost 1 + TOKEN_SHARE times as much.
TOKEN_SHARE = 1.0


def estimate_train_seconds(
    warmup: dict[str, float], steps: int, tokens_per_step: float | None = None
) -> float | None:
    """Training time of `steps` optimiser steps from the warm-up figures (`StepTimer.figures`):
    the first step as measured, every further step at the timed steps' mean, scaled by the
    tokens a step of the whole run takes against those the timed steps took (when both are
    known; batches grouped by length start with the longest). None without warm-up figures."""
    if not warmup or steps <= 0:
        return None
    per_step = warmup["warmup_step_seconds"]
    measured = warmup.get("warmup_step_tokens", 0.0)
    if tokens_per_step and measured > 0:
        ratio = min(max(tokens_per_step / measured, 0.25), 4.0)
        per_step *= 1.0 + TOKEN_SHARE * (ratio - 1.0)
    return warmup["warmup_first_step_seconds"] + per_step * (steps - 1)


def relative_error(estimate: float | None, actual: float | None) -> float | None:
    """(estimate - actual) / actual: +0.25 is an estimate 25% too high."""
    if estimate is None or not actual:
        return None
    return (estimate - actual) / actual
