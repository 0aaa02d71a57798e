"""Reading a contract: the YAML file, the recipe's overrides, and each check's typed thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTRACTS_DIR = Path(__file__).resolve().parent
Severity = Literal["error", "warn", "off"]


class CheckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity = Field(default="error", description="error stops the run; warn reports.")


class MaxShare(CheckConfig):
    max_share: float = Field(default=0.0, ge=0.0, le=1.0, description="Largest share allowed.")


class MinRows(CheckConfig):
    min: int = Field(ge=0, description="Fewest training rows allowed.")


class TextLength(CheckConfig):
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=20000, ge=1)


class MinShare(CheckConfig):
    min_share: float = Field(default=0.1, ge=0.0, le=1.0)


# Every check a contract may name, with the shape of its thresholds.
CHECK_CONFIGS: dict[str, type[CheckConfig]] = {
    "malformed_records": MaxShare,
    "row_count": MinRows,
    "row_count_recommended": MinRows,
    "required_fields": CheckConfig,
    "empty_text": MaxShare,
    "label_in_set": CheckConfig,
    "text_length": TextLength,
    "exact_duplicates": MaxShare,
    "conflicting_labels": MaxShare,
    "label_balance": MinShare,
    "contamination_exact": MaxShare,
}


class ContractSpec(BaseModel):
    """The contract a recipe uses, with optional threshold overrides."""

    model_config = ConfigDict(extra="forbid")

    use: str = Field(
        default="classification",
        description="A shipped contract name (file in data_contracts/) or a path to a YAML file.",
    )
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-check overrides, e.g. `{row_count: {min: 50}, label_balance: "
        "{severity: error}}`.",
    )


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    format: str
    checks: dict[str, CheckConfig]


class ContractError(ValueError):
    """A contract file or override is not valid."""


def _locate(use: str, base_dir: Path | None) -> Path:
    candidate = Path(use)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_absolute() and base_dir is not None:
            candidate = base_dir / candidate
        if candidate.is_file():
            return candidate
        raise ContractError(f"contract.use: file '{use}' not found")
    shipped = CONTRACTS_DIR / f"{use}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONTRACTS_DIR.glob("*.yaml"))
    raise ContractError(f"contract.use: unknown contract '{use}'; shipped ones: {', '.join(names)}")


def load_contract(spec: ContractSpec | str, base_dir: Path | None = None) -> Contract:
    """Read the contract YAML and apply the recipe's overrides, checking every key."""
    if isinstance(spec, str):
        spec = ContractSpec(use=spec)
    path = _locate(spec.use, base_dir)
    raw = yaml.safe_load(path.read_text()) or {}
    checks_raw: dict[str, dict[str, Any]] = dict(raw.get("checks") or {})
    for name, override in spec.checks.items():
        if name not in checks_raw and name not in CHECK_CONFIGS:
            raise ContractError(
                f"contract.checks.{name}: unknown check; valid: {', '.join(CHECK_CONFIGS)}"
            )
        checks_raw[name] = {**checks_raw.get(name, {}), **(override or {})}
    checks: dict[str, CheckConfig] = {}
    for name, values in checks_raw.items():
        config_cls = CHECK_CONFIGS.get(name)
        if config_cls is None:
            raise ContractError(
                f"{path.name}: unknown check '{name}'; valid: {', '.join(CHECK_CONFIGS)}"
            )
        try:
            checks[name] = config_cls(**(values or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            allowed = ", ".join(config_cls.model_fields)
            raise ContractError(
                f"contract check '{name}': {where}: {err['msg']} (keys: {allowed})"
            ) from None
    return Contract(
        name=raw.get("name", path.stem), format=raw.get("format", "classification"), checks=checks
    )
