"""Validating loaded data against the recipe's data contract, and saving the report everywhere a
user looks: files beside the run (JSON, HTML, GX Data Docs), the MLflow run, a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from data_contracts import ContractData, ContractSpec, Report, load_contract, run_contract
from data_contracts.contract import ContractError
from data_contracts.runner import data_docs
from tasks.core.errors import RecipeError
from tasks.core.promotion import LOWER_IS_BETTER, POINT_METRICS, GateSpec, rows_needed
from tasks.data.load import FORMAT_FIELDS, OPTIONAL_FIELDS, DataRef
from tasks.models.base import BaseModelSpec
from tasks.services import tracking

# Fields that must not be empty strings, per format (chat is checked turn by turn instead).
TEXT_FIELDS = {
    "classification": ["text"],
    "prompt-completion": ["prompt", "completion"],
    "alpaca": ["instruction", "output"],
    "chat": [],
    "preference": ["chosen", "rejected"],
    "text": ["text"],
}


@dataclass(frozen=True)
class ValidationRef:
    passed: bool
    summary: str
    report_json: str
    report_html: str
    errors: list[str]
    warnings: list[str]
    data_docs: list[str]


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


def save_report(report: Report, folder: Path) -> tuple[Path, Path, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "data_contract.json", folder / "data_contract.html"
    json_path.write_text(report.to_json())
    html_path.write_text(report.to_html())
    return json_path, html_path, data_docs(report, folder / "data_docs")


@task(name="validate_data")
def validate_data(
    data: DataRef,
    spec: ContractSpec | None,
    base_dir: str | None,
    run_id: str | None,
    out_dir: str,
    method: str | None = None,
    model: BaseModelSpec | None = None,
    max_length: int | None = None,
    gate: GateSpec | None = None,
    generation_rows: int | None = None,
) -> ValidationRef:
    """Run the contract, save the report (files, MLflow run, Prefect artifact); return its verdict."""
    report = validate(
        data,
        spec,
        Path(base_dir) if base_dir else None,
        method,
        model,
        max_length,
        gate,
        generation_rows,
    )
    json_path, html_path, docs = save_report(report, Path(out_dir))
    if run_id:
        tracking.log_file(run_id, json_path, "data_contract")
        tracking.log_file(run_id, html_path, "data_contract")
        if docs:
            tracking.client().log_artifacts(
                run_id, str(Path(out_dir) / "data_docs"), "data_contract/gx_data_docs"
            )
        tracking.log_metrics(
            run_id,
            {"contract_errors": len(report.errors), "contract_warnings": len(report.warnings)},
        )
    create_markdown_artifact(
        key="data-contract", markdown=report.to_markdown(), description="Data contract report"
    )
    return ValidationRef(
        passed=report.passed,
        summary=report.summary(),
        report_json=str(json_path),
        report_html=str(html_path),
        errors=[c.name for c in report.errors],
        warnings=[c.name for c in report.warnings],
        data_docs=docs,
    )
