"""The trainer's arguments are the recipe's: trl's own defaults never switch on what the recipe
left off (trl's configs default activation checkpointing to True, a third slower)."""

from __future__ import annotations

import pytest

from tasks.training.base import TrainSpec, loop_args


@pytest.mark.parametrize("config", ["SFTConfig", "DPOConfig", "RewardConfig", "GRPOConfig"])
@pytest.mark.parametrize("on", [False, True])
def test_checkpointing_follows_the_recipe(config: str, on: bool, tmp_path) -> None:
    import trl

    spec = TrainSpec(gradient_checkpointing=on, max_steps=10)
    args = getattr(trl, config)(**loop_args(spec, str(tmp_path), False, 10, False))
    assert args.gradient_checkpointing is on
    assert getattr(args, "activation_checkpointing", on) is on


def test_plain_training_arguments_follow_the_recipe(tmp_path) -> None:
    from transformers import TrainingArguments

    for on in (False, True):
        spec = TrainSpec(gradient_checkpointing=on, max_steps=10)
        args = TrainingArguments(**loop_args(spec, str(tmp_path), False, 10, False))
        assert args.gradient_checkpointing is on
