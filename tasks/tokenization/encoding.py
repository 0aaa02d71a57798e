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
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import settings
from tasks.core.atomic import staged
from tasks.core.errors import DataError
from tasks.core.locks import file_lock
from tasks.data.load import DataRef
from tasks.models.base import BaseModelSpec, folder_digest, load_tokenizer, resolve_model_path


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


def cache_key(
    data: DataRef, model: BaseModelSpec, spec: TokenizeSpec, rendering: dict[str, Any] | None = None
) -> str:
    resolved = resolve_model_path(model)
    tokenizer_id = (
        folder_digest(resolved) if Path(resolved).is_dir() else f"{resolved}@{model.revision}"
    )
    payload = [data.fingerprint, tokenizer_id, spec.max_length, settings.code_version(), rendering]
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


def rendering_of(method: Any) -> dict[str, Any] | None:
    """What decides how a causal-LM method's rows are rendered (part of the cache key)."""
    if method is None:
        return None
    from tasks.training import METHODS

    entry = METHODS[method.name]
    if entry.objective == "classify":
        return None
    return {"objective": entry.objective, "template": getattr(method, "prompt_template", None)}


def tokenize(
    data: DataRef, model: BaseModelSpec, spec: TokenizeSpec, method: Any = None
) -> TokenizedRef:
    """Tokenize both splits (or reuse the cached result for the same key). One process tokenizes
    a key at a time, the others wait for its result (a run's own `flows.ahead` process may be
    tokenizing it)."""
    rendering = rendering_of(method)
    key = cache_key(data, model, spec, rendering)
    target = settings.cache_dir("tokenized") / key
    found = _kept(target, key)
    if found is not None:
        return found
    with file_lock(f"tokenized-{key}"):
        found = _kept(target, key)
        if found is not None:
            return found
        return _tokenize(data, model, spec, rendering, target, key)


def _kept(target: Path, key: str) -> TokenizedRef | None:
    if not (target / "stats.json").exists():
        return None
    return TokenizedRef(str(target), key, json.loads((target / "stats.json").read_text()), True)


def _tokenize(
    data: DataRef,
    model: BaseModelSpec,
    spec: TokenizeSpec,
    rendering: dict[str, Any] | None,
    target: Path,
    key: str,
) -> TokenizedRef:
    import datasets

    tokenizer = load_tokenizer(model)
    datasets.disable_progress_bars()
    if rendering is not None:
        return _tokenize_causal(data, tokenizer, spec, rendering, target, key)
    if data.format != "classification":
        raise DataError(
            f"data.format {data.format}: classification methods read `{{text, label}}` rows; "
            "use task: causal-lm with a causal method for this format"
        )
    label_ids = {label: i for i, label in enumerate(data.labels)}
    encode = _classification_batch(tokenizer, label_ids, spec.max_length)
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


def _shared_length(a: list[int], b: list[int]) -> int:
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return shared


def _lm_batch(tokenizer: Any) -> Any:
    """Token ids of `text` (corpus) or `prompt` + `completion` with a completion mask, each
    sequence ending in EOS; the prompt/completion boundary is where the two tokenizations part
    (as trl computes it), so merges across the boundary stay correct."""
    eos = tokenizer.eos_token_id

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        if "text" in batch:
            ids = [x + [eos] for x in tokenizer(batch["text"], verbose=False)["input_ids"]]
            return {"input_ids": ids, "full_length": [len(x) for x in ids]}
        prompts = tokenizer(batch["prompt"], verbose=False)["input_ids"]
        joined = [p + c for p, c in zip(batch["prompt"], batch["completion"], strict=True)]
        fulls = [x + [eos] for x in tokenizer(joined, verbose=False)["input_ids"]]
        masks = []
        for prompt_ids, full_ids in zip(prompts, fulls, strict=True):
            shared = _shared_length(prompt_ids, full_ids)
            masks.append([0] * shared + [1] * (len(full_ids) - shared))
        return {
            "input_ids": fulls,
            "completion_mask": masks,
            "full_length": [len(x) for x in fulls],
        }

    return encode


def _drop_cut_completions(encoded: Any, max_length: int, split: str) -> tuple[Any, int]:
    """Drop demonstrations whose completion starts beyond `max_length`: truncated, they would
    train on nothing. None left is a user error that says what to change."""
    keep = [i for i, mask in enumerate(encoded["completion_mask"]) if any(mask[:max_length])]
    dropped = len(encoded) - len(keep)
    if dropped and not keep and split == "train":
        raise DataError(
            f"tokenize.max_length {max_length}: every training prompt is at least that long, so "
            "no completion token would be trained on; raise tokenize.max_length (the token_length "
            "check of the contract report shows the lengths)"
        )
    return (encoded.select(keep) if dropped else encoded), dropped


def _pair_lengths(tokenizer: Any) -> Any:
    def measure(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [p + c for p, c in zip(batch["prompt"], batch["chosen"], strict=True)]
        return {"full_length": [len(x) for x in tokenizer(texts, verbose=False)["input_ids"]]}

    return measure


def _pairs(tokenizer: Any) -> Any:
    """The length statistics' `full_length` (prompt + chosen), and the pairs' token ids as trl's
    DPO trainer makes them from text rows (`DPOTrainer._prepare_dataset`): EOS written after each
    answer that does not end with it, prompt + answer tokenized whole, the prompt being what both
    share with the prompt tokenized alone. Here they are made in batches, once per data
    fingerprint (and by the run's process ahead), where trl tokenizes row by row at every run;
    `tasks.training.causal.dpo` hands them to trl after checking one row against trl's own."""
    from tasks.models.prompts import PAIR_IDS

    measure = _pair_lengths(tokenizer)
    eos = tokenizer.eos_token

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        out = measure(batch)
        if not eos:
            return out  # trl's own way then (it needs an EOS token)

        def ended(text: str) -> str:
            return text if text.endswith(eos) else text + eos

        prompts = batch["prompt"]
        prompt_ids = tokenizer(prompts, verbose=False)["input_ids"]
        ids = {}
        for side in ("chosen", "rejected"):
            joined = [p + ended(a) for p, a in zip(prompts, batch[side], strict=True)]
            ids[side] = tokenizer(joined, verbose=False)["input_ids"]
        rows: dict[str, list[Any]] = {name: [] for name in PAIR_IDS}  # trl's column names
        for prompt, chosen, rejected in zip(
            prompt_ids, ids["chosen"], ids["rejected"], strict=True
        ):
            cut = min(_shared_length(prompt, chosen), _shared_length(prompt, rejected))
            rows["prompt_ids"].append(prompt[:cut])
            rows["chosen_ids"].append(chosen[cut:])
            rows["rejected_ids"].append(rejected[cut:])
        return {**out, **rows}

    return encode


def _tokenize_causal(
    data: DataRef,
    tokenizer: Any,
    spec: TokenizeSpec,
    rendering: dict[str, Any],
    target: Path,
    key: str,
) -> TokenizedRef:
    """Render rows for the method's objective; token ids for language modelling (trl packs
    them), text plus length statistics for reward models and RL trainers (trl tokenizes them),
    text and trl's pair ids for preference methods."""
    import datasets
    import pandas as pd

    from tasks.models import prompts as render

    template, objective_name = rendering["template"], rendering["objective"]
    with staged(target, replace=False) as tmp:
        for split, path in (("train", data.train_path), ("eval", data.eval_path)):
            frame = pd.read_parquet(path)
            if objective_name == "preference":
                rows = render.render_preference(frame)
                measure = _pairs(tokenizer)
            elif objective_name == "score":
                rows = render.render_preference(frame)
                measure = _pair_lengths(tokenizer)
            elif objective_name == "rl":
                rows = render.render_prompts(frame, data.format, tokenizer, template)
                measure = _lm_batch(tokenizer)
            else:
                rows = render.render_lm(frame, data.format, tokenizer, template)
                measure = _lm_batch(tokenizer)
            table = datasets.Dataset.from_pandas(rows, preserve_index=False)
            encoded = table.map(measure, batched=True, batch_size=1000, keep_in_memory=True)
            dropped = 0
            if "completion_mask" in encoded.column_names:
                encoded, dropped = _drop_cut_completions(encoded, spec.max_length, split)
            encoded.save_to_disk(str(tmp / split))
            if split == "train":
                stats = length_stats(np.asarray(encoded["full_length"]), spec.max_length)
                stats["dropped_rows"] = dropped
        (tmp / "stats.json").write_text(json.dumps(stats))
    return TokenizedRef(str(target), key, stats, False)


def load_split(ref: TokenizedRef, split: str) -> Any:
    import datasets

    folder = Path(ref.path) / split
    if not list(folder.glob("*.arrow")):
        # datasets cannot load a saved split with no rows: rebuild it, empty, from its features
        info = json.loads((folder / "dataset_info.json").read_text())
        features = datasets.Features.from_dict(info["features"])
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.load_from_disk(str(folder))
