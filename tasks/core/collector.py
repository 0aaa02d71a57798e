"""The garbage collector's policy for a command that runs a flow and ends (`tuneline run`,
`compare`, `validate`, `plan`).

Such a command imports torch, transformers, Great Expectations, MLflow and Prefect: about a
million objects the cyclic collector tracks and that live until the process ends. CPython runs a
full collection each time the tracked heap has grown by a quarter, and each one walks every
object, so a run paid for walking the same imported modules again and again (2.2 s of a 15 s SFT
command on the tiny model, most of it while validation and training imported their libraries).

`keep_survivors()` makes what survives a full collection permanent (`gc.freeze`): later
collections walk only what is newer. Frozen objects are never collected, so a stage that builds
something large and lets go of it, a model held in reference cycles say, runs inside
`releasing()`: what lives when the block starts is frozen and nothing more is frozen while it
runs, so when it ends one collection walks only what the block made (not the million imported
objects: 0.35 s of every run before) and frees what it left in cycles. Training in this process
runs in it, so the trained model, its optimiser and the trainer are freed before evaluation loads
models, as without the policy. Only commands that end when their flow does install it;
long-running ones (`serve`) keep CPython's defaults.

Before its flow starts, `tuneline run` does little but import (Prefect, MLflow, torch,
transformers, peft, Great Expectations: seconds of the command's one busy thread), and every
collection in that time walks what the imports just made, to find next to nothing to free (3 MB
of 700). Between `pause()` and `resume()` nothing is collected; `resume()` freezes what lives then
(as the work ahead's fork does) and collections start again: the imports took 0.4-1.0 s less
(about 7 s against 7.7-8.3 s on this project's machine)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_installed = False
_frozen_after_collections = True  # False inside `releasing()`


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2 and _frozen_after_collections:
        gc.freeze()


def keep_survivors() -> None:
    """From now on, what survives a full collection is frozen (see the module docstring)."""
    global _installed
    if not _installed:
        gc.callbacks.append(_freeze_after_full_collection)
        _installed = True


_paused = False


def pause() -> None:
    """Collect nothing until `resume()` (see the module docstring): for the imports before a
    command's flow, never around work that makes garbage."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """End `pause()`: what lives now is frozen and collections start again. Nothing happens
    where `pause()` was not called."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


@contextmanager
def paused() -> Iterator[None]:
    """`pause()` while the block runs; `resume()` when it ends, if nothing in it did before."""
    pause()
    try:
        yield
    finally:
        resume()


@contextmanager
def releasing() -> Iterator[None]:
    """What the block makes and leaves in reference cycles is collected when it ends, by one
    collection of what is newer than the block; what survives is frozen. Nothing changes where
    `keep_survivors` was not called."""
    global _frozen_after_collections
    if not _installed or not _frozen_after_collections:  # not installed, or nested
        yield
        return
    gc.freeze()
    _frozen_after_collections = False
    try:
        yield
    finally:
        _frozen_after_collections = True
        gc.collect()  # its own callback freezes the survivors
