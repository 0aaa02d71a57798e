"""Registration hands MLflow trl's map of installed modules to distributions instead of MLflow
scanning every installed file again (`register.distributions_known_from_trl`)."""

from __future__ import annotations

import importlib

import importlib_metadata

from tasks.registry.register import distributions_known_from_trl

TRL = importlib.import_module("trl.import_utils")  # trl's lazy package hides it as an attribute


def test_mlflow_gets_trls_map_and_the_scan_comes_back() -> None:
    original = importlib_metadata.packages_distributions
    with distributions_known_from_trl():
        handed = importlib_metadata.packages_distributions()
        again = importlib_metadata.packages_distributions()
    assert importlib_metadata.packages_distributions is original
    assert handed == {k: list(v) for k, v in TRL.PACKAGE_DISTRIBUTION_MAPPING.items()}
    assert "torch" in handed["torch"] and "mlflow" in handed["mlflow"]
    handed["torch"].append("changed")  # MLflow adds to the map it gets: a copy each time
    assert "changed" not in again["torch"]
    assert "changed" not in TRL.PACKAGE_DISTRIBUTION_MAPPING["torch"]


def test_the_map_is_the_one_mlflow_would_make() -> None:
    scanned = importlib_metadata.packages_distributions()
    with distributions_known_from_trl():
        handed = importlib_metadata.packages_distributions()
    for module in ("torch", "transformers", "peft", "mlflow", "prefect", "yaml"):
        assert sorted(handed[module]) == sorted(scanned[module]), module
