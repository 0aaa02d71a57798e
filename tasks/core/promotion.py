"""The promotion gate as a pure function: the candidate's per-row eval results, the champion's and
the base model's on the same rows, in; a decision with reasons out. Moving MLflow aliases and
fetching the champion's rows is someone else's job (tasks.registry.register).

Every comparison (against the base model, against the champion) is paired on the eval rows both
models were scored on and carries its uncertainty: an interval for the improvement at
`gate.confidence`. Shares of rows right (accuracy, exact match, preference accuracy) use the exact
interval that goes with McNemar's test (Clopper-Pearson on the discordant rows); every other
metric (macro F1, loss, perplexity, ROUGE-L, mean reward) a seeded paired bootstrap, so the same
rows always give the same decision. A comparison passes when the interval's lower bound clears
the margin (`beat_champion_by` against the champion, 0 against the base).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_METRIC = "accuracy"  # the gate's metric when neither the recipe nor its method names one


class GateSpec(BaseModel):
    """When a newly trained version may become `champion`."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        default=None,
        description="Metric the gate compares (eval split). Default by method: accuracy "
        "(classification), perplexity (pretrain, sft; lower is better), preference_accuracy "
        "(dpo, kto, reward), mean_reward (rlhf).",
    )
    min: float | None = Field(
        default=None,
        description="Lowest acceptable value of `metric` (highest, for eval_loss and perplexity).",
    )
    beat_base: bool = Field(
        default=True,
        description="Must beat the untrained base model: the lower bound of the improvement on "
        "the same eval rows must be above 0.",
    )
    beat_champion_by: float = Field(
        default=0.0,
        ge=0.0,
        description="Margin over the current champion, in metric units (0.01 = one point of "
        "accuracy): the lower bound of the improvement on the same eval rows must be above it; "
        "0 means better beyond the noise of the eval set.",
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        description="Confidence of the interval every gate comparison is decided on (two-sided; "
        "0.95 gives a 95% interval).",
    )
    detect_gain: float = Field(
        default=0.10,
        gt=0.0,
        le=1.0,
        description="Smallest improvement the eval set must be able to show, in metric units "
        "(0.10 = 10 points): before training, the data contract stops an eval set too small for "
        "the gate's test to ever show it at `confidence` over `beat_champion_by`. For metrics "
        "that are not a share of rows (loss, perplexity, ROUGE-L, rewards) it asks only for the "
        "fewest rows a paired test can decide on.",
    )
    guards: dict[str, float] = Field(
        default_factory=dict,
        description="Other metrics that must not drop below the champion's by more than the "
        "given amount, e.g. `{f1: 0.01}`: the lower bound of the change on the same eval rows "
        "must stay above minus that amount. `previous_eval: 0.01` is the forgetting guard of a "
        "run started from a registered version (`train.init_from`): on the eval set that "
        "version was judged on, the gate metric must not drop below that version's by more.",
    )

    @model_validator(mode="after")
    def _gain_above_margin(self) -> GateSpec:
        if self.detect_gain <= self.beat_champion_by:
            raise ValueError(
                f"detect_gain {self.detect_gain} must be larger than beat_champion_by "
                f"{self.beat_champion_by} (a gain at the margin can never clear it)"
            )
        return self

    @property
    def metric_name(self) -> str:
        """The metric the gate compares: the recipe's (which the method's default fills), else
        `DEFAULT_METRIC`."""
        return self.metric or DEFAULT_METRIC


# The guard bounding the drop on the eval set a continued run's parent version was judged on.
PREVIOUS_EVAL = "previous_eval"
# Metrics where lower is better; every other metric is better higher.
LOWER_IS_BETTER = frozenset({"eval_loss", "perplexity"})
# Per row 0 or 1, the metric their mean: McNemar's exact test and its interval.
SHARE_METRICS = frozenset({"accuracy", "exact_match", "preference_accuracy"})
# Bounded by 0 and 1: differences are shown in points (hundredths).
POINT_METRICS = SHARE_METRICS | {"f1", "rougeL"}
# The per-row columns (tasks.evaluation.classifier / tasks.evaluation.causal write them) each metric is made of.
COLUMNS: dict[str, tuple[str, ...]] = {
    "accuracy": ("correct",),
    "f1": ("label", "prediction"),
    "exact_match": ("exact_match",),
    "rougeL": ("rougeL",),
    "preference_accuracy": ("margin",),
    "reward_margin": ("margin",),
    "mean_reward": ("reward",),
    "eval_loss": ("loss_sum", "tokens"),
    "perplexity": ("loss_sum", "tokens"),
}
# What a collapsed model repeats on every row: the class, or the greedy answer.
ANSWER_COLUMNS = ("prediction", "answer")
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


# -- per-row results ---------------------------------------------------------------------------


def row_key(*content: Any) -> str:
    """The identity of one eval row: a hash of its content (not its file:line, which moves when a
    file is rewritten)."""
    payload = json.dumps(content, default=str, ensure_ascii=False)
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def unique_keys(keys: list[str]) -> list[str]:
    """Repeated rows kept apart: the k-th copy of a row gets `#k`."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return out


@dataclass(frozen=True)
class RowScores:
    """One model's results on the eval rows: per row, its key and its values by column (a column
    may be None on rows it was not measured on, e.g. generations on the first rows only)."""

    keys: list[str]
    columns: dict[str, list[Any]]

    def metric_rows(self, metric: str) -> dict[str, tuple[Any, ...]]:
        """Row key -> the row's values for `metric`, for the rows where it was measured."""
        names = COLUMNS.get(metric)
        if not names or any(n not in self.columns for n in names):
            return {}
        values = [self.columns[n] for n in names]
        return {
            key: tuple(row)
            for key, *row in zip(self.keys, *values, strict=True)
            if all(v is not None for v in row)
        }


def rows_from_records(records: list[dict[str, Any]]) -> tuple[RowScores, RowScores | None]:
    """The fine-tuned model's and the base model's per-row results from a saved eval table:
    `eval_predictions.jsonl` of a classifier (text, label, prediction, base_prediction) or
    `eval_rows.jsonl` of a causal LM (key, model, base)."""
    if records and "model" in records[0]:
        keys = unique_keys([str(r["key"]) for r in records])
        model = _columns(keys, [r.get("model") or {} for r in records])
        bases = [r.get("base") for r in records]
        base = _columns(keys, [b or {} for b in bases]) if any(bases) else None
        return model, base
    keys = unique_keys([row_key(r.get("text"), r.get("label")) for r in records])

    def scored(field_name: str) -> RowScores:
        return RowScores(
            keys,
            {
                "correct": [_correct(r, field_name) for r in records],
                "label": [r.get("label") for r in records],
                "prediction": [r.get(field_name) for r in records],
            },
        )

    has_base = any(r.get("base_prediction") is not None for r in records)
    return scored("prediction"), scored("base_prediction") if has_base else None


def _correct(record: dict[str, Any], field_name: str) -> float | None:
    value = record.get(field_name)
    return None if value is None else float(value == record.get("label"))


def _columns(keys: list[str], rows: list[dict[str, Any]]) -> RowScores:
    names = sorted({n for r in rows for n in r})
    return RowScores(keys, {n: [r.get(n) for r in rows] for n in names})


# -- statistics --------------------------------------------------------------------------------


def _statistic(metric: str) -> Callable[[list[np.ndarray], np.ndarray], np.ndarray]:
    """`metric` from the per-row columns under resampling weights `w` (resamples x rows); row i
    counted w[b, i] times in resample b."""

    def mean(cols: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        return np.asarray(w @ cols[0] / w.sum(axis=1))

    def share_positive(cols: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        return np.asarray(w @ (cols[0] > 0).astype(float) / w.sum(axis=1))

    def loss(cols: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        return np.asarray(w @ cols[0] / np.maximum(w @ cols[1], 1e-12))

    def perplexity(cols: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        return np.exp(np.minimum(loss(cols, w), 50.0))

    def macro_f1(cols: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        truth, pred = cols
        total = np.zeros(w.shape[0])
        present = np.zeros(w.shape[0])
        for label in np.union1d(truth, pred):
            tp = w @ ((truth == label) & (pred == label)).astype(float)
            fp = w @ ((truth != label) & (pred == label)).astype(float)
            fn = w @ ((truth == label) & (pred != label)).astype(float)
            denominator = 2 * tp + fp + fn
            seen = denominator > 0  # a class absent from a resample is not averaged (sklearn)
            total += np.where(seen, 2 * tp / np.where(seen, denominator, 1.0), 0.0)
            present += seen
        return np.asarray(total / np.maximum(present, 1))

    table: dict[str, Callable[[list[np.ndarray], np.ndarray], np.ndarray]] = {
        "f1": macro_f1,
        "preference_accuracy": share_positive,
        "eval_loss": loss,
        "perplexity": perplexity,
    }
    return table.get(metric, mean)


def mcnemar_interval(wins: int, losses: int, n: int, confidence: float) -> tuple[float, float]:
    """Interval for the difference of two paired shares of `n` rows, where the candidate is right
    and the reference wrong on `wins` rows, the reverse on `losses`: the exact (Clopper-Pearson)
    interval for the share of wins among the discordant rows, scaled to all rows. Its lower bound
    is above 0 exactly when McNemar's exact test says the candidate is better at this level."""
    from scipy.stats import beta  # type: ignore[import-untyped]

    discordant = wins + losses
    if discordant == 0 or n == 0:
        return 0.0, 0.0
    tail = (1.0 - confidence) / 2
    low = 0.0 if wins == 0 else float(beta.ppf(tail, wins, losses + 1))
    high = 1.0 if losses == 0 else float(beta.ppf(1 - tail, wins + 1, losses))
    scale = discordant / n
    return scale * (2 * low - 1), scale * (2 * high - 1)


def bootstrap_interval(
    metric: str,
    candidate: list[np.ndarray],
    reference: list[np.ndarray],
    confidence: float,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of (candidate - reference) under a paired bootstrap: both models'
    `metric` on the same resampled rows, seeded so the same rows give the same interval."""
    stat = _statistic(metric)
    n = len(candidate[0])
    rng = np.random.default_rng(seed)
    diffs: list[np.ndarray] = []
    for start in range(0, resamples, 250):
        size = min(250, resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        diffs.append(stat(candidate, weights) - stat(reference, weights))
    spread = np.concatenate(diffs)
    tail = (1.0 - confidence) / 2
    return float(np.quantile(spread, tail)), float(np.quantile(spread, 1 - tail))


def fewest_rows(confidence: float) -> int:
    """The fewest paired rows on which any paired test can clear at `confidence`: even when the
    candidate is better on every row, a sign test needs 0.5**n below the tail."""
    return math.ceil(math.log2(2.0 / (1.0 - confidence)) - 1e-12)


def rows_needed(metric: str, gain: float, margin: float, confidence: float) -> int:
    """The fewest eval rows on which a true improvement of `gain` could ever clear the gate: for a
    share of rows, in the best case (the candidate right on `gain * n` more rows and wrong on none
    the other got right), the lower bound of McNemar's exact interval must clear `margin`. Real
    models disagree both ways, so more rows are needed in practice; fewer can never be enough.
    For other metrics (no fixed scale before training): the fewest rows a paired test can decide
    on. Macro F1 moves with accuracy and is sized like it."""
    floor = fewest_rows(confidence)
    if metric not in POINT_METRICS or metric == "rougeL" or gain <= margin:
        return floor
    n = max(floor, math.ceil(floor / gain))
    while n < 10_000_000:
        wins = math.floor(gain * n + 1e-9)
        if wins >= floor and mcnemar_interval(wins, 0, n, confidence)[0] > margin:
            return n
        n += max(1, n // 200)  # "about N": steps of 0.5% once N is large
    return n


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of the candidate with a reference model on the same eval rows."""

    against: str  # "base model" | "champion (version 3)"
    metric: str
    value: float  # the candidate on the paired rows
    reference: float  # the reference on the same rows
    improvement: float  # candidate over reference, positive = better (lower, for losses)
    low: float
    high: float
    n: int
    confidence: float
    test: str
    margin: float
    passed: bool

    def interval_text(self) -> str:
        """'+1.2 points, 95% interval [+0.4, +2.0], n = 1,000'."""
        level = f"{self.confidence * 100:g}%"
        if self.metric in POINT_METRICS:
            amount = f"{self.improvement * 100:+.1f} points"
            bounds = f"[{self.low * 100:+.1f}, {self.high * 100:+.1f}]"
        else:
            better = "lower" if self.metric in LOWER_IS_BETTER else "higher"
            amount = f"{self.improvement:+.4g} ({better} is better)"
            bounds = f"[{self.low:+.4g}, {self.high:+.4g}]"
        return f"{amount}, {level} interval {bounds}, n = {self.n:,}"

    def reason(self) -> str:
        margin = (
            f"{self.margin * 100:+.1f} points"
            if self.metric in POINT_METRICS
            else f"{self.margin:+.4g}"
        )
        verdict = "clears" if self.passed else "does not clear"
        word = "beats" if self.passed else "does not beat"
        return (
            f"{self.metric} {self.value:.4f} {word} {self.against} {self.reference:.4f}: "
            f"{self.interval_text()} ({self.test}); the lower bound {verdict} {margin}"
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def summary(self) -> str:
        verdict = "promoted to champion" if self.promote else "not promoted"
        return f"{verdict}: " + "; ".join(self.reasons)

    def tags(self) -> dict[str, str]:
        """The comparisons as registry tags: `gate.<base|champion>.<metric>` holds the one-line
        interval, `.low`, `.high`, `.improvement`, `.n` and `.test` its parts."""
        out: dict[str, str] = {}
        for c in self.comparisons:
            side = "champion" if c.against.startswith("champion") else "base"
            if c.against.startswith("parent"):
                side = PREVIOUS_EVAL
            prefix = f"gate.{side}.{c.metric}"
            out.update(
                {
                    f"{prefix}": c.interval_text(),
                    f"{prefix}.improvement": f"{c.improvement:.6f}",
                    f"{prefix}.low": f"{c.low:.6f}",
                    f"{prefix}.high": f"{c.high:.6f}",
                    f"{prefix}.n": str(c.n),
                    f"{prefix}.test": c.test,
                }
            )
        return out


def decision_markdown(promoted: bool, reasons: list[str]) -> str:
    """The decision as a short markdown page (the Prefect artifact)."""
    verdict = "promoted to champion" if promoted else "not promoted"
    return f"**{verdict}**\n\n" + "\n".join(f"- {r}" for r in reasons)


def compare(
    metric: str,
    candidate: RowScores,
    reference: RowScores,
    against: str,
    margin: float,
    confidence: float,
) -> Comparison | str:
    """The paired comparison of `candidate` with `reference` on the rows both were scored on, or
    why there is none."""
    mine, theirs = candidate.metric_rows(metric), reference.metric_rows(metric)
    if not mine:
        return f"the candidate has no per-row {metric} results"
    if not theirs:
        return f"the {against} has no per-row {metric} results"
    shared = [k for k in mine if k in theirs]
    if len(shared) < fewest_rows(confidence):
        return (
            f"only {len(shared)} eval rows are shared with the {against} (of {len(mine)}); "
            f"a paired comparison needs at least {fewest_rows(confidence)}"
        )
    width = len(COLUMNS[metric])
    cand = [np.asarray([mine[k][i] for k in shared]) for i in range(width)]
    ref = [np.asarray([theirs[k][i] for k in shared]) for i in range(width)]
    if metric != "f1":
        cand, ref = [c.astype(float) for c in cand], [r.astype(float) for r in ref]
    ones = np.ones((1, len(shared)))
    stat = _statistic(metric)
    value, other = float(stat(cand, ones)[0]), float(stat(ref, ones)[0])
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if metric in SHARE_METRICS:
        right = _rights(metric, cand)
        theirs_right = _rights(metric, ref)
        wins = int(np.sum(right & ~theirs_right))
        losses = int(np.sum(~right & theirs_right))
        low, high = mcnemar_interval(wins, losses, len(shared), confidence)
        test = f"McNemar exact, {wins} rows won, {losses} lost"
    else:
        low, high = bootstrap_interval(metric, cand, ref, confidence)
        if sign < 0:
            low, high = -high, -low
        test = f"paired bootstrap, {BOOTSTRAP_RESAMPLES} resamples"
    improvement = sign * (value - other)
    kept = (
        f" ({len(shared)} of the candidate's {len(mine)} rows)" if len(shared) < len(mine) else ""
    )
    return Comparison(
        against + kept,
        metric,
        value,
        other,
        improvement,
        low,
        high,
        len(shared),
        confidence,
        test,
        margin,
        low > margin,
    )


def _rights(metric: str, cols: list[np.ndarray]) -> np.ndarray:
    return (cols[0] > 0) if metric == "preference_accuracy" else (cols[0] > 0.5)


def collapsed(candidate: RowScores) -> str | None:
    """Why the candidate is degenerate (one class, or one greedy answer, on every eval row)."""
    for column in ANSWER_COLUMNS:
        values = [v for v in candidate.columns.get(column, []) if v is not None]
        if len(values) >= 2 and len(set(map(str, values))) == 1:
            what = "prediction" if column == "prediction" else "greedy answer"
            shown = str(values[0])[:60]
            return (
                f"every one of the {len(values)} eval rows gets the same {what} ({shown!r}): a "
                "model that always says one thing is never promoted"
            )
    return None


def decide_promotion(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    base: dict[str, float] | None,
    gate: GateSpec,
    candidate_rows: RowScores | None = None,
    champion_rows: RowScores | None = None,
    base_rows: RowScores | None = None,
    champion_name: str = "champion",
    previous: PreviousEval | None = None,
) -> Decision:
    """Whether `candidate` takes `champion`, and why (every rule is reported, pass or fail).

    `candidate`, `champion` and `base` are the eval metrics (the minimum is checked on them); the
    comparisons are paired on the per-row results `*_rows`. Without the champion's per-row
    results, or without eval rows shared with it, the candidate is not promoted: an unpaired
    comparison of two figures cannot tell a gain from the noise of the eval set (promote by hand
    with `tuneline promote` after a look). For loss-like metrics (`LOWER_IS_BETTER`) the minimum
    is a maximum and beating is being lower. `previous` (a run started from a registered
    version) feeds the `previous_eval` guard."""
    name = gate.metric_name
    lower = name in LOWER_IS_BETTER
    if name not in candidate:
        return Decision(False, [f"metric '{name}' was not measured for the candidate"])
    value = candidate[name]
    ok = True
    reasons: list[str] = []
    comparisons: list[Comparison] = []
    if candidate_rows is not None and (why := collapsed(candidate_rows)):
        ok = False
        reasons.append(why)
    if gate.min is not None:
        if lower:
            passed = value <= gate.min
            sign = "<=" if passed else ">"
            reasons.append(f"{name} {value:.4f} {sign} maximum {gate.min:.4f}")
        else:
            passed = value >= gate.min
            reasons.append(f"{name} {value:.4f} {'>=' if passed else '<'} minimum {gate.min:.4f}")
        ok &= passed
    if gate.beat_base:
        if not base or name not in base:
            reasons.append("base model not evaluated; base comparison skipped")
        else:
            outcome = _paired(name, candidate_rows, base_rows, "base model", 0.0, gate)
            ok &= _note(outcome, reasons, comparisons)
    if champion is None:
        reasons.append("no current champion")
    elif name not in champion:
        reasons.append(f"current champion has no '{name}'; treated as no champion")
    else:
        outcome = _paired(
            name, candidate_rows, champion_rows, champion_name, gate.beat_champion_by, gate
        )
        ok &= _note(outcome, reasons, comparisons)
        for guard, allowed in gate.guards.items():
            if guard != PREVIOUS_EVAL and guard in candidate and guard in champion:
                outcome = _paired(
                    guard, candidate_rows, champion_rows, champion_name, -allowed, gate
                )
                if isinstance(outcome, Comparison):
                    comparisons.append(outcome)
                    word = "holds" if outcome.passed else "regresses"
                    reasons.append(
                        f"guard {guard} {word} against {outcome.against}: "
                        f"{outcome.interval_text()} (allowed drop {allowed:.4f})"
                    )
                    ok &= outcome.passed
                else:
                    ok = False
                    reasons.append(f"guard {guard}: {outcome}; not promoted")
    if PREVIOUS_EVAL in gate.guards:
        ok &= _previous_guard(
            name, gate.guards[PREVIOUS_EVAL], previous, gate, reasons, comparisons
        )
    return Decision(ok, reasons, comparisons)


@dataclass(frozen=True)
class PreviousEval:
    """A continued run on the eval set its parent version was judged on: the candidate's per-row
    results there and the parent's own (`missing` says why there are none)."""

    against: str  # "parent version 3 on its eval set"
    candidate: RowScores | None
    reference: RowScores | None
    missing: str = ""


def _previous_guard(
    metric: str,
    allowed: float,
    previous: PreviousEval | None,
    gate: GateSpec,
    reasons: list[str],
    comparisons: list[Comparison],
) -> bool:
    """The forgetting guard: on the parent's eval set, the gate metric may drop by `allowed` at
    most (the lower bound of the paired change stays above `-allowed`). A run from the base model
    has no parent: nothing to bound."""
    if previous is None:
        reasons.append("guard previous_eval: no parent version (trained from the base model)")
        return True
    outcome: Comparison | str = previous.missing or _paired(
        metric, previous.candidate, previous.reference, previous.against, -allowed, gate
    )
    if isinstance(outcome, Comparison):
        comparisons.append(outcome)
        # the bound on the drop is shown only when the interval's lower bound clears it: on a
        # small eval set even a gain can leave a larger drop inside the interval
        word = "holds" if outcome.passed else "fails"
        verdict = "clears" if outcome.passed else "does not clear"
        reasons.append(
            f"guard previous_eval {word}: {metric} {outcome.value:.4f} vs {outcome.reference:.4f} "
            f"on {outcome.against}: {outcome.interval_text()}; the lower bound {verdict} the "
            f"allowed drop {_amount(metric, -allowed)}"
        )
        return outcome.passed
    reasons.append(f"guard previous_eval: {outcome}; not promoted")
    return False


def _paired(
    metric: str,
    candidate: RowScores | None,
    reference: RowScores | None,
    against: str,
    margin: float,
    gate: GateSpec,
) -> Comparison | str:
    if candidate is None:
        return f"the candidate's per-row eval results are missing; no paired comparison with the {against}"
    if reference is None:
        return f"the {against}'s per-row eval results were not found; no paired comparison"
    return compare(metric, candidate, reference, against, margin, gate.confidence)


def _amount(metric: str, value: float) -> str:
    return f"{value * 100:+.1f} points" if metric in POINT_METRICS else f"{value:+.4g}"


def _note(outcome: Comparison | str, reasons: list[str], comparisons: list[Comparison]) -> bool:
    if isinstance(outcome, Comparison):
        comparisons.append(outcome)
        reasons.append(outcome.reason())
        return outcome.passed
    reasons.append(f"{outcome}: not promoted on an unpaired comparison")
    return False
