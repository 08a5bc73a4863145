"""The sequential (always-valid) health checks: a version failing every
request is reverted at the first look whose counters show it, healthy noise
below the max never raises the alarm, and any counts or state give a verdict
or a typed error."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.core import health, rollback
from relearn.errors import DecisionError
from scipy import stats as scipy_stats

MAX = 0.05
ALPHA = health.DEFAULT_ALPHA


def _look(
    errors: float, requests: float, previous: health.SequentialState | None, limit: float = MAX
) -> health.CheckResult:
    return health.sequential_check(health.ERROR_RATE, health.Counts(errors, requests), previous, limit, ALPHA)


def test_reverts_a_version_that_fails_every_request_at_the_first_look_showing_it() -> None:
    first = _look(12, 10_000, None)  # the counters as the watch starts: recorded, not judged
    assert first.result == "NotEnoughData"
    assert first.sequential is not None
    healthy = _look(15, 10_500, first.sequential)
    assert healthy.result == "Healthy"
    failing = _look(15 + 5, 10_500 + 5, healthy.sequential)  # five requests since, all failed
    assert failing.result == "Failing"
    assert failing.decisive
    verdict = health.assess([failing], previous_failures=0, threshold=2)
    assert verdict.roll_back  # without waiting for failureThreshold looks
    assert "above max" in failing.describe()


def test_a_threshold_failure_still_waits_for_the_failure_threshold() -> None:
    over = health.judge_check("p99-latency", 2.0, 1.0, False)
    assert not health.assess([over], previous_failures=0, threshold=2).roll_back
    assert health.assess([over], previous_failures=1, threshold=2).roll_back


def test_healthy_noise_just_below_the_max_never_alarms_over_a_thousand_looks() -> None:
    rng = np.random.default_rng(18)
    state = _look(0, 0, None).sequential
    errors = requests = 0.0
    for _ in range(1000):
        batch = float(rng.integers(10, 400))
        errors += float(rng.binomial(int(batch), 0.9 * MAX))
        requests += batch
        result = _look(errors, requests, state)
        assert result.result != "Failing", result.describe()
        state = result.sequential


def test_a_counter_that_restarted_counts_from_its_restart() -> None:
    before = _look(100, 100_000, None).sequential
    after = _look(5, 5, before)  # a pod restarted: five requests since, all failed
    assert after.samples == 5
    assert after.decisive


def test_no_new_requests_keep_the_evidence_and_no_data_keeps_the_state() -> None:
    start = _look(10, 1000, None).sequential
    some = _look(12, 1010, start)
    idle = _look(12, 1010, some.sequential)
    assert idle.result == "NotEnoughData"
    assert idle.sequential == some.sequential
    blind = health.sequential_check(health.ERROR_RATE, None, some.sequential, MAX, ALPHA)
    assert blind.result == "NoData"
    assert blind.sequential == some.sequential


@settings(deadline=None, max_examples=60)  # 300 e-values per example
@given(
    n=st.integers(min_value=1, max_value=300),
    # (scipy's binomial pmf, the oracle here, overflows on subnormal rates)
    rate=st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1.0)),
    limit=st.floats(min_value=0.001, max_value=0.9),
)
def test_a_batch_evidence_averages_at_most_one_under_any_rate_at_or_below_the_max(
    n: int, rate: float, limit: float
) -> None:
    """The property Ville's inequality needs, computed exactly over the binomial."""
    true_rate = rate * limit
    k = np.arange(n + 1)
    weights = scipy_stats.binom.pmf(k, n, true_rate)
    evidence = np.array([math.exp(min(health.log_batch_evidence(float(i), float(n), limit), 700.0)) for i in k])
    assert float(np.sum(weights * evidence)) <= 1 + 1e-6


@given(n=st.integers(min_value=1, max_value=10_000), data=st.data())
def test_more_failures_in_the_same_batch_never_lower_the_evidence(n: int, data: st.DataObject) -> None:
    low = data.draw(st.integers(min_value=0, max_value=n))
    high = data.draw(st.integers(min_value=low, max_value=n))
    assert health.log_batch_evidence(high, n, MAX) >= health.log_batch_evidence(low, n, MAX) - 1e-9


counts_ = st.floats(allow_nan=True, allow_infinity=True)


@given(
    errors=counts_,
    samples=counts_,
    prev_errors=counts_,
    prev_samples=counts_,
    log_e=counts_,
    limit=counts_,
    alpha=counts_,
    fail_on_no_data=st.booleans(),
)
def test_any_counts_state_or_setting_give_a_verdict_or_a_typed_error(
    errors: float,
    samples: float,
    prev_errors: float,
    prev_samples: float,
    log_e: float,
    limit: float,
    alpha: float,
    fail_on_no_data: bool,
) -> None:
    previous = health.SequentialState(prev_errors, prev_samples, log_e, 1000.0)
    try:
        result = health.sequential_check(
            health.ERROR_RATE, health.Counts(errors, samples), previous, limit, alpha, fail_on_no_data
        )
    except DecisionError:
        return
    assert result.result in ("Healthy", "Failing", "NoData", "NotEnoughData")
    assert result.decisive == (result.result == "Failing")
    if result.value is not None:
        assert 0.0 <= result.value <= 1.0
    state = result.sequential
    if state is not None and state is not previous:
        assert all(math.isfinite(v) for v in (state.errors_total, state.samples_total, state.log_evidence))


def test_an_impossible_max_is_refused_and_a_max_of_one_cannot_fail() -> None:
    with pytest.raises(DecisionError):
        health.sequential_check(health.ERROR_RATE, health.Counts(1, 2), None, 0.0, ALPHA)
    assert health.sequential_check(health.ERROR_RATE, health.Counts(2, 2), None, 1.0, ALPHA).result == "Healthy"


def test_looks_come_every_bake_interval_during_the_bake_time_then_every_interval() -> None:
    def wait(minutes: float) -> float:
        return rollback.monitoring(
            enabled=True,
            since_promotion=datetime.timedelta(minutes=minutes),
            window=datetime.timedelta(hours=24),
            window_text="24h",
            interval=10.0,
            bake_time=datetime.timedelta(minutes=10),
            bake_interval=2.0,
        ).wait

    assert wait(1) == 2.0
    assert wait(11) == 10.0
