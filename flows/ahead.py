"""The work a run does ahead of its stages (`caches_ahead`).

While the flow's main thread runs the data contract (Great Expectations' import and checks,
seconds of one core), the machine's other core has nothing to do. A process forked just before
the flow starts fills the caches the next stages read, in the order they read them: the
tokenized data, then on a CPU-only machine the base model's side of the evaluation (loaded and
prompted before training, as the evaluation stage would after it). The stages then find their
work done, or wait on the cache's lock for the process doing it (`tasks.core.ahead`). If it
still runs when training begins (the base model's answers on a busy machine, say), training
stops it and takes every core; the evaluation stage then computes what it had not finished.

Nothing is decided ahead: the contract still gates training, and a contract that fails ends the
run (and the forked process) as before. On a GPU the base model is not loaded ahead: the device
is training's, and no GPU time is spent before the contract passes."""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

from flows.recipe import Recipe
from tasks.core import settings
from tasks.core.ahead import ahead
from tasks.data.load import expand_source, is_url, load


def _local(source: str) -> bool:
    return not is_url(source) and bool(expand_source(source))


def can_go_ahead(recipe: Recipe) -> bool:
    """Whether the caches can be filled before the flow: local data, and a base model read from
    the machine without a secret (the secret's Prefect block is the flow's to read; a download
    would be made twice)."""
    data = recipe.data
    sources = [data.train] + ([data.eval] if isinstance(data.eval, str) else [])
    model = recipe.base_model
    local_model = model.path.startswith("package:") or Path(model.path).exists()
    return local_model and not model.token_secret and all(_local(s) for s in sources)


def _fill_caches(recipe: Recipe) -> None:
    import torch

    from tasks.evaluation.causal import measure_base_ahead
    from tasks.tokenization.encoding import tokenize

    torch.set_num_threads(1)  # the flow's own work has the other core
    data = load(recipe.data, recipe.train.seed)
    tokenized = tokenize(data, recipe.base_model, recipe.tokenize, recipe.method)
    if recipe.task != "causal-lm" or torch.cuda.is_available() or torch.backends.mps.is_available():
        return  # no model on an accelerator before the contract has passed
    method = recipe.method.model_dump()
    max_length = recipe.tokenize.max_length
    measure_base_ahead(
        recipe.base_model, tokenized, method, max_length, recipe.evaluate, recipe.train.seed
    )


# What the forked process runs, imported before it forks (the flow imports all of it later
# anyway): shared with the forked process, not imported a second time there (on the tiny model
# its own memory fell from 440 MB to 240-270 MB, its work from about 4 s to 1.8 s).
_SHARED = ("datasets", "tasks.tokenization.encoding")
_SHARED_CAUSAL = (  # the base model's evaluation too
    "peft",  # transformers' model classes, accelerate and torch's compiler stack come with it
    "transformers.generation",
    "tasks.evaluation.causal",
    "rouge_score.tokenize",  # the answers' scores
    "tasks.training.causal.runner",
)


def caches_ahead(recipe: Recipe) -> AbstractContextManager[int | None]:
    """While the block runs (the flow), a forked process fills the caches its stages read, when
    it can, a core is spare and `TUNELINE_AHEAD` is not 0."""
    wanted = settings.work_ahead() and can_go_ahead(recipe)
    if wanted:
        causal = _SHARED_CAUSAL if recipe.task == "causal-lm" else ()
        for module in (*_SHARED, *causal):
            importlib.import_module(module)
    return ahead(partial(_fill_caches, recipe), wanted=wanted)
