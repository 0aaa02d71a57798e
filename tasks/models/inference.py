"""Batched inference on causal LMs, shared by evaluation and the registered pyfunc models (no
Prefect import: this module is bundled with every registered model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _pad(rows: list[list[int]], value: int, left: bool = False) -> Any:
    import torch

    width = max(len(r) for r in rows)
    padded = [
        ([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows
    ]
    mask = [
        ([0] * (width - len(r)) + [1] * len(r)) if left else ([1] * len(r) + [0] * (width - len(r)))
        for r in rows
    ]
    return torch.tensor(padded), torch.tensor(mask)


# Logits held at once while scoring (rows x positions x vocabulary, elements; 128 MB in float32).
# A batch's logits grow with the vocabulary: 64 rows of 256 tokens were 2 GB with a 32,000-token
# vocabulary and 10 GB with a 151,936-token one, twice over with their log-softmax. A batch takes
# as many rows as fit (at least one).
LOGITS_BUDGET = 1 << 25
# Tokens in one eval batch (rows x padded width; for generation, of the prompts): the
# activations grow with them, so 64 rows of 2,048 tokens through a 1B model would hold gigabytes
# at once. Batches of the usual lengths (64 rows up to 256 tokens) are within it.
TOKENS_BUDGET = 1 << 14


def _vocab_size(model: Any) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)


def _keeps_logits(model: Any) -> bool:
    """Whether the model projects only the positions it is asked for (`logits_to_keep`)."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def _predicting(marks: list[int]) -> list[int]:
    """The positions whose next token is scored."""
    return [t - 1 for t in range(1, len(marks)) if marks[t]]


def _scoring_batches(
    order: list[int],
    ids: list[list[int]],
    scored: list[list[int]],
    rows: int,
    vocab: int,
    keeps: bool,
    budget: int,
    tokens: int | None = None,
) -> Iterator[tuple[list[int], list[int]]]:
    """Batches of `order` (by length) as `(rows, positions projected)`: at most `rows` rows and,
    when more than one, their logits within `budget` elements and their tokens within `tokens`."""
    tokens = TOKENS_BUDGET if tokens is None else tokens
    start = 0
    while start < len(order):
        taken: list[int] = []
        kept: set[int] = set()
        for i in order[start : start + rows]:
            grown = kept.union(_predicting(scored[i]))
            width = len(grown) if keeps else max(len(ids[i]) - 1, 1)
            logits = (len(taken) + 1) * width * vocab
            if taken and (logits > budget or (len(taken) + 1) * len(ids[i]) > tokens):
                break
            taken.append(i)
            kept = grown
        start += len(taken)
        yield taken, sorted(kept)


def token_logprobs(
    model: Any,
    ids: list[list[int]],
    scored: list[list[int]],
    pad_id: int,
    batch: int,
    budget: int = LOGITS_BUDGET,
) -> list[tuple[float, int]]:
    """Per sequence: (sum of log-probabilities of the tokens marked in `scored`, their count).
    Only the positions that predict a marked token are projected onto the vocabulary (where the
    model can), a row's log-probabilities are taken as logit minus log-sum-exp (no log-softmax of
    the whole batch), and a batch holds at most `budget` logits (see `LOGITS_BUDGET`)."""
    import torch

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: dict[int, tuple[float, int]] = {}
    keeps = _keeps_logits(model)
    device = _device(model)
    batches = _scoring_batches(order, ids, scored, batch, _vocab_size(model), keeps, budget)
    with torch.inference_mode():
        for idx, kept in batches:
            if not kept:  # nothing scored in these rows
                results.update((i, (0.0, 0)) for i in idx)
                continue
            input_ids, attention = _pad([ids[i] for i in idx], pad_id)
            marks, _ = _pad([scored[i] for i in idx], 0)
            positions = torch.tensor(kept)
            inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
            if keeps:
                logits = model(**inputs, logits_to_keep=positions.to(device)).logits
            else:
                logits = model(**inputs).logits[:, positions.to(device)]
            target = input_ids[:, positions + 1].to(device)
            weight = (marks[:, positions + 1] * attention[:, positions + 1]).to(device).float()
            for j, i in enumerate(idx):  # a row at a time: one row's float32 copy at most
                row = logits[j].float()
                picked = row.gather(-1, target[j].unsqueeze(-1)).squeeze(-1)
                logp = picked - torch.logsumexp(row, dim=-1)
                results[i] = (float((logp * weight[j]).sum()), int(weight[j].sum()))
    return [results[i] for i in range(len(ids))]


# End-of-turn tokens of common chat templates: a chat model's answer ends there, not at EOS.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>")


def stop_token_ids(tokenizer: Any) -> list[int]:
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]
    return ids


def _token_batches(order: list[int], lengths: list[int], rows: int) -> Iterator[list[int]]:
    """Batches of `order` (by length): at most `rows` rows and, when more than one, at most
    `TOKENS_BUDGET` tokens padded."""
    start = 0
    while start < len(order):
        taken = [order[start]]
        for i in order[start + 1 : start + rows]:
            if (len(taken) + 1) * lengths[i] > TOKENS_BUDGET:
                break
            taken.append(i)
        start += len(taken)
        yield taken


def generate(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, max_length: int, batch: int
) -> list[str]:
    """Greedy continuations of `prompts` (left-padded batches in length order, at most `batch`
    rows and, when more than one, `TOKENS_BUDGET` prompt tokens)."""
    import torch

    encoded = [tokenizer(p, verbose=False)["input_ids"][-max_length:] for p in prompts]
    results: dict[int, str] = {}
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    with torch.inference_mode():
        for idx in _token_batches(order, [len(e) for e in encoded], batch):
            input_ids, attention = _pad(
                [encoded[i] for i in idx], tokenizer.pad_token_id, left=True
            )
            device = _device(model)
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(tokenizer),
            )
            new = output[:, input_ids.shape[1] :]
            for j, i in enumerate(idx):
                results[i] = tokenizer.decode(new[j], skip_special_tokens=True).strip()
    return [results[i] for i in range(len(prompts))]


def reward_scores(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int
) -> list[float]:
    """A reward model's score of each text."""
    import torch

    scores: dict[int, float] = {}
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(_device(model))
            logits = model(**enc).logits[:, 0].float().cpu().tolist()
            for j, i in enumerate(idx):
                scores[i] = float(logits[j])
    return [scores[i] for i in range(len(texts))]
