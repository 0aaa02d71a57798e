"""Validating loaded data against the recipe's data contract: the contract, the data it reads and
what a gate needs of it, run to a `Report` (saved by `tasks.validation.task`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_contracts import ContractData, ContractSpec, Report, load_contract, run_contract
from data_contracts.contract import ContractError
from tasks.core.errors import RecipeError
from tasks.core.promotion import LOWER_IS_BETTER, POINT_METRICS, GateSpec, rows_needed
from tasks.data.load import FORMAT_FIELDS, OPTIONAL_FIELDS, DataRef
from tasks.models.base import BaseModelSpec

# Fields that must not be empty strings, per format (chat is checked turn by turn instead).
TEXT_FIELDS = {
    "classification": ["text"],
    "prompt-completion": ["prompt", "completion"],
    "alpaca": ["instruction", "output"],
    "chat": [],
    "preference": ["chosen", "rejected"],
    "text": ["text"],
}


def token_counter(model: BaseModelSpec) -> Any:
    """Count tokens with the recipe's own tokenizer (fast, batched)."""
    from tasks.models.base import load_tokenizer

    tokenizer = load_tokenizer(model)

    def count(texts: list[str]) -> list[int]:
        encoded = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    return count


def gate_needs(
    gate: GateSpec | None, data_format: str, n_eval: int, generation_rows: int | None
) -> dict[str, Any]:
    """What the eval_size check compares: the fewest eval rows on which the gate's test could
    show `gate.detect_gain`, and the rows the gate metric is measured on."""
    if gate is None:
        return {}
    metric = gate.metric_name
    needed = rows_needed(metric, gate.detect_gain, gate.beat_champion_by, gate.confidence)
    used = n_eval
    subset = data_format == "preference" or metric not in LOWER_IS_BETTER
    if data_format != "classification" and subset and generation_rows:
        used = min(n_eval, generation_rows)  # generated from, or scored in pairs, on these only
    level = f"{gate.confidence * 100:g}%"
    if metric in POINT_METRICS and metric != "rougeL":
        target = f"to detect a {gate.detect_gain * 100:g}-point gain in {metric} at {level}"
        if gate.beat_champion_by:
            target += f" over the {gate.beat_champion_by * 100:g}-point margin"
    else:
        target = f"for a paired comparison of {metric} to clear at {level}"
    return {"eval_rows_needed": needed, "eval_rows_used": used, "gate_target": target}


@dataclass(frozen=True)
class ValidationInputs:
    """Everything a contract run depends on (and the validation cache is keyed by)."""

    data: DataRef
    spec: ContractSpec | None
    base_dir: Path | None = None
    method: str | None = None
    model: BaseModelSpec | None = None
    max_length: int | None = None
    gate: GateSpec | None = None
    generation_rows: int | None = None

    def run(self) -> Report:
        return validate(
            self.data,
            self.spec,
            self.base_dir,
            self.method,
            self.model,
            self.max_length,
            self.gate,
            self.generation_rows,
        )


def validate(
    data: DataRef,
    spec: ContractSpec | None,
    base_dir: Path | None = None,
    method: str | None = None,
    model: BaseModelSpec | None = None,
    max_length: int | None = None,
    gate: GateSpec | None = None,
    generation_rows: int | None = None,
) -> Report:
    """Run the contract on the loaded data (pure apart from reading the cached tables). With the
    recipe's promotion `gate`, the eval set is also sized for it."""
    try:
        contract = load_contract(spec, base_dir, data.format)
    except ContractError as exc:
        raise RecipeError(str(exc)) from None
    required = [
        f for f in FORMAT_FIELDS[data.format] if f not in OPTIONAL_FIELDS.get(data.format, ())
    ]
    held = data.eval()
    contract_data = ContractData(
        format=data.format,
        train=data.train(),
        eval=held,
        required=required,
        text_fields=TEXT_FIELDS[data.format],
        labels=data.labels,
        issues=data.issues,
        method=method,
        count_tokens=token_counter(model) if model is not None and max_length else None,
        max_length=max_length,
        **gate_needs(gate, data.format, len(held), generation_rows),
    )
    return run_contract(contract, contract_data)
