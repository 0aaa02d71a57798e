"""Validating loaded data against the recipe's data contract, and saving the report everywhere a
user looks: files beside the run, the MLflow run, a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from data_contracts import ContractData, ContractSpec, Report, load_contract, run_contract
from data_contracts.contract import ContractError
from tasks import tracking
from tasks.data import FORMAT_FIELDS, OPTIONAL_FIELDS, DataRef
from tasks.errors import RecipeError


@dataclass(frozen=True)
class ValidationRef:
    passed: bool
    summary: str
    report_json: str
    report_html: str
    errors: list[str]
    warnings: list[str]


def validate(data: DataRef, spec: ContractSpec, base_dir: Path | None = None) -> Report:
    """Run the contract on the loaded data (pure apart from reading the cached tables)."""
    try:
        contract = load_contract(spec, base_dir)
    except ContractError as exc:
        raise RecipeError(str(exc)) from None
    required = [
        f for f in FORMAT_FIELDS[data.format] if f not in OPTIONAL_FIELDS.get(data.format, ())
    ]
    contract_data = ContractData(
        format=data.format,
        train=data.train(),
        eval=data.eval(),
        required=required,
        labels=data.labels,
        issues=data.issues,
    )
    return run_contract(contract, contract_data)


def save_report(report: Report, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "data_contract.json", folder / "data_contract.html"
    json_path.write_text(report.to_json())
    html_path.write_text(report.to_html())
    return json_path, html_path


@task(name="validate_data")
def validate_data(
    data: DataRef, spec: ContractSpec, base_dir: str | None, run_id: str | None, out_dir: str
) -> ValidationRef:
    """Run the contract, save the report (files, MLflow run, Prefect artifact) and return its verdict."""
    report = validate(data, spec, Path(base_dir) if base_dir else None)
    json_path, html_path = save_report(report, Path(out_dir))
    if run_id:
        tracking.log_file(run_id, json_path, "data_contract")
        tracking.log_file(run_id, html_path, "data_contract")
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
    )


__all__ = ["ValidationRef", "save_report", "validate", "validate_data"]
