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
from tasks.training.causal.lm_head import eager_lm_head
from tasks.training.causal.runner import fit, load_tokenizer, make_trainer, prepare_model
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
    with eager_lm_head():
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


def test_held_out_reference_runs_once(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """DPO's held-out loss points give trl's figures at every point, while the reference (the
    base with the adapter off) runs over the held-out pairs at the first point only."""
    from peft.tuners.lora import LoraLayer

    base = BaseModelSpec(path=str(tiny_causal_lm))
    method = METHODS["dpo"].config(r=4, lora_alpha=8)
    tok = tokenize(load(data_spec("hh", "preference")), base, TokenizeSpec(max_length=96), method)
    tokenizer = load_tokenizer(base)
    spec = TrainSpec(
        max_steps=STEPS,
        batch_size=4,
        eval_batch_size=4,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        logging_steps=1,
        eval_loss_points=3,
        eval_loss_rows=12,
        group_by_length=False,
    )

    def run(stock: bool) -> tuple[list[dict[str, float]], int]:
        model = prepare_model(base, method, tokenizer, seed=0, steps=STEPS)
        trainer = make_trainer(
            model, tokenizer, method, spec, tok, str(tmp_path / str(stock)), False, 96, [], base
        )
        if stock:
            as_trl_ships_it(trainer)
        lora = next(m for m in model.modules() if isinstance(m, LoraLayer))
        reference_passes = [0]

        def count(module: Any, args: Any) -> None:
            reference_passes[0] += int(module.disable_adapters or module.active_adapters == ["ref"])

        lora.register_forward_pre_hook(count)
        with eager_lm_head():
            trainer.train()
            trainer.evaluate()  # a fourth point, after training
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
        return evals, reference_passes[0]

    ours, our_passes = run(stock=False)
    theirs, their_passes = run(stock=True)
    batches = 3  # 12 held-out pairs, 4 per batch
    assert len(ours) == len(theirs) == 4
    for mine, stock in zip(ours, theirs, strict=True):
        assert mine.keys() == stock.keys()
        for key in set(stock) - {
            "eval_runtime",
            "eval_samples_per_second",
            "eval_steps_per_second",
        }:
            assert mine[key] == pytest.approx(stock[key], rel=1e-6, abs=1e-9), key
    assert their_passes == STEPS + 4 * batches  # one per training step, one per held-out batch
    assert our_passes == STEPS + batches


def test_fresh_adapter_reference_is_the_base(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trl copies the adapter it is handed as DPO's reference; for a fresh adapter (a zero update)
    tuneline drops that copy and runs the base with the adapter off: the same losses. An adapter
    that is not a zero update (one trained before) keeps trl's copy as its reference."""
    import torch

    from tasks.training.causal import dpo

    base = BaseModelSpec(path=str(tiny_causal_lm))
    # dropout off: the copy's dropout would draw random numbers the base does not
    method = METHODS["dpo"].config(r=4, lora_alpha=8, lora_dropout=0.0)
    tok = tokenize(load(data_spec("hh", "preference")), base, TokenizeSpec(max_length=96), method)
    tokenizer = load_tokenizer(base)

    def losses(model: Any, name: str) -> tuple[list[float], bool]:
        trainer = make_trainer(
            model, tokenizer, method, _spec(False), tok, str(tmp_path / name), False, 96, [], base
        )
        kept_copy = "ref" in trainer.model.peft_config
        with eager_lm_head():
            trainer.train()
        return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h], kept_copy

    ours, ours_copy = losses(prepare_model(base, method, tokenizer, seed=0, steps=STEPS), "ours")
    with monkeypatch.context() as patch:
        patch.setattr(dpo, "base_as_reference", lambda trainer: trainer)
        trls, trls_copy = losses(prepare_model(base, method, tokenizer, seed=0, steps=STEPS), "trl")
    assert (ours_copy, trls_copy) == (False, True)
    assert len(ours) == STEPS and ours == pytest.approx(trls, rel=1e-6)

    trained = prepare_model(base, method, tokenizer, seed=0, steps=STEPS)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)  # as if trained before: no longer a zero update
    _, kept = losses(trained, "trained")
    assert kept
