"""Batched inference on causal LMs, shared by evaluation and the registered pyfunc models (no
Prefect import: this module is bundled with every registered model)."""

from __future__ import annotations

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


def token_logprobs(
    model: Any, ids: list[list[int]], scored: list[list[int]], pad_id: int, batch: int
) -> list[tuple[float, int]]:
    """Per sequence: (sum of log-probabilities of the tokens marked in `scored`, their count)."""
    import torch

    out: list[tuple[float, int]] = []
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: dict[int, tuple[float, int]] = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            input_ids, attention = _pad([ids[i] for i in idx], pad_id)
            marks, _ = _pad([scored[i] for i in idx], 0)
            device = _device(model)
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target = input_ids[:, 1:].to(device)
            picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            weight = marks[:, 1:].to(device).float() * attention[:, 1:].to(device).float()
            sums = (picked * weight).sum(-1).cpu().tolist()
            counts = weight.sum(-1).cpu().tolist()
            for j, i in enumerate(idx):
                results[i] = (float(sums[j]), int(counts[j]))
    out = [results[i] for i in range(len(ids))]
    return out


# End-of-turn tokens of common chat templates: a chat model's answer ends there, not at EOS.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>")


def stop_token_ids(tokenizer: Any) -> list[int]:
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]
    return ids


def generate(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, max_length: int, batch: int
) -> list[str]:
    """Greedy continuations of `prompts` (left-padded batches, in length order)."""
    import torch

    encoded = [tokenizer(p, verbose=False)["input_ids"][-max_length:] for p in prompts]
    results: dict[int, str] = {}
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
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
