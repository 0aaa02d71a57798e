"""Contract reports kept by what they depend on (STYLE 5): the data's fingerprint and sources,
the contract as read, the method, tokenizer, length and gate it was sized for, and the code and
Great Expectations versions. A retrain on the same data with other training settings, or a
`tuneline validate` after a run, reads the report back instead of running the contract again."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from data_contracts import Report, load_contract
from data_contracts.contract import ContractError
from data_contracts.runner import data_docs
from tasks.core import settings
from tasks.core.atomic import staged
from tasks.core.errors import RecipeError
from tasks.core.locks import file_lock
from tasks.validation.contract import ValidationInputs

REPORT_JSON, REPORT_HTML, DOCS = "data_contract.json", "data_contract.html", "data_docs"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def key_of(inputs: ValidationInputs) -> str:
    """The cache key of a contract run; a contract that cannot be read is the user's error."""
    try:
        contract = load_contract(inputs.spec, inputs.base_dir, inputs.data.format)
    except ContractError as exc:
        raise RecipeError(str(exc)) from None
    counts_tokens = inputs.model is not None and inputs.max_length
    payload = [
        inputs.data.fingerprint,
        inputs.data.sources,
        contract.name,
        contract.format,
        # each check dumped as its own class: the field is typed as the base class, whose dump
        # would drop every threshold
        {name: check.model_dump(mode="json") for name, check in contract.checks.items()},
        inputs.method,
        inputs.model.model_dump(mode="json") if inputs.model and counts_tokens else None,
        inputs.max_length,
        inputs.gate.model_dump(mode="json") if inputs.gate else None,
        inputs.generation_rows,
        settings.code_version(),
        _version("great_expectations"),
    ]
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def save_report(report: Report, folder: Path) -> None:
    """The report as JSON and HTML, and GX's Data Docs of its suites, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(report.to_json())
    (folder / REPORT_HTML).write_text(report.to_html())
    cache = settings.user_cache()
    data_docs(report, folder / DOCS, cache / "gx-templates" if cache is not None else None)


def read_report(folder: Path) -> Report:
    """The report saved in `folder` by `save_report`."""
    return Report.from_dict(json.loads((folder / REPORT_JSON).read_text()))


def report_folder(inputs: ValidationInputs) -> tuple[Path, bool]:
    """The folder holding the report for `inputs` (JSON, HTML, GX Data Docs), and whether it was
    kept from before; the contract runs now when it was not. One process runs a key at a time,
    the others wait for its result."""
    key = key_of(inputs)
    folder = settings.cache_dir("validation") / key
    with file_lock(f"validation-{key}"):
        if (folder / REPORT_JSON).is_file():
            return folder, True
        report = inputs.run()
        with staged(folder, replace=False) as tmp:
            save_report(report, tmp)
    return folder, False
