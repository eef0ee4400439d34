"""Tests of contextnet_tf.training.divergence: what trips the guard and what does not."""

import math

from contextnet_tf.training.divergence import DivergenceGuard


def _steady(guard, steps, loss=2.0, l2=0.3):
    for step in range(1, steps + 1):
        assert guard.check(step, {"loss": loss + 0.1 * (step % 3), "ce": loss - l2, "l2": l2}) is None


def test_non_finite_parts_trip_at_once():
    guard = DivergenceGuard(19)
    assert guard.check(1, {"loss": math.nan, "ce": 1.0, "l2": 0.1}) == "loss is nan"
    assert "ce is inf" in guard.check(1, {"loss": 1.0, "ce": math.inf, "l2": 0.1})


def test_cross_entropy_bound_from_the_class_count_applies_from_step_1():
    bound = 10 * math.log(11)
    assert DivergenceGuard(11).check(1, {"loss": bound * 0.9, "ce": bound * 0.9, "l2": 0.1}) is None
    reason = DivergenceGuard(11).check(1, {"loss": bound * 1.1, "ce": bound * 1.1, "l2": 0.1})
    assert reason is not None and "ln(classes)" in reason


def test_a_loss_or_l2_many_times_its_running_median_trips_after_the_warm_up():
    guard = DivergenceGuard(19, factor=10, warmup=5)
    # During the warm-up a jump below the cross-entropy bound passes (the first steps move fast).
    assert guard.check(1, {"loss": 25.0, "ce": 24.0, "l2": 0.3}) is None
    _steady(guard, 10)
    assert guard.check(11, {"loss": 9.0, "ce": 8.7, "l2": 0.3}) is None  # 4x the median: allowed
    assert "loss 25 is over 10 x its running median" in guard.check(12, {"loss": 25.0, "ce": 5.0, "l2": 20.0})
    # The weight-decay term exploding alone (weights blown up, cross-entropy still moderate) trips too.
    guard = DivergenceGuard(19, factor=10, warmup=5)
    _steady(guard, 10, loss=20.0)
    assert "L2 term 8 is over" in guard.check(11, {"loss": 23.0, "ce": 15.0, "l2": 8.0})
    assert DivergenceGuard.first_bad_step(11) == 10
