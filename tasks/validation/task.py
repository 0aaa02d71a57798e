"""The validation stage's Prefect task: run the data contract (`tasks.validation.contract`) and
save the report everywhere a user looks: files beside the run (JSON, HTML, GX Data Docs), the
MLflow run, a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from data_contracts import ContractSpec, Report
from data_contracts.runner import data_docs
from tasks.core.promotion import GateSpec
from tasks.data.load import DataRef
from tasks.models.base import BaseModelSpec
from tasks.services import tracking
from tasks.services.secret_blocks import with_token
from tasks.validation.contract import validate


@dataclass(frozen=True)
class ValidationRef:
    passed: bool
    summary: str
    report_json: str
    report_html: str
    errors: list[str]
    warnings: list[str]
    data_docs: list[str]


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
        with_token(model) if model else None,
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
