"""What makes training fast changes nothing it computes: the loss at every step of tuneline's
training loop equals the loss of trl's trainer as it comes (its own training step, activation
checkpointing on, the LM head over every position), for the same model, data and seed; and the
figures trl logs beside the loss come out the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.data.load import load
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizeSpec, tokenize
from tasks.training import METHODS
from tasks.training.base import TrainSpec
from tasks.training.causal.runner import (
    fit,
    labelled_positions_only,
    load_tokenizer,
    make_trainer,
    prepare_model,
)
from tests.methods.test_causal_methods import data_spec

STEPS = 6
pytestmark = pytest.mark.slow  # each case trains twice, the stock way with checkpointing on


def _spec(checkpointing: bool) -> TrainSpec:
    return TrainSpec(
        max_steps=STEPS,
        batch_size=4,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        logging_steps=1,
        eval_loss_points=0,
        group_by_length=False,
        gradient_checkpointing=checkpointing,
    )


@pytest.mark.parametrize(
    ("name", "kind", "fmt"), [("sft", "alpaca", "alpaca"), ("dpo", "hh", "preference")]
)
def test_fast_loop_computes_the_stock_losses(
    name: str, kind: str, fmt: str, tiny_causal_lm: Path, tmp_path: Path
) -> None:
    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS[name].config(r=4, lora_alpha=8)
    data = load(data_spec(kind, fmt))
    tok = tokenize(data, base, TokenizeSpec(max_length=96), method)
    tokenizer = load_tokenizer(base)

    model = prepare_model(base, method, tokenizer, seed=0, steps=STEPS)
    fast = fit(model, tokenizer, tok, method, _spec(False), tmp_path / "fast", 96, base)
    fast_losses = [h["loss"] for h in fast.history if "loss" in h]

    # trl as it comes: its trainer, its defaults (checkpointing on), every position projected
    model = prepare_model(base, method, tokenizer, seed=0, steps=STEPS)
    model.enable_input_require_grads()
    stock = as_trl_ships_it(
        make_trainer(
            model, tokenizer, method, _spec(True), tok, str(tmp_path / "stock"), False, 96, [], base
        )
    )
    assert stock.args.gradient_checkpointing
    stock.train()
    stock_losses = [float(h["loss"]) for h in stock.state.log_history if "loss" in h]

    assert len(fast_losses) == STEPS
    assert fast_losses == pytest.approx(stock_losses, rel=1e-5)
    assert len(set(round(x, 4) for x in fast_losses)) > 1  # the model did learn something

    # every figure trl logs at each step (entropy, token accuracy, token count, ...) is the same
    model = prepare_model(base, method, tokenizer, seed=0, steps=STEPS)
    ours = make_trainer(
        model, tokenizer, method, _spec(False), tok, str(tmp_path / "ours"), False, 96, [], base
    )
    with labelled_positions_only():
        ours.train()
    logged = [h for h in ours.state.log_history if "loss" in h]
    expected = [h for h in stock.state.log_history if "loss" in h]
    assert len(logged) == STEPS and logged[0].keys() == expected[0].keys()
    for mine, theirs in zip(logged, expected, strict=True):
        for key in set(theirs) - {"loss", "grad_norm"}:  # both above, to 1e-5; the norm: below
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)


def as_trl_ships_it(trainer: Any) -> Any:
    """The trainer with trl's own training step: tuneline's subclass of trl's class taken off."""
    for cls in type(trainer).__mro__:
        if cls.__module__.startswith("trl."):
            trainer.__class__ = cls
            return trainer
    raise AssertionError(f"{type(trainer)} is not a trl trainer")
