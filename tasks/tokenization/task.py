"""The tokenization stage's Prefect task: tokenize the loaded data (`tasks.tokenization.encoding`)
and log the length figures and histogram to the run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import task

from tasks.core import plots
from tasks.data.load import DataRef
from tasks.models.base import BaseModelSpec
from tasks.services import tracking
from tasks.services.secret_blocks import with_token
from tasks.tokenization.encoding import TokenizedRef, TokenizeSpec, load_split, tokenize


@task(name="tokenize_dataset", log_prints=False)  # dill prints disassembly via print()
def tokenize_dataset(
    data: DataRef,
    model: BaseModelSpec,
    spec: TokenizeSpec,
    run_id: str | None = None,
    method: Any = None,
) -> TokenizedRef:
    """Tokenize the loaded data with the base model's tokenizer (cached by fingerprint)."""
    ref = tokenize(data, with_token(model), spec, method)
    if run_id:
        tracking.log_metrics(run_id, {f"tokens_{k}": v for k, v in ref.stats.items()})
        tracking.log_params(run_id, {"tokenized_cache_hit": ref.from_cache})
        lengths = list(load_split(ref, "train")["full_length"])
        with tempfile.TemporaryDirectory() as tmp:
            picture = plots.length_histogram(
                lengths, spec.max_length, Path(tmp) / "token_lengths.png"
            )
            tracking.log_file(run_id, picture, "plots")
    return ref
