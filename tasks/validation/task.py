"""The validation stage's Prefect task: run the data contract (`tasks.validation.contract`) and
save the report everywhere a user looks: files beside the run (JSON, HTML, GX Data Docs), the
MLflow run, a Prefect artifact."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.services import tracking
from tasks.services.secret_blocks import with_token
from tasks.validation.cache import DOCS, REPORT_HTML, REPORT_JSON, read_report, report_folder
from tasks.validation.contract import ValidationInputs


@dataclass(frozen=True)
class ValidationRef:
    passed: bool
    summary: str
    report_json: str
    report_html: str
    errors: list[str]
    warnings: list[str]
    data_docs: list[str]


@task(name="validate_data")
def validate_data(inputs: ValidationInputs, run_id: str | None, out_dir: str) -> ValidationRef:
    """Run the contract (or read its report, kept for the same data and contract), save the report
    beside the run, in the MLflow run and as a Prefect artifact; return its verdict."""
    model = inputs.model
    if model is not None and model.token_secret:
        inputs = replace(inputs, model=with_token(model))
    kept_in, kept = report_folder(inputs)
    folder = Path(out_dir)
    shutil.copytree(kept_in, folder, dirs_exist_ok=True)
    report = read_report(folder)
    if kept:
        get_run_logger().info("data contract report kept for this data and contract: %s", kept_in)
    json_path, html_path = folder / REPORT_JSON, folder / REPORT_HTML
    docs = sorted(str(page) for page in (folder / DOCS).glob("gx_*/index.html"))
    if run_id:
        tracking.log_file(run_id, json_path, "data_contract")
        tracking.log_file(run_id, html_path, "data_contract")
        if docs:
            tracking.client().log_artifacts(
                run_id, str(folder / DOCS), "data_contract/gx_data_docs"
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
