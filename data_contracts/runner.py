"""Running a contract: one Great Expectations suite for the checks GX has expectations for, plain
functions (same `CheckResult` shape) for the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from data_contracts.contract import (
    CheckConfig,
    Contract,
    MaxShare,
    MinRows,
    MinShare,
    TextLength,
)
from data_contracts.report import CheckResult, Report

TEXT_FIELD = {"classification": "text", "text": "text"}


@dataclass
class ContractData:
    """What a contract looks at: the normalised tables, the loader's issues, the label set."""

    format: str
    train: pd.DataFrame
    eval: pd.DataFrame
    required: list[str]
    labels: list[str] = field(default_factory=list)
    issues: list[Any] = field(default_factory=list)  # tasks.data.LoadIssue-shaped


# -- Great Expectations part ---------------------------------------------------------------------


def _gx_expectations(name: str, cfg: CheckConfig, data: ContractData) -> list[Any]:
    import great_expectations as gx

    text = TEXT_FIELD.get(data.format)
    meta = {"check": name}
    if name == "row_count" or name == "row_count_recommended":
        assert isinstance(cfg, MinRows)
        return [gx.expectations.ExpectTableRowCountToBeBetween(min_value=cfg.min, meta=meta)]
    if name == "required_fields":
        return [
            gx.expectations.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
            for col in data.required
        ]
    if name == "empty_text" and text:
        return [
            gx.expectations.ExpectColumnValuesToNotMatchRegex(
                column=text, regex=r"^\s*$", meta=meta
            )
        ]
    if name == "label_in_set" and data.format == "classification" and data.labels:
        return [
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="label", value_set=list(data.labels), meta=meta
            )
        ]
    if name == "text_length" and text:
        assert isinstance(cfg, TextLength)
        return [
            gx.expectations.ExpectColumnValueLengthsToBeBetween(
                column=text, min_value=cfg.min_chars, max_value=cfg.max_chars, meta=meta
            )
        ]
    if name == "exact_duplicates" and text:
        return [gx.expectations.ExpectColumnValuesToBeUnique(column=text, meta=meta)]
    return []


def _run_gx(frame: pd.DataFrame, expectations: list[Any]) -> list[Any]:
    if not expectations:
        return []
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("tuneline")
        .add_dataframe_asset("curated")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="contract"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="contract", data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": ["_where"],
            "partial_unexpected_count": 5,
        },
    )
    return list(result.results)


def _examples(result: dict[str, Any]) -> list[str]:
    out = []
    for item in result.get("partial_unexpected_index_list") or []:
        where = item.get("_where", "?")
        value = next((v for k, v in item.items() if k != "_where"), None)
        out.append(f"{where}: {str(value)[:100]!r}")
    return out


def _interpret_gx(name: str, cfg: CheckConfig, results: list[Any], n_rows: int) -> CheckResult:
    if name in ("row_count", "row_count_recommended"):
        assert isinstance(cfg, MinRows)
        observed = results[0].result.get("observed_value")
        ok = bool(results[0].success)
        msg = f"{observed} training rows, need at least {cfg.min}"
        if name == "row_count_recommended" and not ok:
            msg += " to expect a gain from fine-tuning (about 1,000 for solid results)"
        return CheckResult(name, cfg.severity, ok, observed, cfg.min, msg, [], "gx")
    unexpected = sum(int(r.result.get("unexpected_count") or 0) for r in results)
    examples = [e for r in results for e in _examples(r.result)]
    share = unexpected / n_rows if n_rows else 0.0
    if isinstance(cfg, MaxShare):
        ok = share <= cfg.max_share
        threshold: Any = cfg.max_share
    else:
        ok = all(bool(r.success) for r in results)
        threshold = None
    descriptions = {
        "required_fields": "rows with a missing required field",
        "empty_text": "rows with empty or whitespace-only text",
        "label_in_set": "rows whose label is outside the declared label set",
        "text_length": "rows with text outside the length bounds",
        "exact_duplicates": "rows whose text appears more than once",
    }
    msg = f"{unexpected} {descriptions.get(name, 'unexpected rows')} ({share:.1%})"
    if isinstance(cfg, TextLength):
        threshold = [cfg.min_chars, cfg.max_chars]
        msg += f", bounds {cfg.min_chars}..{cfg.max_chars} characters"
    return CheckResult(name, cfg.severity, ok, round(share, 6), threshold, msg, examples, "gx")


# -- plain checks (no GX expectation fits) -------------------------------------------------------


def _malformed(cfg: CheckConfig, data: ContractData) -> CheckResult:
    assert isinstance(cfg, MaxShare)
    bad = [i for i in data.issues if getattr(i, "kind", "malformed") in ("malformed", "encoding")]
    total = len(data.train) + len(data.eval) + len(bad)
    share = len(bad) / total if total else 0.0
    examples = [f"{i.where}: {i.problem}" for i in bad[:5]]
    return CheckResult(
        "malformed_records",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(bad)} records could not be read ({share:.1%})",
        examples,
    )


def _conflicting_labels(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "classification":
        return None
    assert isinstance(cfg, MaxShare)
    frame = data.train.dropna(subset=["text", "label"])
    per_text = frame.groupby("text", sort=False)["label"].nunique()
    conflicted = per_text[per_text > 1].index
    rows = frame[frame["text"].isin(conflicted)]
    share = len(rows) / len(frame) if len(frame) else 0.0
    examples = [
        f"{w}: {str(t)[:80]!r} labelled {lab!r}"
        for w, t, lab in rows[["_where", "text", "label"]].head(5).itertuples(index=False)
    ]
    return CheckResult(
        "conflicting_labels",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(conflicted)} texts carry more than one label ({len(rows)} rows, {share:.1%})",
        examples,
    )


def _label_balance(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "classification":
        return None
    assert isinstance(cfg, MinShare)
    counts = data.train["label"].value_counts()
    labels = data.labels or list(counts.index)
    shares = {lab: float(counts.get(lab, 0)) / max(len(data.train), 1) for lab in labels}
    smallest = min(shares, key=lambda k: shares[k]) if shares else None
    low = shares.get(smallest, 0.0) if smallest is not None else 0.0
    ok = low >= cfg.min_share and len(labels) >= 2
    msg = f"smallest class '{smallest}' is {low:.1%} of train"
    if len(labels) < 2:
        msg = f"only {len(labels)} label(s) in train; classification needs at least two"
    return CheckResult(
        "label_balance",
        cfg.severity,
        ok,
        round(low, 6),
        cfg.min_share,
        msg,
        [f"{k}: {v:.1%}" for k, v in sorted(shares.items())],
    )


def _contamination_exact(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    field_name = TEXT_FIELD.get(data.format) or data.required[0]
    if field_name not in data.eval or field_name not in data.train or not len(data.eval):
        return None
    assert isinstance(cfg, MaxShare)
    train_keys = set(data.train[field_name].dropna().map(_norm))
    leaked = data.eval[
        data.eval[field_name]
        .dropna()
        .map(_norm)
        .isin(train_keys)
        .reindex(data.eval.index, fill_value=False)
    ]
    share = len(leaked) / len(data.eval)
    examples = [
        f"{w}: {str(t)[:100]!r}"
        for w, t in leaked[["_where", field_name]].head(5).itertuples(index=False)
    ]
    return CheckResult(
        "contamination_exact",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(leaked)} eval rows also appear in train ({share:.1%})",
        examples,
    )


def _norm(value: Any) -> str:
    return " ".join(str(value).lower().split())


PLAIN_CHECKS: dict[str, Callable[[CheckConfig, ContractData], CheckResult | None]] = {
    "malformed_records": _malformed,
    "conflicting_labels": _conflicting_labels,
    "label_balance": _label_balance,
    "contamination_exact": _contamination_exact,
}


def run_contract(contract: Contract, data: ContractData) -> Report:
    """Run every enabled check of `contract` on `data`; the report lists them in contract order."""
    active = {n: c for n, c in contract.checks.items() if c.severity != "off"}
    planned: dict[str, list[Any]] = {}
    for name, cfg in active.items():
        if name not in PLAIN_CHECKS:
            planned[name] = _gx_expectations(name, cfg, data)
    flat = [e for exps in planned.values() for e in exps]
    by_check: dict[str, list[Any]] = {}
    for res in _run_gx(data.train, flat):
        by_check.setdefault(res.expectation_config.meta["check"], []).append(res)
    results: list[CheckResult] = []
    for name, cfg in active.items():
        if name in PLAIN_CHECKS:
            outcome = PLAIN_CHECKS[name](cfg, data)
            if outcome is not None:
                results.append(outcome)
        elif by_check.get(name):
            results.append(_interpret_gx(name, cfg, by_check[name], len(data.train)))
    return Report(contract.name, len(data.train), len(data.eval), results)
