"""Evaluation of causal-LM methods on the held-out split, always beside the base model:

- every language-modelling method: held-out loss and perplexity (completion tokens only for
  demonstrations);
- sft: exact match and ROUGE-L of greedy generations against the references, for the fine-tuned
  model, the base, and the base prompted with k training examples (in-context learning, the
  cheaper alternative fine-tuning has to beat), plus a table of sample generations;
- dpo, kto and reward: preference accuracy (chosen scored above rejected) and mean margin; a
  preference-tuned policy scores an answer by its log-probability given the prompt, a reward model by its score;
- rlhf: mean reward of the policy's greedy answers under the recipe's reward model.

Beside the figures, every eval row's own values for both models (`eval_rows.jsonl`: its token
loss, exact match and ROUGE-L, preference margin or reward, and the greedy answer), which the
promotion gate pairs row by row with the champion's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect.artifacts import create_markdown_artifact

from tasks.core import settings
from tasks.core.locks import file_lock
from tasks.core.promotion import row_key, unique_keys
from tasks.evaluation.classifier import (
    EvalResult,
    EvaluateSpec,
    before_after_markdown,
    samples_markdown,
)
from tasks.models import artifacts
from tasks.models import base as models
from tasks.models.base import BaseModelSpec
from tasks.models.inference import END_OF_TURN, generate, reward_scores, token_logprobs
from tasks.services import tracking
from tasks.tokenization.encoding import TokenizedRef, load_split


def _plain(tokenizer: Any, text: str) -> str:
    """A reference as a reader sees it: template tokens (`<|im_end|>`...) removed."""
    for token in [*tokenizer.all_special_tokens, *END_OF_TURN]:
        text = text.replace(token, "")
    return text.strip()


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!?")


def _common_subsequence(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (one row of the table kept)."""
    if len(b) > len(a):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0  # the previous row's value one column to the left
        for j, other in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F1 as rouge_score's `RougeScorer(["rougeL"])` gives it: its tokenizer and its
    F-measure around the longest common subsequence. The scorer's own module is not imported: it
    imports nltk (for a stemmer ROUGE-L without stemming never uses), and with it scikit-learn and
    most of SciPy, about 0.5 s and 30 MB of every causal-LM run."""
    from rouge_score import scoring, tokenize

    target = tokenize.tokenize(reference, None)
    predicted = tokenize.tokenize(prediction, None)
    if not target or not predicted:
        return 0.0
    common = _common_subsequence(target, predicted)
    return float(scoring.fmeasure(common / len(predicted), common / len(target)))


def text_rows(predictions: list[str], references: list[str]) -> list[dict[str, Any]]:
    """Per row: exact match (after lower-casing, whitespace and final punctuation), ROUGE-L F1
    and the answer itself."""
    return [
        {
            "exact_match": float(normalise(p) == normalise(r)),
            "rougeL": rouge_l(r, p),
            "answer": p,
        }
        for p, r in zip(predictions, references, strict=True)
    ]


def text_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match and ROUGE-L F1, averaged over the rows."""
    rows = text_rows(predictions, references)
    if not rows:
        return {}
    return {
        "exact_match": float(np.mean([r["exact_match"] for r in rows])),
        "rougeL": float(np.mean([r["rougeL"] for r in rows])),
    }


def loss_figures(pairs: list[tuple[float, int]]) -> dict[str, float]:
    """Mean token loss and perplexity from per-row (log-probability sum, token count)."""
    total = sum(c for _, c in pairs)
    if not total:
        return {}
    loss = -sum(s for s, _ in pairs) / total
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def loss_rows(pairs: list[tuple[float, int]]) -> list[dict[str, Any]]:
    return [{"loss_sum": -s, "tokens": c} for s, c in pairs]


def lm_pairs(model: Any, tokenizer: Any, split: Any, max_length: int, batch: int) -> list[Any]:
    """Per eval row: (log-probability of its scored tokens, their count): completion tokens when
    the rows are demonstrations, every token of a corpus."""
    if len(split) == 0:
        return []
    ids = [list(r)[:max_length] for r in split["input_ids"]]
    if "completion_mask" in split.column_names:
        scored = [list(m)[:max_length] for m in split["completion_mask"]]
    else:
        scored = [[1] * len(r) for r in ids]
    return token_logprobs(model, ids, scored, tokenizer.pad_token_id, batch)


def row_keys(split: Any) -> list[str]:
    """Each eval row's identity: its text fields, or its tokens for a corpus."""
    fields = [c for c in ("prompt", "completion", "chosen", "rejected") if c in split.column_names]
    if fields:
        columns = [split[c] for c in fields]
        return unique_keys([row_key(*row) for row in zip(*columns, strict=True)])
    return unique_keys([row_key(list(ids)) for ids in split["input_ids"]])


def preference_figures(chosen: list[float], rejected: list[float]) -> dict[str, float]:
    margins = np.asarray(chosen) - np.asarray(rejected)
    if margins.size == 0:
        return {}
    return {
        "preference_accuracy": float((margins > 0).mean()),
        "reward_margin": float(margins.mean()),
    }


def completion_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], answers: list[str], max_length: int, batch: int
) -> list[tuple[float, int]]:
    """Log-probability of each answer given its prompt (the policy's preference score)."""
    ids, scored = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        head = tokenizer(prompt, verbose=False)["input_ids"]
        full = tokenizer(prompt + answer, verbose=False)["input_ids"] + [tokenizer.eos_token_id]
        shared = next(
            (k for k, (a, b) in enumerate(zip(head, full, strict=False)) if a != b), len(head)
        )
        ids.append(full[-max_length:])
        scored.append(([0] * shared + [1] * (len(full) - shared))[-max_length:])
    return token_logprobs(model, ids, scored, tokenizer.pad_token_id, batch)


# -- per objective ---------------------------------------------------------------------------------


def _subset(split: Any, rows: int) -> Any:
    return split.select(range(min(len(split), rows)))


def _icl_prompts(train: Any, prompts: list[str], shots: int, seed: int) -> list[str]:
    """Each prompt preceded by `shots` training demonstrations (drawn once, seeded)."""
    rng = random.Random(seed)
    picked = rng.sample(range(len(train)), min(shots, len(train)))
    context = "".join(f"{train[i]['prompt']}{train[i]['completion']}\n\n" for i in picked)
    return [context + p for p in prompts]


def _generation_figures(
    model: Any,
    tokenizer: Any,
    tokenized: TokenizedRef,
    held: Any,
    max_length: int,
    spec: EvaluateSpec,
    seed: int,
    in_context: bool,
) -> Side:
    """Generations from the `held` rows scored against their references (and, for the base,
    the same base prompted with training demonstrations)."""
    prompts = list(held["prompt"])
    refs = [_plain(tokenizer, c) for c in held["completion"]]
    generated = generate(
        model, tokenizer, prompts, spec.max_new_tokens, max_length, spec.batch_size
    )
    side = Side(
        text_scores(generated, refs), text_rows(generated, refs), outputs={"answer": generated}
    )
    if in_context and spec.icl_shots:
        shots = _icl_prompts(load_split(tokenized, "train"), prompts, spec.icl_shots, seed)
        icl_out = generate(
            model, tokenizer, shots, spec.max_new_tokens, max_length, spec.batch_size
        )
        side.baselines[f"base + {spec.icl_shots}-shot prompt"] = text_scores(icl_out, refs)
        side.outputs["in_context"] = icl_out
    return side


def _pair_figures(
    model: Any, tokenizer: Any, held: Any, objective: str, max_length: int, batch: int
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Preference accuracy and margin (and the chosen answers' loss, for a policy), with each
    pair's own margin (and loss)."""
    prompts, chosen, rejected = list(held["prompt"]), list(held["chosen"]), list(held["rejected"])
    if objective == "score":
        good = reward_scores(
            model,
            tokenizer,
            [p + c for p, c in zip(prompts, chosen, strict=True)],
            max_length,
            batch,
        )
        bad = reward_scores(
            model,
            tokenizer,
            [p + r for p, r in zip(prompts, rejected, strict=True)],
            max_length,
            batch,
        )
        return preference_figures(good, bad), [
            {"margin": g - b} for g, b in zip(good, bad, strict=True)
        ]
    chosen_lp = completion_logprobs(model, tokenizer, prompts, chosen, max_length, batch)
    rejected_lp = completion_logprobs(model, tokenizer, prompts, rejected, max_length, batch)
    figures = preference_figures([lp for lp, _ in chosen_lp], [lp for lp, _ in rejected_lp])
    figures.update(loss_figures(chosen_lp))  # held-out loss of the chosen answers
    rows = [
        {"margin": c - r, **loss}
        for (c, _), (r, _), loss in zip(chosen_lp, rejected_lp, loss_rows(chosen_lp), strict=True)
    ]
    return figures, rows


def _rl_figures(
    model: Any,
    tokenizer: Any,
    held: Any,
    reward_model: str,
    method: dict[str, Any],
    max_length: int,
    spec: EvaluateSpec,
) -> tuple[float, list[str], list[float]]:
    from tasks.models.reward_models import load_reward_model

    scorer, scorer_tokenizer = load_reward_model(reward_model)
    prompts = list(held["prompt"])
    answers = generate(
        model, tokenizer, prompts, int(method["max_completion_length"]), max_length, spec.batch_size
    )
    scores = reward_scores(
        scorer,
        scorer_tokenizer,
        [p + a for p, a in zip(prompts, answers, strict=True)],
        max_length,
        spec.batch_size,
    )
    return float(np.mean(scores)) if scores else 0.0, answers, scores


@dataclass
class Side:
    """What one model (the fine-tuned one, or the base) measured on the eval set: its metrics,
    its per-row values, other baselines measured with it, and its outputs for the sample table."""

    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, list[str]] = field(default_factory=dict)


def measure(
    model: Any,
    tokenizer: Any,
    tokenized: TokenizedRef,
    held_all: Any,
    objective: str,
    method: dict[str, Any],
    max_length: int,
    spec: EvaluateSpec,
    seed: int,
    is_base: bool,
) -> Side:
    """Everything the objective measures on one model, on the eval split `held_all`."""
    held = _subset(held_all, spec.generation_rows)
    if objective == "lm":
        pairs = lm_pairs(model, tokenizer, held_all, max_length, spec.batch_size)
        side = Side(loss_figures(pairs), loss_rows(pairs))
        if "completion" in held_all.column_names:
            text = _generation_figures(
                model, tokenizer, tokenized, held, max_length, spec, seed, in_context=is_base
            )
            side.metrics.update(text.metrics)
            side.rows = _merge(side.rows, text.rows)
            side.baselines, side.outputs = text.baselines, text.outputs
        return side
    if objective in ("preference", "score"):
        return Side(*_pair_figures(model, tokenizer, held, objective, max_length, spec.batch_size))
    reward, answers, scores = _rl_figures(
        model, tokenizer, held, method["reward_model"], method, max_length, spec
    )
    rows = [{"reward": s, "answer": a} for s, a in zip(scores, answers, strict=True)]
    return Side({"mean_reward": reward}, rows, outputs={"answer": answers})


def base_side(
    base: BaseModelSpec,
    tokenizer: Any,
    tokenized: TokenizedRef,
    held_all: Any,
    objective: str,
    method: dict[str, Any],
    max_length: int,
    spec: EvaluateSpec,
    seed: int,
) -> Side:
    """The base model's side, measured once per base model, eval data and settings: every run
    of a recipe (a scheduled retrain, each method `compare` tries) judges against the same
    base, so its figures are kept under the cache (greedy decoding: the same every time)."""
    from tasks.training.causal.config import CausalMethod
    from tasks.training.causal.runner import load_base, load_tokenizer

    def measured() -> Side:
        weights = CausalMethod(name=method["name"], weights="full")  # the base, unquantized
        model = load_base(base, weights, load_tokenizer(base), seed)
        model.eval()
        return measure(
            model, tokenizer, tokenized, held_all, objective, method, max_length, spec, seed, True
        )

    key = _base_key(base, tokenized, held_all, objective, max_length, spec, seed)
    if key is None:
        return measured()
    kept = settings.cache_dir("base-eval") / f"{key}.json"
    # one process measures a key at a time, the others read its figures (a run's own
    # `flows.ahead` process may be measuring them)
    with file_lock(f"base-eval-{key}"):
        if kept.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError):
                return Side(**json.loads(kept.read_text()))
        side = measured()
        staging = kept.with_name(f".{kept.name}.{os.getpid()}")
        staging.write_text(json.dumps(asdict(side)))
        os.replace(staging, kept)  # a reader sees the whole file or none
    return side


def measure_base_ahead(
    base: BaseModelSpec,
    tokenized: TokenizedRef,
    method: dict[str, Any],
    max_length: int,
    spec: EvaluateSpec,
    seed: int,
) -> None:
    """The base model's side as `evaluate_causal` will ask for it, measured before training and
    kept (for `flows.ahead`): the same rows, objective, settings and tokenizer (the artifact's is
    the base's, with the same pad token). Nothing when the base is not compared or its figures
    are not kept."""
    from tasks.training import METHODS
    from tasks.training.causal.runner import load_tokenizer

    objective = METHODS[method["name"]].objective
    if not spec.compare_base or objective == "rl":
        return
    held_all = load_split(tokenized, "eval")
    base_side(
        base, load_tokenizer(base), tokenized, held_all, objective, method, max_length, spec, seed
    )


def _base_key(
    base: BaseModelSpec,
    tokenized: TokenizedRef,
    held: Any,
    objective: str,
    max_length: int,
    spec: EvaluateSpec,
    seed: int,
) -> str | None:
    """What the base model's figures depend on; None when they may change between runs (a hub
    model without a pinned revision; RL's reward model, named by an alias that moves)."""
    import torch
    import transformers

    ref = models.reference(base)
    if objective == "rl" or (ref["kind"] == "hub" and not base.revision):
        return None
    digest = hashlib.sha256()
    for column in sorted(held.column_names):  # the eval rows as tokenized and rendered
        digest.update(column.encode())
        digest.update(json.dumps(list(held[column])).encode())
    shots: list[str] = []
    if objective == "lm" and spec.icl_shots and "completion" in held.column_names:
        train = load_split(tokenized, "train")  # the demonstrations the base is prompted with
        shots = _icl_prompts(train, [""], spec.icl_shots, seed)
    payload = [
        digest.hexdigest(),
        shots,
        ref,
        objective,
        max_length,
        spec.model_dump(mode="json"),
        seed,
        settings.code_version(),
        torch.__version__,
        transformers.__version__,
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def evaluate_causal(
    artifact: str,
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    seed: int,
    out_dir: Path,
) -> EvalResult:
    """Evaluate the trained causal-LM artifact and (with `compare_base`) its base model."""
    model, tokenizer, manifest = artifacts.load_causal(artifact)
    objective = manifest["objective"]
    max_length = int(manifest["max_length"])
    method = manifest["method"]
    held_all = load_split(tokenized, "eval")
    tuned = measure(
        model, tokenizer, tokenized, held_all, objective, method, max_length, spec, seed, False
    )
    reference = None
    if spec.compare_base:
        reference = base_side(
            base, tokenizer, tokenized, held_all, objective, method, max_length, spec, seed
        )
    samples = _samples(held_all, spec, tokenizer, objective, tuned, reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "eval_samples.jsonl"
    with table.open("w") as handle:
        for row in samples:
            handle.write(json.dumps(row) + "\n")
    per_row = out_dir / "eval_rows.jsonl"
    write_rows(
        per_row, row_keys(held_all), tuned.rows, reference.rows if reference is not None else None
    )
    return EvalResult(
        tuned.metrics,
        reference.metrics if reference is not None else {},
        str(table),
        baselines=reference.baselines if reference is not None else {},
        samples=samples[: spec.sample_table_rows],
        rows_path=str(per_row),
    )


def _samples(
    held_all: Any,
    spec: EvaluateSpec,
    tokenizer: Any,
    objective: str,
    tuned: Side,
    reference: Side | None,
) -> list[dict[str, Any]]:
    """The sample table: each generated-from row's prompt, reference and answers."""
    answers = tuned.outputs.get("answer")
    if answers is None:
        return []
    held = _subset(held_all, spec.generation_rows)
    blank = [""] * len(answers)
    base = reference.outputs.get("answer", blank) if reference is not None else blank
    if objective == "rl":
        return [
            {"prompt": p, "fine_tuned": a, "base": b}
            for p, a, b in zip(held["prompt"], answers, base, strict=True)
        ]
    refs = [_plain(tokenizer, c) for c in held["completion"]]
    icl = reference.outputs.get("in_context", blank) if reference is not None else blank
    return [
        {"prompt": p, "reference": r, "fine_tuned": g, "base": b, "base_in_context": c}
        for p, r, g, b, c in zip(held["prompt"], refs, answers, base, icl, strict=True)
    ]


def _merge(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Row by row, the values of `second` added to those of `first` (which may be longer)."""
    return [{**a, **(second[i] if i < len(second) else {})} for i, a in enumerate(first)]


def write_rows(
    path: Path,
    keys: list[str],
    model: list[dict[str, Any]],
    base: list[dict[str, Any]] | None,
) -> None:
    """`eval_rows.jsonl`: one line per eval row, `{key, model: {...}, base: {...}}` (rows past
    the generated or paired subset carry only what was measured on them)."""
    with path.open("w") as handle:
        for i, key in enumerate(keys):
            record: dict[str, Any] = {"key": key, "model": model[i] if i < len(model) else {}}
            if base is not None:
                record["base"] = base[i] if i < len(base) else {}
            handle.write(json.dumps(record) + "\n")


def report_causal(result: EvalResult, run_id: str | None) -> None:
    """Log a causal LM's evaluation to MLflow, the before/after table and sample generations to
    Prefect."""
    table = before_after_markdown(result)
    samples = samples_markdown(result.samples)
    if run_id:
        tracking.log_metrics(run_id, {f"eval_{k}": v for k, v in result.metrics.items()})
        tracking.log_metrics(run_id, {f"base_{k}": v for k, v in result.base_metrics.items()})
        for index, figures in enumerate(result.baselines.values()):
            prefix = "icl" if index == 0 else f"baseline{index}"
            tracking.log_metrics(run_id, {f"{prefix}_{k}": v for k, v in figures.items()})
        tracking.log_file(run_id, result.table_path, "eval")
        tracking.log_file(run_id, result.rows_path, "eval")
        tracking.log_text(run_id, table, "eval/before_after.md")
        if samples:
            tracking.log_text(run_id, samples, "eval/sample_generations.md")
    create_markdown_artifact(key="before-after", markdown=table, description="Base vs fine-tuned")
    if samples:
        create_markdown_artifact(
            key="sample-generations", markdown=samples, description="Sample generations"
        )
