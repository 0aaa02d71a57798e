"""The garbage collector's policy for a command that runs a flow and ends (`tuneline run`,
`compare`, `validate`, `plan`).

Such a command imports torch, transformers, Great Expectations, MLflow and Prefect: about a
million objects the cyclic collector tracks and that live until the process ends. CPython runs a
full collection each time the tracked heap has grown by a quarter, and each one walks every
object, so a run paid for walking the same imported modules again and again (2.2 s of a 15 s SFT
command on the tiny model, most of it while validation and training imported their libraries).

`keep_survivors()` makes what survives a full collection permanent (`gc.freeze`): later
collections walk only what is newer. Frozen objects are never collected, so where a stage lets go
of something large, a model held in a reference cycle say, `release()` unfreezes, collects
everything once and freezes what is still alive: training in this process calls it when it ends,
so the trained model, its optimiser and the trainer are freed before evaluation loads models, as
without the policy. Only commands that end when their flow does install it; long-running ones
(`serve`) keep CPython's defaults."""

from __future__ import annotations

import gc
from typing import Any

_installed = False


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def keep_survivors() -> None:
    """From now on, what survives a full collection is frozen (see the module docstring)."""
    global _installed
    if not _installed:
        gc.callbacks.append(_freeze_after_full_collection)
        _installed = True


def release() -> None:
    """Collect everything once, frozen objects included, and freeze what survives; nothing to do
    where `keep_survivors` was not called."""
    if not _installed:
        return
    gc.unfreeze()
    gc.collect()  # its own callback freezes the survivors
