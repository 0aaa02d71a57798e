"""The `validate` flow: a data contract alone, no training (what `tuneline validate` runs)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from data_contracts import ContractSpec
from tasks.core import settings
from tasks.core.errors import ContractFailed
from tasks.core.promotion import GateSpec
from tasks.data.load import DataSpec
from tasks.data.task import load_data
from tasks.models.base import BaseModelSpec
from tasks.validation.contract import ValidationInputs
from tasks.validation.task import ValidationRef, validate_data


@flow(name="validate", log_prints=True)
def validate(
    data: DataSpec,
    contract: ContractSpec | None = None,
    base_dir: str | None = None,
    method: str | None = None,
    base_model: BaseModelSpec | None = None,
    max_length: int | None = None,
    seed: int = settings.DEFAULT_SEED,
    gate: GateSpec | None = None,
    generation_rows: int | None = None,
) -> ValidationRef:
    """Load the data and check it against the contract; fail the run when an error check fails."""
    loaded = load_data(data, seed)
    out_dir = Path(settings.home()) / "validations" / loaded.fingerprint
    inputs = ValidationInputs(
        loaded,
        contract,
        Path(base_dir) if base_dir else None,
        method,
        base_model,
        max_length,
        gate,
        generation_rows,
    )
    report = validate_data(inputs, None, str(out_dir))
    if not report.passed:
        raise ContractFailed(f"{report.summary}\nReport: {report.report_html}", report)
    print(report.summary)
    return report
