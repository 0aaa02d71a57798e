"""Turning loaded rows into what a causal-LM trainer reads, per data format: `{text}` for a corpus,
`{prompt, completion}` for demonstrations (alpaca rows through a template, chat messages through
the tokenizer's chat template), `{prompt, chosen, rejected}` for preference pairs (the prompt of
the implicit form recovered from the shared prefix) and `{prompt}` for online RL.

The same rendering is stored in the artifact's manifest, so a registered model turns a user's
raw request into the prompt it was trained on.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from tasks.core.errors import DataError

ASSISTANT_MARKERS = ("Assistant:", "assistant:", "<|im_start|>assistant\n")


def alpaca_prompt(template: str, instruction: str, given: str | None) -> str:
    given = (given or "").strip()
    return template.format(
        instruction=instruction,
        input=given,
        input_clause=", paired with an input that provides further context" if given else "",
        input_block=f"### Input:\n{given}\n\n" if given else "",
    )


def _last_assistant(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == "assistant":
            return i
    return -1


def chat_pair(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(prompt, completion) of a conversation: everything before its last assistant turn
    rendered with the generation prompt, and that turn as the chat template renders it."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "data.format chat: the base model's tokenizer has no chat template; use a chat "
            "model, or give the data as prompt-completion"
        )
    last = _last_assistant(messages)
    if last < 0:
        raise DataError("data.format chat: a conversation has no assistant turn")
    history = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
    turn = {"role": "assistant", "content": messages[last]["content"]}
    prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*history, turn], tokenize=False)
    if full.startswith(prompt):
        return prompt, full[len(prompt) :]
    return prompt, str(turn["content"])


def shared_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two whole transcripts into (prompt, chosen, rejected). The prompt is their common
    prefix, cut after its last assistant marker (or at a word boundary), so an answer's first
    characters never end up in the prompt; trl's `extract_prompt` cuts mid-word."""
    cut = len(os.path.commonprefix([chosen, rejected]))
    prefix = chosen[:cut]
    ends = [prefix.rfind(m) + len(m) for m in ASSISTANT_MARKERS if m in prefix]
    if ends:
        cut = max(ends)
    else:
        while cut > 0 and not prefix[cut - 1].isspace():
            cut -= 1
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def render_lm(frame: pd.DataFrame, fmt: str, tokenizer: Any, template: str) -> pd.DataFrame:
    """Rows for language modelling: `text` for a corpus, `prompt` + `completion` otherwise."""
    if fmt == "text":
        return pd.DataFrame({"text": [_text(t) for t in frame["text"]]})
    if fmt == "prompt-completion":
        prompts = [_text(p) for p in frame["prompt"]]
        completions = [_text(c) for c in frame["completion"]]
    elif fmt == "alpaca":
        prompts = [
            alpaca_prompt(template, _text(i), _text(g))
            for i, g in zip(frame["instruction"], frame["input"], strict=True)
        ]
        completions = [_text(o) for o in frame["output"]]
    elif fmt == "chat":
        pairs = [chat_pair(tokenizer, list(m)) for m in frame["messages"]]
        prompts = [p for p, _ in pairs]
        completions = [c for _, c in pairs]
    elif fmt == "preference":
        prefs = render_preference(frame)
        prompts, completions = list(prefs["prompt"]), list(prefs["chosen"])
    else:
        raise DataError(f"data.format {fmt}: not a format a causal LM trains on")
    return pd.DataFrame({"prompt": prompts, "completion": completions})


# The token-id columns of a preference pair, as trl's DPO trainer names them.
PAIR_IDS = ("prompt_ids", "chosen_ids", "rejected_ids")


def render_preference(frame: pd.DataFrame) -> pd.DataFrame:
    """`{prompt, chosen, rejected}` rows; the implicit form's prompt is the shared prefix."""
    chosen = [_text(c) for c in frame["chosen"]]
    rejected = [_text(r) for r in frame["rejected"]]
    if "prompt" in frame.columns:
        return pd.DataFrame(
            {"prompt": [_text(p) for p in frame["prompt"]], "chosen": chosen, "rejected": rejected}
        )
    split = [shared_prompt(c, r) for c, r in zip(chosen, rejected, strict=True)]
    return pd.DataFrame(split, columns=["prompt", "chosen", "rejected"])


def render_prompts(frame: pd.DataFrame, fmt: str, tokenizer: Any, template: str) -> pd.DataFrame:
    """`{prompt}` rows (online RL samples its own completions), references kept for evaluation."""
    if fmt == "preference":
        prefs = render_preference(frame)
        return pd.DataFrame({"prompt": prefs["prompt"], "completion": prefs["chosen"]})
    return render_lm(frame, fmt, tokenizer, template)


def prompt_for_request(manifest: dict[str, Any], tokenizer: Any, request: str) -> str:
    """How a served model turns a user's request into the prompt form it was trained on."""
    style = manifest.get("prompt_style", "raw")
    if style == "alpaca":
        return alpaca_prompt(manifest["prompt_template"], request, "")
    if style == "chat" and getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
            )
        )
    return request
