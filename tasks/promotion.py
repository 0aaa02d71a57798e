"""The promotion gate as a pure function: candidate, champion and base metrics in, a decision with
reasons out. Moving MLflow aliases is someone else's job (tasks.registry)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class GateSpec(BaseModel):
    """When a newly trained version may become `champion`."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        default=None,
        description="Metric the gate compares (eval split). Default by method: accuracy "
        "(classification), perplexity (pretrain, sft; lower is better), preference_accuracy "
        "(dpo, reward), mean_reward (rlhf).",
    )
    min: float | None = Field(
        default=None,
        description="Lowest acceptable value of `metric` (highest, for eval_loss and perplexity).",
    )
    beat_base: bool = Field(default=True, description="Must beat the untrained base model.")
    beat_champion_by: float = Field(
        default=0.0,
        ge=0.0,
        description="Margin over the current champion; 0 means strictly better.",
    )
    guards: dict[str, float] = Field(
        default_factory=dict,
        description="Other metrics that must not drop below the champion's by more than the "
        "given amount, e.g. `{f1: 0.01}`.",
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        verdict = "promoted to champion" if self.promote else "not promoted"
        return f"{verdict}: " + "; ".join(self.reasons)


# Metrics where lower is better; every other metric is better higher.
LOWER_IS_BETTER = frozenset({"eval_loss", "perplexity"})


def _beats(value: float, reference: float, margin: float, lower: bool = False) -> bool:
    if lower:
        value, reference = -value, -reference
    return value >= reference + margin if margin > 0 else value > reference


def decide_promotion(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    base: dict[str, float] | None,
    gate: GateSpec,
) -> Decision:
    """Whether `candidate` takes `champion`, and why (every rule is reported, pass or fail).
    For loss-like metrics (`LOWER_IS_BETTER`) the minimum is a maximum and beating is being
    lower."""
    name = gate.metric or "accuracy"
    lower = name in LOWER_IS_BETTER
    if name not in candidate:
        return Decision(False, [f"metric '{name}' was not measured for the candidate"])
    value = candidate[name]
    ok = True
    reasons: list[str] = []
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
        if base and name in base:
            passed = _beats(value, base[name], 0.0, lower)
            ok &= passed
            word = "beats" if passed else "does not beat"
            reasons.append(f"{name} {value:.4f} {word} base model {base[name]:.4f}")
        else:
            reasons.append("base model not evaluated; base comparison skipped")
    if champion is None:
        reasons.append("no current champion")
    elif name not in champion:
        reasons.append(f"current champion has no '{name}'; treated as no champion")
    else:
        passed = _beats(value, champion[name], gate.beat_champion_by, lower)
        ok &= passed
        margin = f" by {gate.beat_champion_by:.4f}" if gate.beat_champion_by else ""
        word = "beats" if passed else "does not beat"
        reasons.append(f"{name} {value:.4f} {word} champion {champion[name]:.4f}{margin}")
        for guard, allowed in gate.guards.items():
            if guard in candidate and guard in champion:
                if guard in LOWER_IS_BETTER:
                    passed = candidate[guard] <= champion[guard] + allowed
                else:
                    passed = candidate[guard] >= champion[guard] - allowed
                ok &= passed
                word = "holds" if passed else "regresses"
                reasons.append(
                    f"guard {guard} {candidate[guard]:.4f} {word} against champion "
                    f"{champion[guard]:.4f} (allowed drop {allowed:.4f})"
                )
    return Decision(ok, reasons)
