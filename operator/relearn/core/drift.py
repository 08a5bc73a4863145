"""Drift statistics from bucket counts, as Prometheus gives them, and the
per-check drift verdict over all of a policy's features.

Pure numpy/scipy, no I/O; ``relearn.core.drift_policy`` calls it once per
check with every feature's counts. Counts may be non-integer (``increase()``
extrapolates to the window's edges) and may be all zero (an empty window).
Counts that cannot be real (NaN, ±Inf, negative, a cumulative series that
falls back, a count per bucket that does not match the layout) raise
:class:`~relearn.errors.InvalidMetrics`; a layout with fewer than two buckets
raises :class:`~relearn.errors.NotEnoughData`. Nothing here decides on them.

The verdict (:func:`compare_features`) is family-wise: one check raises a
false alarm with probability at most about ``alpha`` however many features,
buckets or categories it reads. Every score that can raise the alarm is a
p-value under "no drift", combined within a feature by Bonferroni and across
features by ``thresholds.correction`` (docs/drift.md has the rules and the
measured rates, bench/drift_quality.py measures them):

- the binned Kolmogorov-Smirnov test (numeric): the largest CDF gap at a
  bucket edge, with the asymptotic Kolmogorov tail at the effective size
  R·C/(R+C);
- Pearson's chi-square on the 2xB table, after merging sparse buckets so
  that each expects at least 20 counts in either window;
- PSI and Jensen-Shannon on the same merged buckets: each raises the alarm
  when it exceeds the policy's threshold *and* the level chance reaches at
  these sample sizes, (1/R + 1/C)·χ²(B-1), at the feature's share of alpha.

Merging first is what keeps PSI and JS honest on sparse layouts (a long tail
of categories, empty buckets, windows of very different sizes): their chance
level is only known where every bucket expects a few counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from relearn.errors import InvalidMetrics, InvalidSetting, NotEnoughData

SMOOTHING = 0.5  # pseudo-counts per bucket, spread as the pooled distribution (PSI only)
# Merge buckets until each expects at least this many counts in either window.
# Cochran's 5 is enough at a 5 % level; a family-wise level is alpha split over
# every score of every feature (1e-5 at 500 features), and only from about 20
# expected counts on do the chi-square tails of Pearson's statistic, PSI and
# JS hold that far out (bench/drift_quality.py measures the resulting rates).
MIN_EXPECTED = 20.0
NOISE = 1e-9  # counts below this are rounding noise of increase(), not events
# increase() extrapolates each `le` series on its own, so a cumulative count may
# dip a little below the one before. Dips adding up to more than this share of
# the +Inf count are no extrapolation: a series reset or a broken query.
CUMULATIVE_TOLERANCE = 0.1

Correction = Literal["benjamini-hochberg", "bonferroni", "none"]
FeatureKind = Literal["numeric", "categorical"]
Test = Literal["ks", "chi-square"]

Floats = NDArray[np.float64]


# -- validation ---------------------------------------------------------------------------


def counts(values: ArrayLike, what: str = "counts") -> Floats:
    """Per-bucket counts as floats, refused when they cannot be real.

    Raises InvalidMetrics for NaN, ±Inf, negative values or a sum too large
    for a float; values below NOISE are increase()'s rounding, zero."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidMetrics(f"{what} are not numbers: {error}") from None
    if array.ndim != 1:
        raise InvalidMetrics(f"{what} must be one list of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidMetrics(f"{what} contain NaN or infinite values: {_preview(array)}")
    if (array < -NOISE).any():
        raise InvalidMetrics(f"{what} contain negative values: {_preview(array)}")
    with np.errstate(over="ignore"):
        if not math.isfinite(float(array.sum())):
            raise InvalidMetrics(f"{what} sum beyond a float's range")
    return np.where(array < NOISE, 0.0, array)


def _preview(array: Floats) -> str:
    shown = ", ".join(f"{v:g}" for v in array[:8])
    return f"[{shown}{', …' if array.size > 8 else ''}]"


def buckets_from_cumulative(cumulative: ArrayLike) -> Floats:
    """Per-bucket counts from a Prometheus histogram's cumulative ``le`` counts
    (ascending ``le``, +Inf last).

    Extrapolation can make a cumulative count dip slightly below the one
    before it; such a dip is a zero count. Dips that add up to more than
    CUMULATIVE_TOLERANCE of the +Inf count would inflate the buckets beyond
    the total: InvalidMetrics."""
    values = counts(cumulative, "cumulative bucket counts")
    if values.size == 0:
        return values
    per_bucket = np.diff(values, prepend=0.0)
    dips = float(-per_bucket[per_bucket < 0].sum())
    if dips > CUMULATIVE_TOLERANCE * values[-1] + NOISE:
        raise InvalidMetrics(
            f"cumulative bucket counts fall back by {dips:g} of {values[-1]:g} (a reset in one `le` series?): "
            f"{_preview(values)}"
        )
    return np.clip(per_bucket, 0.0, None)


def check_layout(
    kind: FeatureKind, reference: ArrayLike, current: ArrayLike, edges: Sequence[float] = ()
) -> tuple[Floats, Floats]:
    """The two windows' counts of one feature over the same buckets, validated.

    Raises InvalidMetrics when a count cannot be real or the counts do not
    match the layout (numeric: one per edge plus +Inf, edges strictly
    ascending and finite), NotEnoughData for fewer than two buckets."""
    ref, cur = counts(reference, "reference counts"), counts(current, "current counts")
    if ref.size != cur.size:
        raise InvalidMetrics(f"reference has {ref.size} buckets, current window {cur.size}")
    if kind == "numeric":
        upper = np.asarray(edges, dtype=np.float64)
        if upper.size + 1 != ref.size:
            raise InvalidMetrics(f"{ref.size} bucket counts for {upper.size} edges (expected one more, for +Inf)")
        if not np.isfinite(upper).all() or (np.diff(upper) <= 0).any():
            raise InvalidMetrics(f"bucket edges must be finite and strictly ascending: {list(upper)}")
    if ref.size < 2:
        raise NotEnoughData(f"{ref.size} bucket: a distribution needs at least two to compare")
    return ref, cur


# -- single scores ------------------------------------------------------------------------


def _smoothed(ref: Floats, cur: Floats, smoothing: float) -> tuple[Floats, Floats]:
    """Proportions with pseudo-counts spread as the pooled distribution: a
    bucket empty in both windows gets none, and both windows get the same
    pseudo-proportions, so unequal window sizes add no PSI of their own."""
    total_ref, total_cur = ref.sum(axis=-1, keepdims=True), cur.sum(axis=-1, keepdims=True)
    column = ref + cur
    pooled = column / np.maximum(column.sum(axis=-1, keepdims=True), NOISE)
    pseudo = smoothing * np.count_nonzero(column > 0, axis=-1)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (ref + pseudo * pooled) / np.maximum(total_ref + pseudo, NOISE)
        q = (cur + pseudo * pooled) / np.maximum(total_cur + pseudo, NOISE)
    return p, q


def _psi(ref: Floats, cur: Floats, smoothing: float = SMOOTHING) -> Floats:
    p, q = _smoothed(ref, cur, smoothing)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where((p > 0) & (q > 0), (q - p) * np.log(q / p), 0.0)
    return np.asarray(np.maximum(terms.sum(axis=-1), 0.0), dtype=np.float64)


def psi(reference: ArrayLike, current: ArrayLike, smoothing: float = SMOOTHING) -> float:
    """Population stability index, symmetric, finite for any valid counts.

    Pseudo-counts (``smoothing`` per non-empty bucket) follow the pooled
    distribution; buckets empty in both windows contribute nothing."""
    ref, cur = _pair(reference, current)
    return float(_psi(ref, cur, smoothing)) if ref.size else 0.0


def _pair(reference: ArrayLike, current: ArrayLike) -> tuple[Floats, Floats]:
    ref, cur = counts(reference, "reference counts"), counts(current, "current counts")
    if ref.size != cur.size:
        raise InvalidMetrics(f"reference has {ref.size} buckets, current window {cur.size}")
    return ref, cur


def _noise_quantile(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """(1/R + 1/C)·χ²_{1-alpha}(B-1): the scale of chance differences."""
    if buckets < 2 or reference_total <= 0 or current_total <= 0:
        return math.inf
    return float((1.0 / reference_total + 1.0 / current_total) * special.chdtri(buckets - 1, alpha))


def psi_noise_threshold(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """The PSI that samples of these sizes exceed with probability about
    ``alpha`` under no drift, when every bucket expects a few counts."""
    return _noise_quantile(reference_total, current_total, buckets, alpha)


def _jensen_shannon(ref: Floats, cur: Floats) -> Floats:
    total_ref, total_cur = ref.sum(axis=-1, keepdims=True), cur.sum(axis=-1, keepdims=True)
    empty = (total_ref[..., 0] <= 0) | (total_cur[..., 0] <= 0)
    p, q = ref / np.maximum(total_ref, NOISE), cur / np.maximum(total_cur, NOISE)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    divergence = np.clip((kl_p + kl_q) / 2, 0.0, 1.0)
    return np.asarray(np.where(empty, 0.0, np.sqrt(divergence)), dtype=np.float64)


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 same, 1 disjoint."""
    ref, cur = _pair(reference, current)
    return float(_jensen_shannon(ref, cur)) if ref.size else 0.0


def jensen_shannon_noise_threshold(reference_total: float, current_total: float, buckets: int, alpha: float) -> float:
    """The JS distance chance reaches with probability about ``alpha``: the
    divergence is about (1/R + 1/C)·χ²(B-1) / (8 ln 2) bits under no drift."""
    quantile = _noise_quantile(reference_total, current_total, buckets, alpha)
    return math.sqrt(min(1.0, quantile / (8 * math.log(2)))) if math.isfinite(quantile) else 1.0


def _ks(ref: Floats, cur: Floats) -> tuple[Floats, Floats]:
    total_ref, total_cur = ref.sum(axis=-1), cur.sum(axis=-1)
    empty = (total_ref <= 0) | (total_cur <= 0)
    gap = np.abs(
        np.cumsum(ref, axis=-1) / np.maximum(total_ref, NOISE)[..., None]
        - np.cumsum(cur, axis=-1) / np.maximum(total_cur, NOISE)[..., None]
    )
    statistic = np.where(empty, 0.0, np.minimum(1.0, gap.max(axis=-1)))
    effective = total_ref * total_cur / np.maximum(total_ref + total_cur, NOISE)
    p_value = np.where(empty, 1.0, special.kolmogorov(np.sqrt(effective) * statistic))
    return np.asarray(statistic, dtype=np.float64), np.asarray(np.clip(p_value, 0.0, 1.0), dtype=np.float64)


def binned_ks(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test evaluated at the bucket edges.

    The statistic never exceeds the raw samples' one, so the p-value (the
    asymptotic Kolmogorov tail at the effective size R·C/(R+C)) is never
    below the asymptotic p-value of the raw samples. It is no bound on the
    exact test's: bench/drift_quality.py compares the two."""
    ref, cur = _pair(reference, current)
    if ref.size == 0:
        return 0.0, 1.0
    statistic, p_value = _ks(ref, cur)
    return float(statistic), float(p_value)


def _merge_labels(column: Floats, minimum: Floats) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Group consecutive buckets (per row, in the order given) until each
    group's pooled count reaches ``minimum``; a short last group joins the
    one before. Returns each bucket's group and each row's number of groups.

    One pass over the buckets: linear in the buckets. Many rows go through
    the buckets together; a few wide rows (one categorical feature with
    thousands of categories) one by one, where plain floats are faster."""
    rows, width = column.shape
    labels = np.empty((rows, width), dtype=np.intp)
    group = np.zeros(rows, dtype=np.intp)
    if rows * 8 < width:
        for i in range(rows):
            running, current, row_minimum = 0.0, 0, float(minimum[i])
            row = labels[i]
            for j, value in enumerate(column[i].tolist()):
                row[j] = current
                running += value
                if running >= row_minimum:
                    current, running = current + 1, 0.0
            group[i] = current
    else:
        sums = np.zeros(rows)
        for j in range(width):
            labels[:, j] = group
            sums += column[:, j]
            closed = sums >= minimum
            group += closed
            sums[closed] = 0.0
    short = (group > 0)[:, None] & (labels == group[:, None])
    labels[short] -= 1
    return labels, np.maximum(group, 1)


def _merge(ref: Floats, cur: Floats, ordered: NDArray[np.bool_]) -> tuple[Floats, Floats, NDArray[np.intp]]:
    """Rows of counts merged so that each bucket expects MIN_EXPECTED counts in either window.

    Ordered (numeric) rows merge neighbours; unordered (categorical) rows
    keep their large categories and pool the small ones into "other" groups
    (categories sorted by pooled count). The grouping depends on the pooled
    counts only, never on how they split between the windows, so the tests
    on the merged table keep their level."""
    rows, width = ref.shape
    column = ref + cur
    order = np.where(ordered[:, None], np.arange(width), np.argsort(-column, axis=1, kind="stable"))
    ref, cur, column = (np.asarray(np.take_along_axis(a, order, axis=1), dtype=np.float64) for a in (ref, cur, column))
    total_ref, total_cur = ref.sum(axis=1), cur.sum(axis=1)
    total = total_ref + total_cur
    with np.errstate(divide="ignore", invalid="ignore"):
        smaller_share = np.minimum(total_ref, total_cur) / total
        minimum = np.where(smaller_share > 0, MIN_EXPECTED / smaller_share, np.inf)
    labels, groups = _merge_labels(column, minimum)
    flat = (labels + np.arange(rows)[:, None] * width).ravel()
    merged_ref = np.bincount(flat, weights=ref.ravel(), minlength=rows * width).reshape(rows, width)
    merged_cur = np.bincount(flat, weights=cur.ravel(), minlength=rows * width).reshape(rows, width)
    return np.asarray(merged_ref, dtype=np.float64), np.asarray(merged_cur, dtype=np.float64), groups


def merge_sparse(
    reference: ArrayLike, current: ArrayLike, ordered: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Buckets merged until each expects at least MIN_EXPECTED counts in either window."""
    ref, cur = _pair(reference, current)
    if ref.size == 0:
        return ref, cur
    merged_ref, merged_cur, groups = _merge(ref[None, :], cur[None, :], np.array([ordered]))
    return merged_ref[0, : groups[0]], merged_cur[0, : groups[0]]


def _chi_square(ref: Floats, cur: Floats) -> tuple[Floats, Floats, NDArray[np.intp]]:
    total_ref, total_cur = ref.sum(axis=-1, keepdims=True), cur.sum(axis=-1, keepdims=True)
    column = ref + cur
    total = total_ref + total_cur
    used = column > 0
    dof = np.count_nonzero(used, axis=-1) - 1
    testable = (dof >= 1) & (total_ref[..., 0] > 0) & (total_cur[..., 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_ref = column * total_ref / total
        expected_cur = column * total_cur / total
        terms = np.where(used, (ref - expected_ref) ** 2 / expected_ref + (cur - expected_cur) ** 2 / expected_cur, 0.0)
    statistic = np.where(testable, terms.sum(axis=-1), 0.0)
    p_value = np.where(testable, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return (
        np.asarray(statistic, dtype=np.float64),
        np.asarray(p_value, dtype=np.float64),
        np.where(testable, dof, 0),
    )


def chi_square_statistic(reference: ArrayLike, current: ArrayLike) -> tuple[float, float, int]:
    """(χ², p-value, degrees of freedom) of the 2xB table as it is (no merging, no Yates)."""
    ref, cur = _pair(reference, current)
    if ref.size == 0:
        return 0.0, 1.0, 0
    statistic, p_value, dof = _chi_square(ref, cur)
    return float(statistic), float(p_value), int(dof)


def chi_square(reference: ArrayLike, current: ArrayLike, ordered: bool = True) -> tuple[float, float, int]:
    """The contingency test after merging sparse buckets."""
    ref, cur = merge_sparse(reference, current, ordered=ordered)
    return chi_square_statistic(ref, cur)


def bucket_midpoints(edges: Sequence[float]) -> Floats:
    """A representative value per bucket for ``le`` edges (+Inf implied)."""
    upper = np.asarray(edges, dtype=np.float64)
    if upper.size == 0:
        return np.zeros(1)
    lower = np.concatenate([[upper[0]], upper[:-1]])
    return np.concatenate([(lower + upper) / 2, [upper[-1]]])


def _wasserstein(ref: Floats, cur: Floats, spacing: Floats) -> Floats:
    """Σ |F_ref - F_cur|·Δx between consecutive bucket midpoints (``spacing``, one fewer than buckets)."""
    total_ref, total_cur = ref.sum(axis=-1, keepdims=True), cur.sum(axis=-1, keepdims=True)
    empty = (total_ref[..., 0] <= 0) | (total_cur[..., 0] <= 0)
    gap = np.abs(
        np.cumsum(ref, axis=-1) / np.maximum(total_ref, NOISE) - np.cumsum(cur, axis=-1) / np.maximum(total_cur, NOISE)
    )
    return np.asarray(np.where(empty, 0.0, (gap[..., :-1] * spacing).sum(axis=-1)), dtype=np.float64)


def wasserstein(reference: ArrayLike, current: ArrayLike, edges: Sequence[float]) -> float:
    """Earth mover's distance between the binned distributions, buckets at their midpoints."""
    ref, cur = _pair(reference, current)
    points = bucket_midpoints(edges)
    if ref.size < 2 or points.size != ref.size:
        return 0.0
    return float(_wasserstein(ref, cur, np.diff(points)))


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """p-values corrected for testing several features at once."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(1.0, p * p.size)]
    return [float(v) for v in stats.false_discovery_control(p, method="bh")]


# -- concept drift ------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyDrop:
    reference_accuracy: float
    current_accuracy: float
    drop: float
    ci_lower: float
    ci_upper: float
    reference_samples: float
    current_samples: float


def _wilson(successes: float, total: float, z: float) -> tuple[float, float]:
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(max(0.0, p * (1 - p)) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _feedback(correct: float, total: float, what: str) -> tuple[float, float]:
    if not (math.isfinite(correct) and math.isfinite(total)):
        raise InvalidMetrics(f"{what} feedback counts are not finite: {correct:g} correct of {total:g}")
    if correct < -NOISE or total < -NOISE:
        raise InvalidMetrics(f"{what} feedback counts are negative: {correct:g} correct of {total:g}")
    # increase() extrapolates each counter on its own: allow its rounding, not more.
    if correct > total * (1 + CUMULATIVE_TOLERANCE) + NOISE:
        raise InvalidMetrics(f"{what} feedback has more correct answers than answers: {correct:g} of {total:g}")
    total = max(0.0, total)
    return min(max(0.0, correct), total), total


def accuracy_drop(
    reference_correct: float,
    reference_total: float,
    current_correct: float,
    current_total: float,
    confidence: float = 0.95,
) -> AccuracyDrop:
    """Reference accuracy minus current accuracy, with Newcombe's interval
    (Wilson intervals of each proportion, combined). InvalidMetrics for
    counts that cannot be real."""
    reference_correct, reference_total = _feedback(reference_correct, reference_total, "reference")
    current_correct, current_total = _feedback(current_correct, current_total, "current")
    z = float(special.ndtri(0.5 + confidence / 2))
    p1 = reference_correct / reference_total if reference_total > 0 else 0.0
    p2 = current_correct / current_total if current_total > 0 else 0.0
    l1, u1 = _wilson(reference_correct, reference_total, z)
    l2, u2 = _wilson(current_correct, current_total, z)
    drop = p1 - p2
    lower = drop - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = drop + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return AccuracyDrop(p1, p2, drop, lower, upper, reference_total, current_total)


# -- the verdict over all features ----------------------------------------------------------


@dataclass(frozen=True)
class FeatureData:
    """One feature's validated counts in both windows (see :func:`check_layout`)."""

    name: str
    kind: FeatureKind
    reference: Floats
    current: Floats
    edges: tuple[float, ...] = ()


@dataclass(frozen=True)
class FeatureComparison:
    """Every score of one feature, and the numbers behind the decision."""

    name: str
    kind: FeatureKind
    reference_samples: float
    current_samples: float
    psi: float  # on the merged buckets
    psi_threshold: float  # the PSI that alone raises the alarm at these sizes
    jensen_shannon: float  # on the merged buckets
    jensen_shannon_threshold: float
    test: Test  # the significance test with the smaller p-value
    p_value: float  # every score of the feature combined, before correction across features
    wasserstein: float | None
    enough_data: bool
    buckets: int = 0  # buckets compared, after merging sparse ones


def scores_per_feature(kind: FeatureKind) -> int:
    """How many scores can raise the alarm for one feature (Bonferroni within it)."""
    return 4 if kind == "numeric" else 3  # (KS,) chi-square, PSI, JS


def compare_features(
    features: Sequence[FeatureData],
    *,
    psi_threshold: float,
    js_threshold: float,
    alpha: float,
    min_samples: float,
) -> list[FeatureComparison]:
    """Scores of every feature of one check, computed together (one array per score).

    Each feature's ``p_value`` combines its scores by Bonferroni: the
    smallest of the KS, chi-square, PSI and JS p-values times their number,
    where PSI's (JS's) counts only when it is above ``psi_threshold``
    (``js_threshold``). The thresholds returned are those at which PSI or JS
    alone would raise the alarm: the policy's, raised to the chance level at
    the feature's share of ``alpha`` among the features with enough data."""
    if not features:
        return []
    if not 0 < alpha < 1:
        raise InvalidSetting(f"thresholds.pValue must be in (0, 1), got {alpha}")
    rows = len(features)
    width = max(f.reference.size for f in features)
    ref, cur = np.zeros((rows, width)), np.zeros((rows, width))
    spacing = np.zeros((rows, max(1, width - 1)))
    for i, feature in enumerate(features):
        size = feature.reference.size
        ref[i, :size], cur[i, :size] = feature.reference, feature.current
        if feature.kind == "numeric" and len(feature.edges) + 1 == size:
            spacing[i, : size - 1] = np.diff(bucket_midpoints(feature.edges))
    numeric = np.array([f.kind == "numeric" for f in features])
    total_ref, total_cur = ref.sum(axis=1), cur.sum(axis=1)
    enough = np.minimum(total_ref, total_cur) >= min_samples

    merged_ref, merged_cur, groups = _merge(ref, cur, numeric)
    _, chi_p, _ = _chi_square(merged_ref, merged_cur)
    psi_values = _psi(merged_ref, merged_cur)
    js_values = _jensen_shannon(merged_ref, merged_cur)
    ks_p = np.where(numeric, _ks(ref, cur)[1], 1.0)
    distance = _wasserstein(ref, cur, spacing[:, : width - 1]) if width > 1 else np.zeros(rows)

    dof = np.maximum(groups - 1, 1)
    both = (total_ref > 0) & (total_cur > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(both, 1.0 / total_ref + 1.0 / total_cur, np.inf)
        psi_p = np.where(both & (groups > 1), special.chdtrc(dof, psi_values / scale), 1.0)
        js_p = np.where(both & (groups > 1), special.chdtrc(dof, js_values**2 * 8 * math.log(2) / scale), 1.0)
    psi_p = np.where(psi_values > psi_threshold, psi_p, 1.0)
    js_p = np.where(js_values > js_threshold, js_p, 1.0)
    per_feature = np.array([scores_per_feature(f.kind) for f in features])
    combined = np.minimum(1.0, per_feature * np.minimum.reduce([ks_p, chi_p, psi_p, js_p]))

    # The level at which PSI or JS alone raises the alarm: Bonferroni across
    # the features with enough data (Benjamini-Hochberg may flag below it).
    level = alpha / (per_feature * max(1, int(enough.sum())))
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = np.where(both, scale * special.chdtri(dof, level), np.inf)
    psi_thresholds = np.maximum(psi_threshold, np.where(np.isfinite(noise), noise, psi_threshold))
    js_noise = np.sqrt(np.minimum(1.0, noise / (8 * math.log(2))))
    js_thresholds = np.maximum(js_threshold, np.where(np.isfinite(js_noise), js_noise, 1.0))

    results = []
    for i, feature in enumerate(features):
        test: Test = "ks" if numeric[i] and ks_p[i] <= chi_p[i] else "chi-square"
        results.append(
            FeatureComparison(
                name=feature.name,
                kind=feature.kind,
                reference_samples=float(total_ref[i]),
                current_samples=float(total_cur[i]),
                psi=float(psi_values[i]),
                psi_threshold=float(psi_thresholds[i]),
                jensen_shannon=float(js_values[i]),
                jensen_shannon_threshold=float(js_thresholds[i]),
                test=test,
                p_value=float(combined[i]),
                wasserstein=float(distance[i]) if numeric[i] else None,
                enough_data=bool(enough[i]),
                buckets=int(groups[i]),
            )
        )
    return results


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
    """Scores of one feature checked on its own (a family of one)."""
    ref, cur = check_layout(kind, reference, current, edges)
    (comparison,) = compare_features(
        [FeatureData(name, kind, ref, cur, tuple(edges))],
        psi_threshold=psi_threshold,
        js_threshold=js_threshold,
        alpha=alpha,
        min_samples=min_samples,
    )
    return comparison


def decide(
    comparisons: Sequence[FeatureComparison], correction: Correction, alpha: float
) -> list[tuple[float | None, bool | None]]:
    """(corrected p-value, drifted) of each feature of one check: the
    combined p-values of the features with enough data, corrected together;
    (None, None) for a feature without enough data."""
    testable = [c for c in comparisons if c.enough_data]
    adjusted = iter(adjust_p_values([c.p_value for c in testable], correction))
    decisions: list[tuple[float | None, bool | None]] = []
    for comparison in comparisons:
        if comparison.enough_data:
            p = next(adjusted)
            decisions.append((p, drifted(comparison, p, alpha)))
        else:
            decisions.append((None, None))
    return decisions


def drifted(comparison: FeatureComparison, adjusted_p_value: float, alpha: float) -> bool | None:
    """The decision for one feature: None when there is not enough data to say.

    Drift is a combined p-value (every score of the feature, see
    :func:`compare_features`), corrected across features, below alpha."""
    if not comparison.enough_data:
        return None
    return bool(adjusted_p_value < alpha)
