"""Preference pairs tokenized once by tuneline's tokenization stage, as trl's DPO trainer
tokenizes them (`tasks.tokenization.encoding._pairs`): the DPO trainer's datasets hold the very
ids trl makes, trl's own way is taken when they differ, and rows trl drops are dropped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from trl import DPOTrainer

from tasks.data.load import load
from tasks.models.base import BaseModelSpec
from tasks.models.prompts import PAIR_IDS
from tasks.tokenization.encoding import TokenizeSpec, load_split, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import load_tokenizer, make_trainer, prepare_model
from tests.methods.test_causal_methods import data_spec

SPEC = TrainSpec(
    max_steps=2, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0, eval_loss_points=0
)


def _trainer(tiny_causal_lm: Path, tmp_path: Path, max_length: int) -> tuple[Any, Any, Any]:
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["dpo"].config(r=4, lora_alpha=8)
    tok = tokenize(
        load(data_spec("hh", "preference")), base, TokenizeSpec(max_length=max_length), method
    )
    tokenizer = load_tokenizer(base)
    model = prepare_model(base, method, tokenizer, seed=0, steps=2)
    trainer = make_trainer(
        model, tokenizer, method, SPEC, tok, str(tmp_path), False, max_length, [], base
    )
    return trainer, load_split(tok, "train"), tokenizer


def _trls(trainer: Any, split: Any, tokenizer: Any) -> Any:
    """What trl's own DPO trainer makes of the text rows."""
    text = split.select_columns(["prompt", "chosen", "rejected"])
    return DPOTrainer._prepare_dataset(trainer, text, tokenizer, trainer.args, "train")


@pytest.mark.parametrize("max_length", [96, 40])  # 40: some prompts fill it, trl drops them
def test_the_trainer_trains_on_trls_own_ids(
    max_length: int, tiny_causal_lm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.training.causal.dpo")
    trainer, split, tokenizer = _trainer(tiny_causal_lm, tmp_path, max_length)
    assert "differ" not in caplog.text, "trl tokenized the pairs itself"
    assert set(PAIR_IDS) <= set(split.column_names), "the tokenization made no pair ids"
    ours, theirs = trainer.train_dataset, _trls(trainer, split, tokenizer)
    assert len(ours) == len(theirs) > 0
    if max_length == 40:
        assert len(theirs) < len(split), "no pair dropped: the case tests nothing"
    for column in PAIR_IDS:
        assert ours[column] == theirs[column], column


def test_ids_that_differ_from_trls_give_way_to_trls(
    tiny_causal_lm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trainer, split, tokenizer = _trainer(tiny_causal_lm, tmp_path, 96)
    caplog.set_level(logging.INFO, logger="tasks.training.causal.dpo")
    wrong = split.map(
        lambda row, i: {"chosen_ids": row["chosen_ids"][:-1]} if i == 0 else {}, with_indices=True
    )
    prepared = trainer._prepare_dataset(
        wrong.select_columns(["prompt", "chosen", "rejected", *PAIR_IDS]),
        tokenizer,
        trainer.args,
        "train",
    )
    assert "differ from trl's" in caplog.text
    theirs = _trls(trainer, split, tokenizer)
    assert prepared["chosen_ids"] == theirs["chosen_ids"]


def test_a_first_pair_trl_drops_does_not_stop_the_check(
    tiny_causal_lm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trainer, split, tokenizer = _trainer(tiny_causal_lm, tmp_path, 40)
    long = [i for i, ids in enumerate(split["prompt_ids"]) if len(ids) >= 40]
    assert long, "no prompt fills max_length: the case tests nothing"
    rows = split.select([long[0], *(i for i in range(len(split)) if i != long[0])])
    caplog.set_level(logging.INFO, logger="tasks.training.causal.dpo")
    prepared = trainer._prepare_dataset(
        rows.select_columns(["prompt", "chosen", "rejected", *PAIR_IDS]),
        tokenizer,
        trainer.args,
        "train",
    )
    assert "differ" not in caplog.text
    theirs = _trls(trainer, rows, tokenizer)
    for column in PAIR_IDS:
        assert prepared[column] == theirs[column], column
