"""Scoring sequences (`tasks.models.inference.token_logprobs`): the same figures as the whole
log-softmax of every position, with only the scored positions projected and a batch's logits
within the budget."""

from __future__ import annotations

import random
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tasks.models import inference  # noqa: E402
from tasks.models.inference import token_logprobs  # noqa: E402


def _model(vocab: int) -> Any:
    from transformers import LlamaForCausalLM

    from tasks.models.tiny import tiny_llama_config

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(vocab, pad_token_id=1)).eval()


def _rows(vocab: int, count: int = 13) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(0)
    ids, scored = [], []
    for n in range(count):
        length = rng.randrange(2, 60)
        ids.append([rng.randrange(2, vocab) for _ in range(length)])
        if n == 3:
            scored.append([0] * length)  # nothing scored in this row
        elif n == 5:
            scored.append([1] * length)  # a corpus row: every token
        else:
            cut = rng.randrange(1, length)
            scored.append([0] * cut + [1] * (length - cut))  # a completion after its prompt
    return ids, scored


def _whole(model: Any, ids: list[list[int]], scored: list[list[int]]) -> list[tuple[float, int]]:
    """One row at a time, every position projected, the log-softmax of all of it."""
    out = []
    with torch.inference_mode():
        for row, marks in zip(ids, scored, strict=True):
            logits = model(input_ids=torch.tensor([row])).logits[0, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, torch.tensor(row[1:]).unsqueeze(-1)).squeeze(-1)
            weight = torch.tensor(marks[1:]).float()
            out.append((float((picked * weight).sum()), int(weight.sum())))
    return out


class _NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward projects every position (no `logits_to_keep`)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def get_output_embeddings(self) -> Any:
        return self.inner.get_output_embeddings()

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


@pytest.mark.parametrize("keeps", [True, False], ids=["logits_to_keep", "every-position"])
@pytest.mark.parametrize("budget", [1 << 30, 3000 * 97], ids=["one-batch", "budgeted"])
def test_the_same_figures_as_the_whole_log_softmax(keeps: bool, budget: int) -> None:
    model = _model(97)
    ids, scored = _rows(97)
    expected = _whole(model, ids, scored)
    scorer = model if keeps else _NoLogitsToKeep(model)
    assert inference._keeps_logits(scorer) is keeps
    got = token_logprobs(scorer, ids, scored, pad_id=1, batch=8, budget=budget)
    assert [count for _, count in got] == [count for _, count in expected]
    assert got[3] == (0.0, 0)
    for (value, _), (reference, _) in zip(got, expected, strict=True):
        assert value == pytest.approx(reference, rel=1e-5, abs=1e-4)


def test_a_batch_holds_its_logits_within_the_budget() -> None:
    vocab, budget = 500, 40 * 500
    model = _model(vocab)
    ids, scored = _rows(vocab, count=20)
    shapes: list[tuple[int, ...]] = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    try:
        got = token_logprobs(model, ids, scored, pad_id=1, batch=64, budget=budget)
    finally:
        hook.remove()
    assert len(got) == len(ids)
    assert len(shapes) > 2  # split into several batches, none over the budget unless one row
    for rows, positions, size in shapes:
        assert size == vocab
        assert rows == 1 or rows * positions * vocab <= budget
    # only positions that predict a scored token were projected: fewer than every position
    assert sum(r * p for r, p, _ in shapes) < sum(len(row) - 1 for row in ids)


def _embedded_shapes(model: Any) -> tuple[list[tuple[int, ...]], Any]:
    """The `[rows, tokens]` of every batch the model's body reads (its embedding's input)."""
    shapes: list[tuple[int, ...]] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: shapes.append(tuple(args[0].shape))
    )
    return shapes, hook


def test_a_batch_holds_its_tokens_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(97)
    ids, scored = _rows(97, count=20)
    expected = token_logprobs(model, ids, scored, pad_id=1, batch=64)
    monkeypatch.setattr(inference, "TOKENS_BUDGET", 150)
    shapes, hook = _embedded_shapes(model)
    try:
        got = token_logprobs(model, ids, scored, pad_id=1, batch=64)
    finally:
        hook.remove()
    assert len(shapes) > 2
    assert all(rows == 1 or rows * width <= 150 for rows, width in shapes)
    for (value, count), (reference, expected_count) in zip(got, expected, strict=True):
        assert count == expected_count
        assert value == pytest.approx(reference, rel=1e-5, abs=1e-4)


def test_generation_batches_hold_their_prompt_tokens_within_the_budget(
    tiny_causal_lm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm)
    prompts = [" ".join(["the model answers"] * (n % 5 + 1)) for n in range(12)]
    widths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    monkeypatch.setattr(inference, "TOKENS_BUDGET", 3 * max(widths))
    shapes, hook = _embedded_shapes(model)
    try:
        answers = inference.generate(model, tokenizer, prompts, 4, 64, batch=8)
    finally:
        hook.remove()
    assert len(answers) == len(prompts) and all(isinstance(a, str) for a in answers)
    prefills = [shape for shape in shapes if shape[1] > 1]  # each batch's prompt pass
    assert sum(rows for rows, _ in prefills) == len(prompts) and len(prefills) >= 3
    assert all(rows == 1 or rows * width <= 3 * max(widths) for rows, width in prefills)
