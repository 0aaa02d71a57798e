"""Data contracts: YAML files of checks with thresholds and severities, and the code that runs them.

`load_contract(name_or_path, overrides)` reads a contract; `run_contract(contract, data)` runs it
(Great Expectations for what GX has an expectation for, plain functions with the same result shape
for the rest) and returns a `Report`.
"""

from data_contracts.contract import Contract, ContractSpec, load_contract
from data_contracts.report import CheckResult, Report
from data_contracts.runner import ContractData, run_contract

__all__ = [
    "CheckResult",
    "Contract",
    "ContractData",
    "ContractSpec",
    "Report",
    "load_contract",
    "run_contract",
]
