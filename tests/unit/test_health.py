"""Health checks after promotion: a healthy champion is never rolled back for
sampling noise, a real fault still is, and counts that cannot be real give
no verdict (a typed error) instead of a rollback."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core import health, promql
from relearn.errors import InvalidMetrics

counts_ = st.floats(min_value=0, max_value=1e7, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


def test_default_checks_are_one_query_each_and_name_the_version() -> None:
    names = {c.name: c for c in health.default_checks()}
    assert set(names) == {"error-rate", "p99-latency"}
    assert "{{selector}}" in names["error-rate"].query  # model, version and namespace
    assert "{{selector}}" in promql.FEEDBACK_TOTAL


def test_the_limit_is_three_times_the_upper_bound_of_the_rate_at_promotion() -> None:
    few = health.feedback_limit(health.Counts(2, 50))  # 4 % of 50: a noisy estimate
    many = health.feedback_limit(health.Counts(400, 10_000))  # 4 % of 10 000
    assert many == pytest.approx(3 * health.wilson_bound(400, 10_000, 0.95, upper=True))
    assert 0.12 < many < 0.135  # about 3 x 4 %: many samples, a tight bound
    assert few > 0.3  # the bound of a few dozen samples is wide: so is the limit
    assert health.feedback_limit(health.Counts(0, 1e6)) == pytest.approx(0.01)  # the floor


def test_a_healthy_champion_promoted_on_a_few_dozen_samples_is_never_rolled_back() -> None:
    """The audit's scenario: 2 errors in 50 feedback samples at promotion, the
    same true 4 % error rate afterwards, looked at 1000 times with 20-80
    samples in the check window each time."""
    rng = np.random.default_rng(7)
    at_promotion = health.Counts(2, 50)
    old_rule_failures = 0
    for _ in range(1000):
        samples = int(rng.integers(20, 81))
        errors = float(rng.binomial(samples, 0.04))
        result = health.feedback_error_rate(health.Counts(errors, samples), at_promotion)
        assert result.result != "Failing", result.describe()
        old_rule_failures += errors / samples > max(0.01, 3 * 2 / 50)
    assert old_rule_failures > 10  # the point-estimate rule would have failed these looks


def test_a_real_accuracy_fault_fails_the_check_at_the_first_full_window() -> None:
    at_promotion = health.Counts(30, 1000)  # promoted at 97 % on the experiment's 1000 samples
    result = health.feedback_error_rate(health.Counts(20, 40), at_promotion)  # now half of it is wrong
    assert result.result == "Failing"
    assert "beyond sampling noise" in result.describe()


def test_too_few_samples_are_not_judged() -> None:
    result = health.feedback_error_rate(health.Counts(10, 10), health.Counts(30, 1000))
    assert result.result == "NotEnoughData"
    assert health.assess([result], previous_failures=1, threshold=2).failures == 0
    assert health.feedback_error_rate(None, health.Counts(30, 1000)).result == "NoData"
    assert health.feedback_error_rate(None, health.Counts(30, 1000), fail_on_no_data=True).result == "Failing"


@given(anything, anything)
def test_counts_are_checked_or_refused_with_a_typed_error(errors: float, samples: float) -> None:
    try:
        checked = health.counts(errors, samples)
    except InvalidMetrics:
        assert not (math.isfinite(errors) and math.isfinite(samples)) or errors < 0 or samples < 0 or errors > samples
        return
    assert 0 <= checked.errors <= checked.samples


@given(counts_, counts_, counts_, counts_)
def test_a_current_rate_at_or_below_the_limit_never_fails(e: float, n: float, pe: float, pn: float) -> None:
    at_promotion = health.counts(min(pe, pn), pn)
    current = health.counts(min(e, n), n)
    result = health.feedback_error_rate(current, at_promotion)
    if current.samples > 0 and current.rate <= health.feedback_limit(at_promotion):
        assert result.result != "Failing"


@given(st.integers(health.MIN_FEEDBACK_SAMPLES, 10_000), st.data())
def test_more_errors_in_the_same_samples_never_turn_a_failing_check_healthy(n: int, data: st.DataObject) -> None:
    low = data.draw(st.integers(0, n))
    high = data.draw(st.integers(low, n))
    at_promotion = health.Counts(30, 1000)
    if health.feedback_error_rate(health.Counts(low, n), at_promotion).result == "Failing":
        assert health.feedback_error_rate(health.Counts(high, n), at_promotion).result == "Failing"


@given(counts_, counts_, st.floats(0.5, 0.999), st.booleans())
def test_wilson_bounds_stay_within_zero_and_one(e: float, n: float, confidence: float, upper: bool) -> None:
    bound = health.wilson_bound(min(e, n), n, confidence, upper)
    assert 0.0 <= bound <= 1.0
    if n > 0:
        rate = min(e, n) / n
        assert (bound >= rate - 1e-12) if upper else (bound <= rate + 1e-12)
