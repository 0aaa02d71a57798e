"""Tokenization with the base model's tokenizer, cached by data fingerprint + tokenizer + settings
+ code version, with length statistics (the share that would be truncated included)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks import settings
from tasks.artifacts import staged
from tasks.data import DataRef
from tasks.models import BaseModelSpec, folder_digest, load_tokenizer, resolve_model_path


class TokenizeSpec(BaseModel):
    """How text becomes token ids."""

    model_config = ConfigDict(extra="forbid")

    max_length: int = Field(
        default=256, ge=8, le=32768, description="Longest sequence in tokens; longer is truncated."
    )
    num_proc: int | None = Field(
        default=None, ge=1, description="Worker processes for tokenization (default: by size)."
    )


@dataclass(frozen=True)
class TokenizedRef:
    """Tokenized train/eval splits saved on disk, and their length statistics."""

    path: str
    key: str
    stats: dict[str, float]
    from_cache: bool


def cache_key(data: DataRef, model: BaseModelSpec, spec: TokenizeSpec) -> str:
    resolved = resolve_model_path(model)
    tokenizer_id = (
        folder_digest(resolved) if Path(resolved).is_dir() else f"{resolved}@{model.revision}"
    )
    payload = [data.fingerprint, tokenizer_id, spec.max_length, settings.code_version()]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def length_stats(lengths: np.ndarray, max_length: int) -> dict[str, float]:
    """Token-length statistics of untruncated lengths, against the truncation limit."""
    if lengths.size == 0:
        return {"count": 0}
    return {
        "count": int(lengths.size),
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated_share": float((lengths > max_length).mean()),
        "max_length": max_length,
    }


def _classification_batch(tokenizer: Any, label_ids: dict[str, int], max_length: int) -> Any:
    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        # One untruncated pass gives the true lengths; only the over-long rows are encoded again
        # with truncation (so special tokens stay in place).
        out = dict(tokenizer(batch["text"], truncation=False, verbose=False))
        full_length = [len(ids) for ids in out["input_ids"]]
        long_rows = [i for i, n in enumerate(full_length) if n > max_length]
        if long_rows:
            cut = tokenizer(
                [batch["text"][i] for i in long_rows], truncation=True, max_length=max_length
            )
            for j, i in enumerate(long_rows):
                for name in out:
                    out[name][i] = cut[name][j]
        out["labels"] = [label_ids.get(str(lab), -1) for lab in batch["label"]]
        out["length"] = [len(ids) for ids in out["input_ids"]]
        out["full_length"] = full_length
        return out

    return encode


def tokenize(data: DataRef, model: BaseModelSpec, spec: TokenizeSpec) -> TokenizedRef:
    """Tokenize both splits (or reuse the cached result for the same key)."""
    import datasets

    key = cache_key(data, model, spec)
    target = settings.cache_dir("tokenized") / key
    if (target / "stats.json").exists():
        stats = json.loads((target / "stats.json").read_text())
        return TokenizedRef(str(target), key, stats, True)
    tokenizer = load_tokenizer(model)
    if data.format != "classification":
        raise NotImplementedError(f"tokenization for format '{data.format}'")
    label_ids = {label: i for i, label in enumerate(data.labels)}
    encode = _classification_batch(tokenizer, label_ids, spec.max_length)
    datasets.disable_progress_bars()
    with staged(target, replace=False) as tmp:
        for split, path in (("train", data.train_path), ("eval", data.eval_path)):
            frame = datasets.Dataset.from_parquet(path, keep_in_memory=True)
            present = [i for i, t in enumerate(frame["text"]) if t is not None]
            if len(present) != len(frame):
                frame = frame.select(present)
            rows = len(frame)
            num_proc = spec.num_proc or (min(os.cpu_count() or 1, 4) if rows > 50_000 else None)
            encoded = frame.map(
                encode,
                batched=True,
                batch_size=1000,
                num_proc=num_proc,
                remove_columns=[c for c in frame.column_names if c != "text"],
                keep_in_memory=True,
            )
            encoded.save_to_disk(str(tmp / split))
            if split == "train":
                stats = length_stats(np.asarray(encoded["full_length"]), spec.max_length)
        (tmp / "stats.json").write_text(json.dumps(stats))
    return TokenizedRef(str(target), key, stats, False)


def load_split(ref: TokenizedRef, split: str) -> Any:
    import datasets

    return datasets.load_from_disk(str(Path(ref.path) / split))


@task(name="tokenize_dataset")
def tokenize_dataset(
    data: DataRef, model: BaseModelSpec, spec: TokenizeSpec, run_id: str | None = None
) -> TokenizedRef:
    """Tokenize the loaded data with the base model's tokenizer (cached by fingerprint)."""
    ref = tokenize(data, model, spec)
    if run_id:
        from tasks import tracking

        tracking.log_metrics(run_id, {f"tokens_{k}": v for k, v in ref.stats.items()})
        tracking.log_params(run_id, {"tokenized_cache_hit": ref.from_cache})
        import tempfile

        from tasks import plots

        lengths = list(load_split(ref, "train")["full_length"])
        with tempfile.TemporaryDirectory() as tmp:
            picture = plots.length_histogram(
                lengths, spec.max_length, Path(tmp) / "token_lengths.png"
            )
            tracking.log_file(run_id, picture, "plots")
    return ref
