"""Starting training from a trained tuneline artifact instead of the base model (`train.init_from`
naming a registered version): its full weights, or its peft adapter loaded as trainable, so the
run continues that model on the recipe's data. Finding and downloading the version is
`tasks.registry.continual`'s job; this module only turns the artifact into a model to train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.errors import ModelError
from tasks.models.artifacts import read_manifest
from tasks.training import METHODS


# Methods a run can continue from a version trained with the same method (`continuable` in each
# method's SPEC): the gradient-trained encoder methods whose artifact holds all they learnt, and
# the language-modelling causal methods. Not the probe (its logistic regression is fitted
# afresh), AdaLoRA (its rank budget schedule starts over from the initial rank), prefix and prompt
# tuning (untested here), nor the preference and reward methods (their reference model and reward
# head are the base's).
def continuable() -> tuple[str, ...]:
    return tuple(name for name, spec in METHODS.items() if spec.continuable)


# Method settings that fix the shape of what was trained: a continued run must keep them.
SHAPE_FIELDS = ("weights", "r", "target_modules")


def check_continuable(method: str, init_from: str) -> str | None:
    """Why a recipe with this method cannot start from a registered version, or None."""
    if init_from == "base" or method in continuable():
        return None
    return (
        f"train.init_from: {init_from}: method '{method}' cannot continue a registered version "
        f"(methods that can: {', '.join(continuable())}); set train.init_from: base"
    )


def check_artifact(artifact: str | Path, method: Any, labels: list[str], what: str) -> None:
    """The artifact must be the same method with the same shape (and, for a classifier, the same
    labels) as the recipe trains; else one line saying which setting differs."""
    manifest = read_manifest(artifact)
    theirs = manifest.get("method") or {}
    mine = method.model_dump()
    if theirs.get("name") != mine.get("name"):
        raise ModelError(
            f"train.init_from: {what} was trained with method '{theirs.get('name')}', this "
            f"recipe uses '{mine.get('name')}'; continue with the same method, or set "
            "train.init_from: base"
        )
    for key in SHAPE_FIELDS:
        if key in theirs and key in mine and theirs[key] != mine[key]:
            raise ModelError(
                f"train.init_from: {what} has method.{key} = {theirs[key]!r}, this recipe asks "
                f"{mine[key]!r}; keep the version's setting to continue it, or set "
                "train.init_from: base"
            )
    if manifest.get("task") == "classification" and list(manifest.get("labels") or []) != labels:
        raise ModelError(
            f"train.init_from: {what} predicts labels {manifest.get('labels')}, this recipe's "
            f"data has {labels}; continue on the same labels, or set train.init_from: base"
        )
