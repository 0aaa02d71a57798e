"""`tuneline plan`: what a recipe's run will do and cost, without running it. Loads and tokenizes
the data as the run would (the same caches), builds the method on the base model and trains only
the warm-up steps in a scratch folder: no flow run, no MLflow run, nothing registered.
"""

from __future__ import annotations

from flows.recipe import Recipe
from tasks.data.load import load
from tasks.planning.plan import (
    Plan,
    gate_figures,
    measure_warmup,
    static_plan,
    train_lengths,
    with_estimate,
)
from tasks.services.secret_blocks import with_token
from tasks.tokenization.encoding import tokenize
from tasks.training.base import device_name


def gate_of(recipe: Recipe, n_eval: int) -> dict[str, object]:
    gate = recipe.registry.gate if recipe.registry.enabled else None
    return gate_figures(gate, recipe.data.format, n_eval, recipe.evaluate.generation_rows)


def plan_recipe(recipe: Recipe) -> Plan:
    """The full plan: data and tokens, steps, parameters, measured time and memory, the gate."""
    data = load(recipe.data, recipe.train.seed)
    base = with_token(recipe.base_model)
    tokenized = tokenize(data, base, recipe.tokenize, recipe.method)
    lengths, n_eval = train_lengths(tokenized, recipe.method)
    max_length = recipe.tokenize.max_length
    plan = static_plan(
        recipe.name,
        recipe.method,
        recipe.train,
        lengths,
        n_eval,
        max_length,
        gate_of(recipe, n_eval),
    )
    kind = "causal" if recipe.task == "causal-lm" else "classifier"
    warmup, trainable, total = measure_warmup(
        kind,
        tokenized,
        base,
        recipe.method,
        recipe.train,
        max_length,
        data.labels,
        data.format,
    )
    plan.trainable_params, plan.total_params = trainable, total
    plan = with_estimate(plan, warmup, recipe.method, device_name())
    if not warmup:
        plan.notes.append(
            f"{recipe.method.name} fits in one pass, not by steps: time not estimated"
        )
    if data.issues:  # left out above; the run's data contract judges them before any training
        first = data.issues[0]
        plan.notes.append(
            f"{len(data.issues)} record(s) could not be read and are left out (first: "
            f"{first.where}: {first.problem}); the run's data contract may stop on them: "
            "check them with `tuneline validate RECIPE`"
        )
    if recipe.train.distributed.processes > 1:
        plan.notes.append(
            f"measured in one process; the run trains on {recipe.train.distributed.processes}"
        )
    return plan
