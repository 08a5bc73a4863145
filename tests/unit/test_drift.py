"""The drift statistics on bucket counts, checked against scipy on raw
samples, and calibrated: few false alarms without drift, a small shift found."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.core.drift import (
    accuracy_drop,
    adjust_p_values,
    binned_ks,
    buckets_from_cumulative,
    chi_square,
    chi_square_statistic,
    compare_feature,
    drifted,
    jensen_shannon,
    merge_sparse,
    psi,
    psi_noise_threshold,
    wasserstein,
)
from scipy import stats

counts = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=30)
samples = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=300)


def histogram(values: list[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per Prometheus bucket: value <= edge, then +Inf."""
    index = np.searchsorted(edges, np.asarray(values), side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(float)


@given(counts)
def test_identical_inputs_show_no_drift(values: list[float]) -> None:
    assert psi(values, values) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(values, values) == pytest.approx(0.0, abs=1e-6)
    statistic, p_value = binned_ks(values, values)
    assert statistic == pytest.approx(0.0, abs=1e-12)
    assert p_value == pytest.approx(1.0)
    assert chi_square(values, values)[0] == pytest.approx(0.0, abs=1e-6)


@given(st.data())
def test_psi_is_symmetric(data: st.DataObject) -> None:
    a = data.draw(counts)
    b = data.draw(st.lists(st.floats(min_value=0, max_value=1e6), min_size=len(a), max_size=len(a)))
    assert psi(a, b) == pytest.approx(psi(b, a), rel=1e-9, abs=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scipy, below one effective sample
@given(samples, samples, st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=1, max_size=20, unique=True))
def test_binned_ks_never_exceeds_raw_ks(x: list[float], y: list[float], edge_list: list[float]) -> None:
    edges = np.sort(np.asarray(edge_list))
    binned, binned_p = binned_ks(histogram(x, edges), histogram(y, edges))
    raw = stats.ks_2samp(x, y, method="asymp")
    assert binned <= raw.statistic + 1e-12
    if not math.isnan(raw.pvalue):  # scipy has no p-value below one effective sample
        assert binned_p >= raw.pvalue - 1e-9  # conservative


@settings(max_examples=200)
@given(
    st.integers(min_value=2, max_value=12).flatmap(
        lambda n: st.tuples(*[st.lists(st.integers(min_value=1, max_value=10_000), min_size=n, max_size=n)] * 2)
    )
)
def test_chi_square_equals_scipy_contingency(table: tuple[list[int], list[int]]) -> None:
    reference, current = table
    statistic, p_value, dof = chi_square_statistic(reference, current)
    expected = stats.chi2_contingency(np.array([reference, current]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
    assert dof == expected.dof


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=0, max_size=20))
def test_every_score_is_finite_on_empty_buckets_and_windows(values: list[float]) -> None:
    zeros = [0.0] * len(values)
    for reference, current in ((values, zeros), (zeros, values), (zeros, zeros)):
        scores = [
            psi(reference, current),
            jensen_shannon(reference, current),
            *binned_ks(reference, current),
            *chi_square(reference, current)[:2],
            wasserstein(reference, current, list(range(max(0, len(values) - 1)))),
        ]
        assert all(math.isfinite(s) for s in scores), scores


def test_cumulative_buckets_become_per_bucket_counts_without_negatives() -> None:
    # increase() extrapolates: a cumulative count may dip below the one before.
    assert list(buckets_from_cumulative([2.0, 5.5, 5.4, 9.0])) == pytest.approx([2.0, 3.5, 0.0, 3.6])


def test_sparse_buckets_merge_into_neighbours() -> None:
    reference, current = merge_sparse([100, 1, 1, 100], [100, 1, 2, 100])
    assert reference.sum() == 202
    assert current.sum() == 203
    assert len(reference) < 4


def test_psi_threshold_grows_as_samples_shrink() -> None:
    assert psi_noise_threshold(100, 100, 10, 0.01) > psi_noise_threshold(10_000, 10_000, 10, 0.01)
    assert psi_noise_threshold(1000, 1000, 10, 0.01) == pytest.approx(0.002 * stats.chi2.ppf(0.99, 9))


def test_corrections_across_features() -> None:
    p = [0.01, 0.02, 0.5]
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.03, 0.06, 1.0])
    assert adjust_p_values(p, "benjamini-hochberg") == pytest.approx([0.03, 0.03, 0.5])
    assert adjust_p_values(p, "none") == p


def test_accuracy_drop_interval_covers_the_difference() -> None:
    result = accuracy_drop(870, 1000, 780, 1000)
    assert result.drop == pytest.approx(0.09)
    assert result.ci_lower < 0.09 < result.ci_upper
    assert result.ci_lower > 0  # a 9-point drop on 1000/1000 is real
    unclear = accuracy_drop(87, 100, 84, 100)
    assert unclear.ci_lower < 0 < unclear.ci_upper


def test_not_enough_data_is_no_answer_rather_than_no_drift() -> None:
    comparison = compare_feature(
        "x",
        "numeric",
        [10, 10, 10],
        [30, 0, 0],
        edges=[0.0, 1.0],
        psi_threshold=0.2,
        js_threshold=0.1,
        alpha=0.01,
        min_samples=500,
    )
    assert drifted(comparison, comparison.p_value, 0.01) is None


# -- calibration --------------------------------------------------------------------------

EDGES = stats.norm.ppf(np.linspace(0.1, 0.9, 9))  # 10 buckets at the reference deciles
DEFAULTS = {"psi_threshold": 0.2, "js_threshold": 0.1, "alpha": 0.01, "min_samples": 500}


def alarm_rate(shift: float, checks: int = 500, size: int = 1000, seed: int = 7) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(checks):
        reference = histogram(rng.normal(0.0, 1.0, size), EDGES)
        current = histogram(rng.normal(shift, 1.0, size), EDGES)
        comparison = compare_feature("x", "numeric", reference, current, edges=list(EDGES), **DEFAULTS)
        alarms += bool(drifted(comparison, comparison.p_value, DEFAULTS["alpha"]))
    return alarms / checks


def test_false_alarm_rate_without_drift_is_at_most_five_percent() -> None:
    assert alarm_rate(shift=0.0) <= 0.05


def test_quarter_sd_shift_is_detected_in_ninety_percent_of_checks() -> None:
    assert alarm_rate(shift=0.25) >= 0.90
