"""How rows of each causal-LM data format become trainer rows (pure functions)."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.errors import DataError
from tasks.models.prompts import (
    alpaca_prompt,
    chat_pair,
    render_lm,
    render_preference,
    shared_prompt,
)
from tasks.training.causal.sft import ALPACA_TEMPLATE


def test_implicit_prompt_is_cut_after_the_assistant_marker_not_mid_word() -> None:
    prompt, chosen, rejected = shared_prompt(
        "\n\nHuman: first word?\n\nAssistant: The", "\n\nHuman: first word?\n\nAssistant: Then"
    )
    assert prompt == "\n\nHuman: first word?\n\nAssistant:"
    assert (chosen, rejected) == (" The", " Then")


def test_implicit_prompt_without_a_marker_is_cut_at_a_word_boundary() -> None:
    assert shared_prompt("say yes please", "say yellow") == ("say ", "yes please", "yellow")


def test_alpaca_template_with_and_without_input() -> None:
    with_input = alpaca_prompt(ALPACA_TEMPLATE, "Count the words.", "a b c")
    assert "### Input:\na b c" in with_input and with_input.endswith("### Response:\n")
    assert "### Input" not in alpaca_prompt(ALPACA_TEMPLATE, "Say hi.", "")


def test_chat_pair_splits_at_the_last_assistant_turn(tiny_causal_lm) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_causal_lm))
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "goodbye"},
    ]
    prompt, completion = chat_pair(tok, messages)
    assert prompt.endswith("<|im_start|>assistant\n") and "hello" in prompt
    assert completion.startswith("goodbye")
    with pytest.raises(DataError, match="no assistant turn"):
        chat_pair(tok, messages[:1])


def test_render_lm_and_preference_forms() -> None:
    rows = render_lm(
        pd.DataFrame({"prompt": ["p"], "completion": ["c"]}), "prompt-completion", None, ""
    )
    assert rows.to_dict("records") == [{"prompt": "p", "completion": "c"}]
    explicit = render_preference(
        pd.DataFrame({"prompt": ["q "], "chosen": ["a"], "rejected": ["b"]})
    )
    assert explicit.to_dict("records") == [{"prompt": "q ", "chosen": "a", "rejected": "b"}]
    implicit = render_preference(
        pd.DataFrame({"chosen": ["Human: q Assistant: a"], "rejected": ["Human: q Assistant: b"]})
    )
    assert implicit.loc[0, "prompt"] == "Human: q Assistant:"
