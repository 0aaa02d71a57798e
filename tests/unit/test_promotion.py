"""The promotion gate on plain values."""

from tasks.promotion import GateSpec, decide_promotion


def test_first_version_passing_the_gate_is_promoted() -> None:
    d = decide_promotion({"accuracy": 0.9}, None, {"accuracy": 0.5}, GateSpec(min=0.7))
    assert d.promote
    assert any("no current champion" in r for r in d.reasons)


def test_below_minimum_is_not_promoted() -> None:
    d = decide_promotion({"accuracy": 0.6}, None, {"accuracy": 0.5}, GateSpec(min=0.7))
    assert not d.promote and any("< minimum" in r for r in d.reasons)


def test_must_beat_base_model() -> None:
    d = decide_promotion({"accuracy": 0.5}, None, {"accuracy": 0.55}, GateSpec())
    assert not d.promote and any("does not beat base" in r for r in d.reasons)
    d = decide_promotion({"accuracy": 0.5}, None, {"accuracy": 0.55}, GateSpec(beat_base=False))
    assert d.promote


def test_must_beat_champion_strictly_or_by_margin() -> None:
    gate = GateSpec()
    assert not decide_promotion({"accuracy": 0.8}, {"accuracy": 0.8}, None, gate).promote
    assert decide_promotion({"accuracy": 0.81}, {"accuracy": 0.8}, None, gate).promote
    margin = GateSpec(beat_champion_by=0.02)
    assert not decide_promotion({"accuracy": 0.81}, {"accuracy": 0.8}, None, margin).promote
    assert decide_promotion({"accuracy": 0.83}, {"accuracy": 0.8}, None, margin).promote


def test_guard_metric_must_not_regress() -> None:
    gate = GateSpec(guards={"f1": 0.01})
    champion = {"accuracy": 0.80, "f1": 0.80}
    assert decide_promotion({"accuracy": 0.85, "f1": 0.795}, champion, None, gate).promote
    d = decide_promotion({"accuracy": 0.85, "f1": 0.70}, champion, None, gate)
    assert not d.promote and any("guard f1" in r and "regresses" in r for r in d.reasons)


def test_unmeasured_metric_is_not_promoted() -> None:
    d = decide_promotion({"f1": 0.9}, None, None, GateSpec(metric="accuracy"))
    assert not d.promote and "not measured" in d.reasons[0]


def test_lower_is_better_metrics_beat_by_being_lower() -> None:
    gate = GateSpec(metric="perplexity", min=50.0)
    passed = decide_promotion(
        {"perplexity": 9.0}, {"perplexity": 12.0}, {"perplexity": 700.0}, gate
    )
    assert passed.promote, passed.reasons
    assert any("<= maximum" in r for r in passed.reasons)
    worse = decide_promotion(
        {"perplexity": 14.0}, {"perplexity": 12.0}, {"perplexity": 700.0}, gate
    )
    assert not worse.promote
    too_high = decide_promotion({"perplexity": 60.0}, None, {"perplexity": 700.0}, gate)
    assert not too_high.promote and any("> maximum" in r for r in too_high.reasons)
