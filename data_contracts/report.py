"""The typed result of a contract run, and its JSON, Markdown and HTML renderings."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    """One check: whether it passed, what was observed against which threshold, example rows."""

    name: str
    severity: str
    passed: bool
    observed: Any
    threshold: Any
    message: str
    examples: list[str] = field(default_factory=list)
    engine: str = "plain"  # "gx" when a Great Expectations expectation ran it

    @property
    def failed_error(self) -> bool:
        return not self.passed and self.severity == "error"


@dataclass(frozen=True)
class Report:
    contract: str
    n_train: int
    n_eval: int
    checks: list[CheckResult]
    # the Great Expectations runs behind the checks, (split, context): for Data Docs, not saved
    gx_runs: list[tuple[str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not any(c.failed_error for c in self.checks)

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed_error]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "warn"]

    def summary(self) -> str:
        """A short block naming each failing check, what it saw and example rows."""
        if self.passed:
            line = f"data contract '{self.contract}' passed ({self.n_train} train, {self.n_eval} eval rows)"
            if self.warnings:
                line += f"; warnings: {', '.join(c.name for c in self.warnings)}"
            return line
        lines = [f"data contract '{self.contract}' failed:"]
        for check in self.errors:
            lines.append(f"  - {check.name}: {check.message}")
            for example in check.examples[:3]:
                lines.append(f"      {example}")
        lines.append("Fix the data (or the contract's thresholds in the recipe) and run again.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "passed": self.passed,
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "errors": [c.name for c in self.errors],
            "warnings": [c.name for c in self.warnings],
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Report:
        """The report `to_dict` saved (without its GX runs: their Data Docs were built then)."""
        checks = [CheckResult(**check) for check in saved["checks"]]
        return cls(saved["contract"], saved["n_train"], saved["n_eval"], checks)

    def to_markdown(self) -> str:
        status = "passed" if self.passed else "FAILED"
        rows = [
            f"## Data contract `{self.contract}`: {status}",
            "",
            f"{self.n_train} train rows, {self.n_eval} eval rows.",
            "",
            "| check | severity | result | observed | threshold | detail |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.checks:
            result = "pass" if c.passed else ("**FAIL**" if c.severity == "error" else "warn")
            detail = c.message.replace("|", "\\|")
            if c.examples and not c.passed:
                detail += "<br>" + "<br>".join(e.replace("|", "\\|")[:120] for e in c.examples[:3])
            rows.append(
                f"| {c.name} | {c.severity} | {result} | {_fmt(c.observed)} | "
                f"{_fmt(c.threshold)} | {detail} |"
            )
        return "\n".join(rows)

    def to_html(self) -> str:
        status = "passed" if self.passed else "failed"
        body = [
            f"<h1>Data contract <code>{html.escape(self.contract)}</code>: {status}</h1>",
            f"<p>{self.n_train} train rows, {self.n_eval} eval rows.</p>",
            "<table><tr><th>check</th><th>engine</th><th>severity</th><th>result</th>"
            "<th>observed</th><th>threshold</th><th>detail</th><th>examples</th></tr>",
        ]
        for c in self.checks:
            result = "pass" if c.passed else ("FAIL" if c.severity == "error" else "warn")
            examples = "<br>".join(html.escape(e) for e in c.examples[:5])
            body.append(
                f"<tr class='{result.lower()}'><td>{html.escape(c.name)}</td><td>{c.engine}</td>"
                f"<td>{c.severity}</td><td>{result}</td><td>{html.escape(_fmt(c.observed))}</td>"
                f"<td>{html.escape(_fmt(c.threshold))}</td><td>{html.escape(c.message)}</td>"
                f"<td>{examples}</td></tr>"
            )
        body.append("</table>")
        style = (
            "body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            ".fail{background:#fdd}.warn{background:#ffd}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>Data contract "
            f"{html.escape(self.contract)}</title><style>{style}</style></head><body>"
            + "".join(body)
            + "</body></html>"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
