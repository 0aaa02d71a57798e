"""The promotion gate on plain values: per-row results in, a decision with reasons out."""

from __future__ import annotations

import math
import random
import re

import pytest

from tasks.core.promotion import (
    GateSpec,
    RowScores,
    decide_promotion,
    fewest_rows,
    mcnemar_interval,
    rows_from_records,
    rows_needed,
)

LABELS = ["negative", "positive"]


def classified(right: list[bool], seed: int = 0) -> RowScores:
    """A classifier's rows: row i is labelled alternately, predicted right where `right[i]`."""
    labels = [LABELS[i % 2] for i in range(len(right))]
    wrong = {LABELS[0]: LABELS[1], LABELS[1]: LABELS[0]}
    predictions = [lab if ok else wrong[lab] for lab, ok in zip(labels, right, strict=True)]
    return RowScores(
        [f"row{i}" for i in range(len(right))],
        {
            "correct": [float(ok) for ok in right],
            "label": labels,
            "prediction": predictions,
        },
    )


def accuracy(rows: RowScores) -> dict[str, float]:
    return {"accuracy": sum(rows.columns["correct"]) / len(rows.keys)}


def pattern(n: int, wrong: set[int]) -> list[bool]:
    return [i not in wrong for i in range(n)]


def decide(cand: RowScores, champ: RowScores | None, base: RowScores | None, gate: GateSpec):
    return decide_promotion(
        accuracy(cand),
        accuracy(champ) if champ is not None else None,
        accuracy(base) if base is not None else None,
        gate,
        cand,
        champ,
        base,
        "champion (version 1)",
    )


def test_first_version_clearly_beating_the_base_is_promoted_with_its_interval() -> None:
    base = classified(pattern(62, set(range(0, 62, 2))))  # half right
    cand = classified(pattern(62, {3, 40}))
    d = decide(cand, None, base, GateSpec(min=0.7))
    assert d.promote, d.reasons
    assert any("no current champion" in r for r in d.reasons)
    line = next(r for r in d.reasons if "base model" in r)
    assert re.search(r"\+\d+\.\d points, 95% interval \[\+\d+\.\d, \+\d+\.\d\], n = 62", line)
    assert "McNemar exact" in line
    assert d.tags()["gate.base.accuracy.n"] == "62"
    assert float(d.tags()["gate.base.accuracy.low"]) > 0


def test_below_minimum_is_not_promoted() -> None:
    cand = classified(pattern(40, set(range(0, 40, 3))))
    d = decide(cand, None, None, GateSpec(min=0.7, beat_base=False))
    assert not d.promote and any("< minimum" in r for r in d.reasons)


def test_a_row_or_two_over_the_base_is_noise() -> None:
    base = classified(pattern(40, {1, 2, 5, 7}))
    cand = classified(pattern(40, {1, 2}))  # two rows better, none worse
    d = decide(cand, None, base, GateSpec())
    assert not d.promote
    assert any("does not beat base model" in r and "does not clear" in r for r in d.reasons)
    assert decide(cand, None, base, GateSpec(beat_base=False)).promote


def test_champion_moves_only_when_the_lower_bound_clears_the_margin() -> None:
    champion = classified(pattern(40, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))
    gate = GateSpec()
    for fixed in (1, 2, 5):  # a few rows better is within the noise of 40 rows
        cand = classified(pattern(40, set(range(fixed, 10))))
        d = decide(cand, champion, None, gate)
        assert not d.promote, (fixed, d.reasons)
        assert any("does not beat champion (version 1)" in r for r in d.reasons)
    better = classified(pattern(40, {9}))  # nine rows better, none worse
    assert decide(better, champion, None, gate).promote
    # the same nine rows do not clear a 10-point margin
    d = decide(better, champion, None, GateSpec(beat_champion_by=0.10, detect_gain=0.2))
    assert not d.promote and any("does not clear +10.0 points" in r for r in d.reasons)


def test_equal_rows_never_beat_the_champion() -> None:
    rows = classified(pattern(100, {3, 50}))
    d = decide(rows, rows, None, GateSpec())
    assert not d.promote
    assert any("+0.0 points, 95% interval [+0.0, +0.0], n = 100" in r for r in d.reasons)


def test_rows_are_paired_by_key_not_by_order() -> None:
    champion = classified(pattern(60, {1, 2, 3, 4, 5, 6, 7, 8}))
    order = list(range(60))
    random.Random(0).shuffle(order)
    shuffled = RowScores(
        [champion.keys[i] for i in order],
        {k: [v[i] for i in order] for k, v in champion.columns.items()},
    )
    cand = classified(pattern(60, {1}))
    a, b = decide(cand, champion, None, GateSpec()), decide(cand, shuffled, None, GateSpec())
    assert a.reasons == b.reasons and a.promote


def test_missing_or_unshared_champion_rows_never_promote() -> None:
    cand = classified(pattern(60, {1}))
    champion = classified(pattern(60, set(range(20))))
    d = decide_promotion(accuracy(cand), accuracy(champion), None, GateSpec(), cand, None, None)
    assert not d.promote
    assert any("per-row eval results were not found" in r and "unpaired" in r for r in d.reasons)
    other = RowScores([f"other{i}" for i in range(60)], champion.columns)
    d = decide(cand, other, None, GateSpec())
    assert not d.promote and any("only 0 eval rows are shared" in r for r in d.reasons)


def test_guard_metric_must_not_regress_beyond_its_allowance() -> None:
    champion = classified(pattern(200, set(range(0, 200, 5))))  # 80%, errors on both labels
    # right on 24 more rows, but every error now on one label: macro F1 falls behind accuracy
    wrong = {i for i in range(200) if i % 2 == 1 and i % 25 == 1} | {i for i in range(0, 16, 2)}
    cand = classified(pattern(200, wrong))
    cand_metrics = {"accuracy": accuracy(cand)["accuracy"], "f1": 0.0}
    champ_metrics = {"accuracy": accuracy(champion)["accuracy"], "f1": 0.0}
    held = decide_promotion(
        cand_metrics, champ_metrics, None, GateSpec(guards={"f1": 0.5}), cand, champion, None
    )
    assert held.promote, held.reasons
    assert any(r.startswith("guard f1 holds") for r in held.reasons)
    worse = classified(pattern(200, set(range(0, 200, 5)) | set(range(1, 200, 4))))
    d = decide_promotion(
        {"accuracy": 0.99, "f1": 0.0},
        champ_metrics,
        None,
        GateSpec(guards={"f1": 0.01}, metric="accuracy", beat_base=False),
        worse,
        champion,
        None,
    )
    assert not d.promote and any("guard f1 regresses" in r for r in d.reasons)


def test_unmeasured_metric_is_not_promoted() -> None:
    d = decide_promotion({"f1": 0.9}, None, None, GateSpec(metric="accuracy"))
    assert not d.promote and "not measured" in d.reasons[0]


def lm_rows(losses: list[float], prefix: str = "r") -> RowScores:
    return RowScores(
        [f"{prefix}{i}" for i in range(len(losses))],
        {"loss_sum": [x * 10 for x in losses], "tokens": [10] * len(losses)},
    )


def perplexity(rows: RowScores) -> dict[str, float]:
    loss = sum(rows.columns["loss_sum"]) / sum(rows.columns["tokens"])
    return {"perplexity": math.exp(loss), "eval_loss": loss}


def test_lower_is_better_metrics_use_a_reproducible_paired_bootstrap() -> None:
    rnd = random.Random(1)
    champion = lm_rows([2.5 + rnd.gauss(0, 0.5) for _ in range(60)])
    better = lm_rows([x / 10 - 0.4 + rnd.gauss(0, 0.05) for x in champion.columns["loss_sum"]])
    gate = GateSpec(metric="perplexity", min=50.0, beat_base=False)

    def run(cand: RowScores) -> object:
        return decide_promotion(
            perplexity(cand), perplexity(champion), None, gate, cand, champion, None
        )

    passed = run(better)
    assert passed.promote, passed.reasons
    assert any("paired bootstrap" in r and "(higher is better)" not in r for r in passed.reasons)
    assert any("<= maximum" in r for r in passed.reasons)
    assert run(better).reasons == passed.reasons  # seeded: the same rows, the same decision
    comparison = passed.comparisons[0]
    assert comparison.improvement > 0 and comparison.low > 0  # lower perplexity is better
    worse = lm_rows([x / 10 + 0.4 for x in champion.columns["loss_sum"]])
    assert not run(worse).promote
    too_few = lm_rows([0.1] * 3)
    d = decide_promotion(
        perplexity(too_few), perplexity(champion), None, gate, too_few, lm_rows([2.0] * 3), None
    )
    assert not d.promote and any("a paired comparison needs at least 6" in r for r in d.reasons)


def test_a_classifier_that_always_says_one_thing_is_never_promoted() -> None:
    labels = [LABELS[1]] * 30
    rows = RowScores(
        [f"k{i}" for i in range(30)],
        {"correct": [1.0] * 30, "label": labels, "prediction": labels},
    )
    d = decide_promotion({"accuracy": 1.0}, None, None, GateSpec(beat_base=False), rows)
    assert not d.promote
    assert "same prediction ('positive')" in d.reasons[0] and "never promoted" in d.reasons[0]


def test_a_causal_model_with_one_greedy_answer_is_never_promoted() -> None:
    rows = RowScores(
        [f"k{i}" for i in range(20)],
        {"exact_match": [0.0] * 20, "rougeL": [0.1] * 20, "answer": ["the the the"] * 20},
    )
    d = decide_promotion({"rougeL": 0.1}, None, None, GateSpec(metric="rougeL"), rows)
    assert not d.promote and "same greedy answer" in d.reasons[0]


def test_mcnemar_interval_agrees_with_the_exact_test() -> None:
    from scipy.stats import binomtest

    for wins in range(0, 15):
        for losses in range(0, 8):
            low, high = mcnemar_interval(wins, losses, 100, 0.95)
            assert low <= (wins - losses) / 100 <= high
            if wins + losses:
                p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
                assert (low > 0) == (p < 0.025), (wins, losses)


def test_rows_needed_is_derived_from_the_test() -> None:
    assert fewest_rows(0.95) == 6 and fewest_rows(0.99) == 8
    needed = rows_needed("accuracy", 0.02, 0.0, 0.95)
    assert needed == 300  # 6 rows won of 300 is the least a 2-point gain can show
    assert mcnemar_interval(6, 0, needed, 0.95)[0] > 0
    assert mcnemar_interval(5, 0, needed - 1, 0.95)[0] <= 0
    assert rows_needed("accuracy", 0.02, 0.01, 0.95) > needed  # a margin asks for more
    assert rows_needed("accuracy", 0.02, 0.0, 0.99) > needed  # so does more confidence
    assert rows_needed("accuracy", 0.10, 0.0, 0.95) == 60
    assert rows_needed("perplexity", 0.10, 0.0, 0.95) == 6


def test_gain_to_detect_must_exceed_the_margin() -> None:
    with pytest.raises(ValueError, match="detect_gain"):
        GateSpec(beat_champion_by=0.1, detect_gain=0.05)


def test_rows_from_a_classifier_table_are_keyed_by_content() -> None:
    records = [
        {"where": "a.jsonl:1", "text": "fine", "label": "positive", "prediction": "positive"},
        {"where": "a.jsonl:2", "text": "bad", "label": "negative", "prediction": "positive"},
        {"where": "a.jsonl:3", "text": "fine", "label": "positive", "prediction": "negative"},
    ]
    model, base = rows_from_records(records)
    assert base is None
    assert model.columns["correct"] == [1.0, 0.0, 0.0]
    assert len(set(model.keys)) == 3 and model.keys[2].startswith(model.keys[0])
    moved = [dict(r, where="b.jsonl:9") for r in records]
    assert rows_from_records(moved)[0].keys == model.keys
