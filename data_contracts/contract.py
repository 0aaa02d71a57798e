"""Reading a contract: the YAML file, the recipe's overrides, and each check's typed thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTRACTS_DIR = Path(__file__).resolve().parent
Severity = Literal["error", "warn", "off"]

# The contract a recipe gets when it names none, by data format.
DEFAULT_FOR_FORMAT = {
    "classification": "classification",
    "prompt-completion": "instructions",
    "alpaca": "instructions",
    "chat": "chat",
    "preference": "preference",
    "text": "text",
}


class CheckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity = Field(default="error", description="error stops the run; warn reports.")


class MaxShare(CheckConfig):
    max_share: float = Field(default=0.0, ge=0.0, le=1.0, description="Largest share allowed.")


class MinRows(CheckConfig):
    min: int = Field(ge=0, description="Fewest training rows allowed.")


class MethodMinimum(CheckConfig):
    minimums: dict[str, int] = Field(
        default_factory=dict, description="Fewest training rows each method should have."
    )


class TextLength(CheckConfig):
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=20000, ge=1)


class MinShare(CheckConfig):
    min_share: float = Field(default=0.1, ge=0.0, le=1.0)


class Sampled(CheckConfig):
    sample_rows: int = Field(
        default=10000, ge=100, description="Rows examined (a uniform sample when there are more)."
    )


class TokenLength(Sampled):
    max_truncated_share: float = Field(default=0.05, ge=0.0, le=1.0)


class NearDuplicates(Sampled):
    max_share: float = Field(default=0.1, ge=0.0, le=1.0)
    threshold: float = Field(default=0.85, gt=0.0, le=1.0, description="MinHash Jaccard threshold.")
    num_perm: int = Field(default=64, ge=16, le=512)
    shingle: int = Field(default=3, ge=1, le=10, description="Word n-gram size of the shingles.")


class DistinctNgrams(Sampled):
    n: int = Field(default=2, ge=1, le=5)
    min_ratio: float = Field(default=0.25, ge=0.0, le=1.0)


class LengthBias(CheckConfig):
    max_share: float = Field(
        default=0.9,
        ge=0.5,
        le=1.0,
        description="Largest share of pairs whose chosen side is longer (or shorter).",
    )


class ChatStructure(MaxShare):
    roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant", "tool"])


# Every check a contract may name, with the shape of its thresholds.
CHECK_CONFIGS: dict[str, type[CheckConfig]] = {
    "malformed_records": MaxShare,
    "encoding": MaxShare,
    "row_count": MinRows,
    "row_count_recommended": MinRows,
    "method_minimum": MethodMinimum,
    "required_fields": CheckConfig,
    "empty_text": MaxShare,
    "label_in_set": CheckConfig,
    "label_count": CheckConfig,
    "eval_size": CheckConfig,
    "text_length": TextLength,
    "token_length": TokenLength,
    "exact_duplicates": MaxShare,
    "conflicting_labels": MaxShare,
    "label_balance": MinShare,
    "near_duplicates": NearDuplicates,
    "distinct_ngrams": DistinctNgrams,
    "contamination_exact": MaxShare,
    "contamination_near": NearDuplicates,
    "chat_structure": ChatStructure,
    "preference_pairs": MaxShare,
    "preference_length_bias": LengthBias,
}


class ContractSpec(BaseModel):
    """The contract a recipe uses, with optional threshold overrides."""

    model_config = ConfigDict(extra="forbid")

    use: str | None = Field(
        default=None,
        description="A shipped contract name (file in data_contracts/) or a path to a YAML file; "
        "by default the one for the data format.",
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


def shipped() -> list[str]:
    return sorted(p.stem for p in CONTRACTS_DIR.glob("*.yaml"))


def _locate(use: str, base_dir: Path | None) -> Path:
    candidate = Path(use)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_absolute() and base_dir is not None:
            candidate = base_dir / candidate
        if candidate.is_file():
            return candidate
        raise ContractError(f"contract.use: file '{use}' not found")
    shipped_file = CONTRACTS_DIR / f"{use}.yaml"
    if shipped_file.is_file():
        return shipped_file
    raise ContractError(
        f"contract.use: unknown contract '{use}'; shipped ones: {', '.join(shipped())}"
    )


def load_contract(
    spec: ContractSpec | str | None,
    base_dir: Path | None = None,
    data_format: str = "classification",
) -> Contract:
    """Read the contract YAML and apply the recipe's overrides, checking every key."""
    if spec is None or isinstance(spec, str):
        spec = ContractSpec(use=spec)
    use = spec.use or DEFAULT_FOR_FORMAT.get(data_format, "classification")
    path = _locate(use, base_dir)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ContractError(f"{path.name}: not valid YAML ({exc})") from None
    checks_raw: dict[str, dict[str, Any]] = dict(raw.get("checks") or {})
    for name, override in spec.checks.items():
        if name not in CHECK_CONFIGS:
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
        name=raw.get("name", path.stem), format=raw.get("format", data_format), checks=checks
    )
