"""The per-feature drift rule as it was before issue 13, kept as the baseline
that bench/drift_quality.py measures the new per-check rule against.

Frozen copy of ``relearn.core.drift`` at commit a3f3bbb (accuracy parts
left out), plus :func:`check`, the old ``assess`` loop: PSI and JS
thresholds at a per-feature noise quantile ORed over features, p-values
corrected across features, counts zeroed when NaN or negative. Not used by
the operator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

SMOOTHING = 0.5  # counts added to every bucket before comparing proportions
MIN_EXPECTED = 5.0  # chi-square: merge buckets whose expected count is below this

Correction = Literal["benjamini-hochberg", "bonferroni", "none"]
FeatureKind = Literal["numeric", "categorical"]


NOISE = 1e-9  # counts below this are rounding noise of increase(), not events


def _counts(values: ArrayLike) -> NDArray[np.float64]:
    array = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.where(array < NOISE, 0.0, array)


def buckets_from_cumulative(cumulative: ArrayLike) -> NDArray[np.float64]:
    """Per-bucket counts from a Prometheus histogram's cumulative ``le`` counts
    (ascending ``le``, +Inf last). Extrapolation can make a cumulative count
    dip below the one before it; such a dip is no negative count, it is zero."""
    values = _counts(cumulative)
    if values.size == 0:
        return values
    return np.clip(np.diff(values, prepend=0.0), 0.0, None)


def _proportions(counts: NDArray[np.float64], smoothing: float) -> NDArray[np.float64]:
    smoothed = counts + smoothing
    return np.asarray(smoothed / smoothed.sum(), dtype=np.float64)


def psi(reference: ArrayLike, current: ArrayLike, smoothing: float = SMOOTHING) -> float:
    ref, cur = _counts(reference), _counts(current)
    if ref.size == 0:
        return 0.0
    p, q = _proportions(ref, smoothing), _proportions(cur, smoothing)
    return float(np.sum((q - p) * np.log(q / p)))


def _noise_quantile(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """(1/R + 1/C)·χ²_{1-alpha}(B-1): the scale of chance differences."""
    if buckets < 2 or reference_total <= 0 or current_total <= 0:
        return math.inf
    return float((1.0 / reference_total + 1.0 / current_total) * stats.chi2.ppf(1.0 - alpha, buckets - 1))


def psi_noise_threshold(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """The PSI that samples of these sizes exceed with probability ``alpha`` under no drift."""
    return _noise_quantile(reference_total, current_total, buckets, alpha)


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 same, 1 disjoint."""
    ref, cur = _counts(reference), _counts(current)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 0.0
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    divergence = max(0.0, float(np.sum(kl_p) + np.sum(kl_q)) / 2)
    return math.sqrt(min(1.0, divergence))


def jensen_shannon_noise_threshold(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """The JS distance chance reaches with probability ``alpha``: the divergence
    is about (1/R + 1/C)·χ²(B-1) / (8 ln 2) bits under no drift."""
    quantile = _noise_quantile(reference_total, current_total, buckets, alpha)
    return math.sqrt(min(1.0, quantile / (8 * math.log(2)))) if math.isfinite(quantile) else 1.0


def binned_ks(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test evaluated at the bucket edges."""
    ref, cur = _counts(reference), _counts(current)
    total_ref, total_cur = ref.sum(), cur.sum()
    if total_ref <= 0 or total_cur <= 0:
        return 0.0, 1.0
    gap = np.abs(np.cumsum(ref) / total_ref - np.cumsum(cur) / total_cur)
    statistic = float(min(1.0, gap.max()))
    effective = max(1, round(total_ref * total_cur / (total_ref + total_cur)))
    p_value = float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))
    return statistic, p_value


def merge_sparse(
    reference: ArrayLike, current: ArrayLike, ordered: bool = True, min_expected: float = MIN_EXPECTED
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Merge buckets until each expected count is at least ``min_expected``.

    Ordered (numeric) buckets merge into their smaller neighbour; unordered
    (categorical) ones merge the two smallest into one, as an "other".
    """
    ref: list[float] = [float(v) for v in _counts(reference)]
    cur: list[float] = [float(v) for v in _counts(current)]
    total = sum(ref) + sum(cur)
    if total <= 0:
        return np.asarray(ref), np.asarray(cur)
    share_ref, share_cur = sum(ref) / total, sum(cur) / total

    def expected(i: int) -> float:
        column = ref[i] + cur[i]
        return min(column * share_ref, column * share_cur)

    while len(ref) > 2:
        smallest = min(range(len(ref)), key=expected)
        if expected(smallest) >= min_expected:
            break
        if ordered:
            if smallest == 0:
                other = 1
            elif smallest == len(ref) - 1:
                other = smallest - 1
            else:
                other = smallest - 1 if expected(smallest - 1) <= expected(smallest + 1) else smallest + 1
        else:
            other = min((i for i in range(len(ref)) if i != smallest), key=expected)
        keep, drop = min(smallest, other), max(smallest, other)
        ref[keep] += ref.pop(drop)
        cur[keep] += cur.pop(drop)
    return np.asarray(ref), np.asarray(cur)


def chi_square_statistic(reference: ArrayLike, current: ArrayLike) -> tuple[float, float, int]:
    """(χ², p-value, degrees of freedom) of the 2xB table as it is (no merging, no Yates)."""
    table = np.vstack([_counts(reference), _counts(current)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return 0.0, 1.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, float(stats.chi2.sf(statistic, dof)), dof


def chi_square(reference: ArrayLike, current: ArrayLike, ordered: bool = True) -> tuple[float, float, int]:
    """The contingency test after merging sparse buckets."""
    ref, cur = merge_sparse(reference, current, ordered=ordered)
    return chi_square_statistic(ref, cur)


def bucket_midpoints(edges: Sequence[float]) -> NDArray[np.float64]:
    """A representative value per bucket for ``le`` edges (+Inf implied)."""
    upper = np.asarray(edges, dtype=np.float64)
    if upper.size == 0:
        return np.zeros(1)
    lower = np.concatenate([[upper[0]], upper[:-1]])
    return np.concatenate([(lower + upper) / 2, [upper[-1]]])


def wasserstein(reference: ArrayLike, current: ArrayLike, edges: Sequence[float]) -> float:
    ref, cur = _counts(reference), _counts(current)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 0.0
    points = bucket_midpoints(edges)
    return float(stats.wasserstein_distance(points, points, u_weights=ref, v_weights=cur))


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """p-values corrected for testing several features at once."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(1.0, p * p.size)]
    return [float(v) for v in stats.false_discovery_control(p, method="bh")]


@dataclass(frozen=True)
class FeatureComparison:
    """Every score of one feature, and the numbers behind the decision."""

    name: str
    kind: FeatureKind
    reference_samples: float
    current_samples: float
    psi: float
    psi_threshold: float
    jensen_shannon: float
    jensen_shannon_threshold: float
    test: Literal["ks", "chi-square"]
    p_value: float  # raw, before correction across features
    wasserstein: float | None
    enough_data: bool


def compare_feature(
    name: str,
    kind: FeatureKind,
    reference: ArrayLike,
    current: ArrayLike,
    *,
    edges: Sequence[float] = (),
    psi_threshold: float,
    js_threshold: float,
    alpha: float,
    min_samples: float,
) -> FeatureComparison:
    """Scores of one feature. The thresholds returned are the effective ones:
    the policy's, raised to the chance level of these sample sizes."""
    ref, cur = _counts(reference), _counts(current)
    total_ref, total_cur = float(ref.sum()), float(cur.sum())
    buckets = int(np.count_nonzero((ref + cur) > 0))
    if kind == "numeric":
        _, ks_p = binned_ks(ref, cur)
        _, chi_p, _ = chi_square(ref, cur, ordered=True)
        # Two tests on one feature: Bonferroni between them keeps the level.
        test: Literal["ks", "chi-square"] = "ks" if ks_p <= chi_p else "chi-square"
        p_value = min(1.0, 2 * min(ks_p, chi_p))
        distance: float | None = wasserstein(ref, cur, edges)
    else:
        _, p_value, _ = chi_square(ref, cur, ordered=False)
        test, distance = "chi-square", None
    return FeatureComparison(
        name=name,
        kind=kind,
        reference_samples=total_ref,
        current_samples=total_cur,
        psi=psi(ref, cur),
        psi_threshold=max(psi_threshold, psi_noise_threshold(total_ref, total_cur, buckets, alpha)),
        jensen_shannon=jensen_shannon(ref, cur),
        jensen_shannon_threshold=max(
            js_threshold, jensen_shannon_noise_threshold(total_ref, total_cur, buckets, alpha)
        ),
        test=test,
        p_value=p_value,
        wasserstein=distance,
        enough_data=min(total_ref, total_cur) >= min_samples,
    )


def drifted(comparison: FeatureComparison, adjusted_p_value: float, alpha: float) -> bool | None:
    """The decision for one feature: None when there is not enough data to say.

    Drift is a significant difference (corrected p-value below alpha) or an
    effect beyond what chance gives at these sample sizes (PSI or JS above
    their effective thresholds)."""
    if not comparison.enough_data:
        return None
    return bool(
        adjusted_p_value < alpha
        or comparison.psi > comparison.psi_threshold
        or comparison.jensen_shannon > comparison.jensen_shannon_threshold
    )


def check(
    features: Sequence[tuple[str, FeatureKind, ArrayLike, ArrayLike, Sequence[float]]],
    *,
    psi_threshold: float = 0.2,
    js_threshold: float = 0.1,
    alpha: float = 0.01,
    min_samples: float = 500,
    correction: Correction = "benjamini-hochberg",
) -> bool | None:
    """The old policy verdict of one check over ``(name, kind, reference, current, edges)``."""
    comparisons = [
        compare_feature(
            name,
            kind,
            ref,
            cur,
            edges=edges,
            psi_threshold=psi_threshold,
            js_threshold=js_threshold,
            alpha=alpha,
            min_samples=min_samples,
        )
        for name, kind, ref, cur, edges in features
    ]
    testable = [c for c in comparisons if c.enough_data]
    adjusted = adjust_p_values([c.p_value for c in testable], correction)
    answers = [drifted(c, p, alpha) for c, p in zip(testable, adjusted, strict=True)]
    return True if any(answers) else (None if not answers else False)
