"""Tokenized demonstrations prepared in batches for trl's SFT trainer
(`sft.batched_preparation_trainer`): the labels, truncation and dropped rows trl's own
preparation makes, and trl's way wherever this one does not apply or disagrees."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from trl import SFTTrainer

from tasks.data.load import load
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizeSpec, load_split, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import load_tokenizer, make_trainer, prepare_model
from tests.methods.test_causal_methods import data_spec

SPEC = TrainSpec(
    max_steps=2,
    batch_size=4,
    learning_rate=1e-3,
    warmup_ratio=0.0,
    eval_loss_points=0,
    group_by_length=False,
)


def _trainer(tiny_causal_lm: Path, tmp_path: Path, cut: bool, **method: Any) -> Any:
    """The trainer, the tokenized rows it was given, and its tokenizer; with `cut`, a
    `max_length` that half the prompts fill (those rows dropped, the others truncated)."""
    base = BaseModelSpec(path=str(tiny_causal_lm))
    config = METHODS["sft"].config(r=4, lora_alpha=8, packing=False, **method)
    tok = tokenize(load(data_spec("alpaca", "alpaca")), base, TokenizeSpec(max_length=512), config)
    prompts = sorted(mask.index(1) for mask in load_split(tok, "train")["completion_mask"])
    max_length = prompts[len(prompts) // 2] if cut else 512
    tokenizer = load_tokenizer(base)
    model = prepare_model(base, config, tokenizer, seed=0, steps=2)
    trainer = make_trainer(
        model, tokenizer, config, SPEC, tok, str(tmp_path), False, max_length, [], base
    )
    raw = load_split(tok, "train").select_columns(["input_ids", "completion_mask"])
    return trainer, raw, tokenizer


@pytest.mark.parametrize(("cut", "completion_only"), [(False, True), (True, True), (True, False)])
def test_batched_preparation_is_trls(
    cut: bool,
    completion_only: bool,
    tiny_causal_lm: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.training.causal.sft")
    trainer, raw, tokenizer = _trainer(
        tiny_causal_lm, tmp_path, cut, completion_only_loss=completion_only
    )
    assert "differs from trl's" not in caplog.text, "trl prepared the rows itself"
    theirs = SFTTrainer._prepare_dataset(
        trainer, raw, tokenizer, trainer.args, False, None, "train"
    )
    ours = trainer.train_dataset
    assert ours.column_names == theirs.column_names
    assert len(ours) == len(theirs) > 0
    for column in ours.column_names:
        assert ours[column] == theirs[column], column
    longest = max(len(x) for x in ours["input_ids"])
    if cut:
        assert longest == trainer.args.max_length < max(len(x) for x in raw["input_ids"])
        if completion_only:
            assert 0 < len(ours) < len(raw), "no row dropped: the case tests nothing"
    else:
        assert any(-100 in x for x in ours["labels"]) and len(ours) == len(raw)
