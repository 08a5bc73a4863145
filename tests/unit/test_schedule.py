"""The daemons' check schedule (relearn.core.schedule): spread, period kept."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core.schedule import backoff, next_due, phase
from relearn.errors import InvalidSetting

keys = st.text(min_size=1, max_size=40)
intervals = st.floats(min_value=1.0, max_value=1e6)
clocks = st.floats(min_value=0.0, max_value=1e8)


def on_grid(key: str, interval: float, due: float) -> bool:
    slots = (due - phase(key, interval)) / interval
    return abs(slots - round(slots)) < 1e-6 * max(1.0, abs(slots))


@given(keys, intervals, clocks)
def test_a_first_check_is_followed_within_half_to_one_and_a_half_intervals_on_its_slot(
    key: str, interval: float, now: float
) -> None:
    due = next_due(key, interval, now)
    assert now + interval / 2 - 1e-6 * interval <= due <= now + 1.5 * interval + 1e-6 * interval
    assert on_grid(key, interval, due)


@given(keys, intervals, clocks, st.floats(min_value=0.0, max_value=0.999))
def test_a_check_that_finishes_within_its_interval_keeps_the_period(
    key: str, interval: float, start: float, took: float
) -> None:
    previous = next_due(key, interval, start)
    due = next_due(key, interval, previous + took * interval, previous)
    assert math.isclose(due - previous, interval, rel_tol=1e-6, abs_tol=1e-6 * previous)


@given(keys, intervals, clocks, st.floats(min_value=1.0, max_value=50.0))
def test_a_slow_check_skips_the_slots_it_missed_and_never_runs_in_the_past(
    key: str, interval: float, start: float, took: float
) -> None:
    previous = next_due(key, interval, start)
    now = previous + took * interval
    due = next_due(key, interval, now, previous)
    assert now < due <= now + interval * (1 + 1e-6) + 1e-6 * now
    assert on_grid(key, interval, due)


@given(keys, intervals)
def test_the_phase_lies_within_the_interval(key: str, interval: float) -> None:
    assert 0.0 <= phase(key, interval) < interval


def test_objects_created_together_are_spread_over_the_interval() -> None:
    phases = sorted(phase(f"uid-{i}", 60.0) for i in range(1000))
    # Every tenth of the interval holds about a tenth of the objects (binomial, 1000 draws).
    counts = [sum(1 for p in phases if 6 * d <= p < 6 * (d + 1)) for d in range(10)]
    assert all(60 <= c <= 140 for c in counts), counts


@pytest.mark.parametrize("interval", [0.0, -1.0, math.inf, math.nan])
def test_an_interval_that_is_not_a_positive_number_is_refused(interval: float) -> None:
    with pytest.raises(InvalidSetting):
        next_due("a", interval, 0.0)
    with pytest.raises(InvalidSetting):
        phase("a", interval)


@given(keys, intervals, st.sampled_from([math.inf, -math.inf, math.nan]))
def test_a_clock_that_is_not_finite_is_refused(key: str, interval: float, now: float) -> None:
    with pytest.raises(InvalidSetting):
        next_due(key, interval, now)


@given(
    base=st.floats(min_value=0.001, max_value=1e6),
    cap=st.floats(min_value=0.001, max_value=1e6),
    repeats=st.integers(min_value=0, max_value=10_000),
)
def test_a_backed_off_wait_starts_at_the_base_grows_and_never_passes_the_cap(
    base: float, cap: float, repeats: int
) -> None:
    wait = backoff(base, cap, repeats)
    assert base <= wait <= max(base, cap)
    assert backoff(base, cap, repeats + 1) >= wait
    assert backoff(base, cap, 0) == base


def test_a_missing_workload_is_looked_at_after_10_20_40_then_every_60_seconds() -> None:
    assert [backoff(10.0, 60.0, k) for k in range(6)] == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


@pytest.mark.parametrize(("base", "cap", "repeats"), [(0.0, 60.0, 1), (10.0, math.inf, 1), (10.0, 60.0, -1)])
def test_a_backoff_of_impossible_numbers_is_a_typed_error(base: float, cap: float, repeats: int) -> None:
    with pytest.raises(InvalidSetting):
        backoff(base, cap, repeats)
