"""The pre-flight plan's sums: steps as the Trainer counts them, the warm-up extrapolation, the
gate's smallest detectable gain, and the warm-up timer's bookkeeping."""

from __future__ import annotations

import pytest

from tasks.core.promotion import GateSpec, rows_needed
from tasks.planning import plan as planning
from tasks.training import warmup


@pytest.mark.parametrize(
    ("batches", "accumulation", "epochs", "max_steps", "expected"),
    [
        (16, 1, 6.0, -1, 96),  # the sentiment recipe: 250 rows / 16
        (17, 4, 1.0, -1, 5),  # an epoch's last partial accumulation is a step
        (17, 4, 2.5, -1, 13),  # fractional epochs: ceil(2.5 * 5)
        (3, 1, 3.0, 7, 7),  # max_steps wins
        (1, 8, 1.0, -1, 1),
    ],
)
def test_optimizer_steps_count_as_the_trainer_does(
    batches, accumulation, epochs, max_steps, expected
):
    assert warmup.optimizer_steps(batches, accumulation, epochs, max_steps) == expected


def test_batches_per_epoch():
    assert warmup.batches_per_epoch(250, 16) == 16
    assert warmup.batches_per_epoch(256, 16) == 16
    assert warmup.batches_per_epoch(1, 16) == 1
    assert warmup.batches_per_epoch(0, 16) == 0


FIGURES = {
    "warmup_first_step_seconds": 2.0,
    "warmup_step_seconds": 0.5,
    "warmup_step_tokens": 100.0,
}


def test_estimate_is_first_step_plus_the_timed_mean_for_the_rest():
    assert warmup.estimate_train_seconds(FIGURES, 11) == pytest.approx(2.0 + 0.5 * 10)
    # the same tokens a step: no scaling
    assert warmup.estimate_train_seconds(FIGURES, 11, 100.0) == pytest.approx(7.0)


def test_estimate_scales_with_the_tokens_of_a_step_within_bounds():
    assert warmup.estimate_train_seconds(FIGURES, 11, 50.0) == pytest.approx(2.0 + 0.25 * 10)
    # ratios past 4x (either way) are held at 4x: a few odd warm-up batches cannot run away
    assert warmup.estimate_train_seconds(FIGURES, 11, 10_000.0) == pytest.approx(2.0 + 2.0 * 10)
    assert warmup.estimate_train_seconds(FIGURES, 11, 1.0) == pytest.approx(2.0 + 0.125 * 10)


def test_no_warmup_no_estimate():
    assert warmup.estimate_train_seconds({}, 100) is None
    assert warmup.estimate_train_seconds(FIGURES, 0) is None


def test_relative_error():
    assert warmup.relative_error(12.0, 10.0) == pytest.approx(0.2)
    assert warmup.relative_error(8.0, 10.0) == pytest.approx(-0.2)
    assert warmup.relative_error(None, 10.0) is None
    assert warmup.relative_error(1.0, 0.0) is None


def test_step_timer_times_the_first_steps_and_leaves_out_evaluations(monkeypatch):
    clock = iter([0.0, 3.0, 4.0, 5.5, 7.0, 99.0, 99.0])
    monkeypatch.setattr(warmup.time, "perf_counter", lambda: next(clock))
    tokens = iter([0, 100, 200, 300, 400, 500, 600])
    timer = warmup.StepTimer(lambda: next(tokens), steps=4)
    timer.on_train_begin(None, None, None, train_dataloader=list(range(16)))  # t=0
    timer.on_step_end(None, None, None)  # t=3: startup and step 1
    timer.on_step_end(None, None, None)  # t=4
    timer.on_evaluate(None, None, None, metrics={"eval_runtime": 0.5})
    timer.on_step_end(None, None, None)  # t=5.5, 0.5 s of it evaluating
    timer.on_step_end(None, None, None)  # t=7
    timer.on_step_end(None, None, None)  # past the warm-up: not timed
    figures = timer.figures()
    assert figures["warmup_first_step_seconds"] == pytest.approx(3.0)
    assert figures["warmup_step_seconds"] == pytest.approx((1.0 + 1.0 + 1.5) / 3)
    assert figures["warmup_step_tokens"] == pytest.approx(100.0)
    assert figures["warmup_steps_timed"] == 3
    assert figures["warmup_batches_per_epoch"] == 16


def test_step_timer_without_steps_has_no_figures():
    timer = warmup.StepTimer(lambda: 0)
    assert timer.figures() == {}


@pytest.mark.parametrize(("gain", "margin"), [(0.10, 0.0), (0.05, 0.0), (0.10, 0.02)])
def test_smallest_detectable_gain_inverts_rows_needed(gain, margin):
    n = rows_needed("accuracy", gain, margin, 0.95)
    assert planning.smallest_detectable_gain("accuracy", n, margin, 0.95) <= gain + 1e-9
    # one row fewer cannot show that gain (rows_needed is exact at these sizes)
    fewer = planning.smallest_detectable_gain("accuracy", n - 1, margin, 0.95)
    assert fewer is None or fewer > gain - 1.0 / n


def test_smallest_detectable_gain_needs_rows_and_a_share_metric():
    assert planning.smallest_detectable_gain("accuracy", 3, 0.0, 0.95) is None
    assert planning.smallest_detectable_gain("perplexity", 500, 0.0, 0.95) is None
    big = planning.smallest_detectable_gain("accuracy", 1000, 0.0, 0.95)
    small = planning.smallest_detectable_gain("accuracy", 100, 0.0, 0.95)
    assert big is not None and small is not None and big < small


def test_token_figures_cut_at_max_length():
    figures = planning.token_figures([10, 20, 300], 100, 2, 5, 3)
    assert figures["per_epoch"] == 130
    assert figures["mean"] == pytest.approx(130 / 3)
    assert figures["per_step"] == pytest.approx(130 / 3 * 2)
    assert figures["total"] == pytest.approx(130 / 3 * 2 * 5)
    assert figures["truncated_share"] == pytest.approx(1 / 3)
    assert figures["max"] == 300


def test_gate_line_says_what_the_eval_set_can_show():
    gate = planning.gate_figures(GateSpec(metric="accuracy", min=0.7), "classification", 62, None)
    line = planning.gate_line(gate)
    assert "with 62 eval rows the gate can see a gain of >= 9.7 points" in line
    assert "enough" in line and "NOT" not in line
    small = planning.gate_figures(GateSpec(metric="accuracy"), "classification", 20, None)
    assert "NOT enough" in planning.gate_line(small)
    assert planning.gate_line(planning.gate_figures(None, "classification", 62, None)).startswith(
        "registry off"
    )


def test_step_timer_notes_the_peak_at_the_last_step_and_after_the_first_evaluation():
    from tasks.training.base import PeakMemory

    timer = warmup.StepTimer(lambda: 0, steps=2)
    with PeakMemory(interval=10.0) as memory:
        timer.on_train_begin(None, None, None)
        memory.peak_rss_mb = 100.0
        timer.on_step_end(None, None, None)
        timer.on_step_end(None, None, None)  # the last timed step: 100 MB so far
        memory.peak_rss_mb = 250.0  # a held-out evaluation later in the run adds 150 MB
        timer.on_evaluate(None, None, None, metrics={"eval_runtime": 1.0})
        memory.peak_rss_mb = 900.0  # later growth is not part of the estimate
        timer.on_evaluate(None, None, None, metrics={"eval_runtime": 1.0})
    assert timer.figures()["warmup_peak_rss_mb"] == pytest.approx(250.0)
