"""The statistics of an A/B experiment on a success rate: pure functions, no
I/O, so every number in an ABExperiment's status can be reproduced by hand.
:func:`decide` is called by :func:`relearn.core.experiment.judge` once per
look; :func:`evaluate` is its vectorised core, which the samples-needed
forecast and ``bench/decision_quality.py`` run on many looks at once.

``lift`` = challenger rate - champion rate. The promotion rule
(``analysis.promoteWhen``) names the null hypothesis the test must reject:

- ``Better``: the lift is above 0 (theta0 = 0);
- ``BetterByMinImprovement``: the lift is above ``minImprovement`` (theta0 = delta);
- ``BetterAndObservedMinImprovement``: ``Better``, and the observed lift is at
  least ``minImprovement`` (the original specification's rule).

Each test is sized so that a lift of theta1 = theta0 + delta (delta =
``minImprovement``) is promoted with probability 0.8, and futility rejects
the challenger once the data rule theta1 out.

Two methods:

- ``fixed``: a one-sided two-proportion z-test (pooled under H0 for
  ``Better``, as ``statsmodels.stats.proportion.proportions_ztest``). Valid
  when looked at once, at its horizon.
- ``sequential`` (the default): a truncated sequential test with linear
  boundaries on the score statistic S = (lift - theta0) / V over the
  information I = 1 / V (Whitehead's boundaries; V is the variance of the
  lift). Under "the lift is theta0", S is close to a Brownian motion W(I),
  and the probability that W ever crosses the line a + c I before the
  planned maximum information T has a closed form (Bachelier-Levy):

      P(cross) = Phi-bar((a + cT) / sqrt T) + exp(-2 a c) Phi((cT - a) / sqrt T)

  With delta = 1 units and T = 1.5 x the fixed-horizon information
  (z_alpha + z_0.8)^2, (a, c) solve P(cross | lift theta0) = 0.8 alpha and
  P(cross | lift theta1) = 0.85. Since the crossing probability is for
  *continuous* monitoring, it bounds any schedule of looks, planned or not.
  In lift units the line promotes when

      lift - (c delta + a V / delta) > theta0

  The other 0.2 alpha goes to a wide normal-mixture confidence sequence
  (Robbins; tau = 0.3), which promotes a challenger tens of points better at
  the first look of a small gate, where the line needs many samples; the
  lower bound is the larger of the two, so false promotions stay within
  alpha by the union bound. The mirrored line (level 0.04, same T) gives the upper bound that
  futility uses; a second always-valid upper bound (a wide normal-mixture
  confidence sequence at level 0.01) rejects a challenger that is grossly
  worse at the first look. Futility costs at most 0.05 of the 0.85, so the
  power at theta1 is at least 0.8 (alpha <= 0.1). At the planned maximum
  (V <= delta^2 / T) the test ends: not promoted is rejected
  (``PlannedMaximumReached``), so no experiment runs past about 1.5 x the
  fixed horizon's samples.

  The always-valid p-value joins both tests: the smaller of P_line / 0.8 and
  P_mixture / 0.2, where P_line is the probability under theta0 of ever
  crossing the line parallel to the boundary through today's point and
  P_mixture = 1 / Lambda(lift - theta0); a running minimum, and p < alpha
  exactly when lower > theta0.

The variance is the one under the tested hypothesis, not the plug-in one:
both arms' rates are moved to the hypothesised lift around their pooled,
Laplace-smoothed rate ((s + 1) / (n + 2)), and each arm's rate is kept at
least 1 / (n + 2) from 0 and 1. So a small arm near 0 or 1 never looks
certain, and unbalanced traffic cannot shrink the bound below the truth.

Why this design, not an alpha-spending group-sequential one: a spending
design needs the information times of all earlier looks to compute today's
boundary, while the operator keeps only cumulative counts and the last
p-value, and looks at irregular times (intervals, restarts, scrape gaps).
The linear boundary needs no state, its error holds for any looks at all,
and its truncation bounds the tail. Whitehead's triangular tests are close
to optimal in expected sample size among truncated designs. The
always-valid mixture test it replaces had no maximum, so its 90th
percentile ran to about 9 times the fixed horizon.

``samples_needed`` comes from a predictive simulation: future counts at
today's traffic split, with the same boundaries at every future look. Its
median comes from both rates at today's estimate, and its 90th percentile
from rates drawn from their Beta posteriors. It is seeded, so a look is
reproducible.

Every public function is total: invalid counts raise
:class:`relearn.errors.InvalidMetrics`, settings outside what the test can
honour raise :class:`relearn.errors.InvalidSetting`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy.stats import binom, norm

from relearn.errors import InvalidMetrics, InvalidSetting, NotEnoughData

Method = Literal["sequential", "fixed"]
PromotionRule = Literal["Better", "BetterByMinImprovement", "BetterAndObservedMinImprovement"]
Outcome = Literal["Continue", "Promote", "Reject"]
Floats = npt.NDArray[np.float64]

POWER = 0.8  # at theta1, promised to the user
DESIGN_POWER = 0.85  # of the efficacy line alone: futility may take at most 0.05 of it
MAX_INFORMATION = 1.5  # the planned maximum, in fixed-horizon informations
FUTILITY_ALPHA = 0.04  # the linear futility line's chance to reject a challenger at theta1
GROSS_ALPHA = 0.01  # the wide confidence sequence's share of the futility error
GROSS_SHARE = 0.2  # its share of alpha on the promotion side: the line gets the rest
GROSS_TAU2 = 0.3**2  # its mixing variance: sharp for lifts of tens of points
MAX_ALPHA = 0.5  # above it a promotion would be likelier wrong than right
MIN_ALPHA = 1e-12
VARIANCE_RANGE = (1e-100, 1e100)
MIN_IMPROVEMENT = 1e-6  # a millionth of a point: below it no experiment could ever end
FORECAST_PATHS = 300
FORECAST_LOOKS = 48
FORECAST_SEED = 20261201
FORECAST_LIMIT = 1e15  # samples: beyond it the forecast says "never"


@dataclass(frozen=True)
class Arm:
    successes: float
    samples: float

    @property
    def rate(self) -> float:
        return self.successes / self.samples if self.samples > 0 else math.nan


@dataclass(frozen=True)
class Settings:
    method: Method = "sequential"
    alpha: float = 0.05
    min_samples_per_arm: int = 1000
    min_improvement: float = 0.02
    promote_when: PromotionRule = "Better"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    message: str
    lift: float
    ci_lower: float
    ci_upper: float
    p_value: float
    samples_needed: int | None  # median more samples on the smaller arm to a decision; None: unknown
    samples_needed_upper: int | None = None  # its 90th percentile
    planned_maximum: int | None = None  # samples on the smaller arm where the sequential test ends, at today's rates


@dataclass(frozen=True)
class Design:
    """The sequential boundaries in delta = 1 units (see the module docstring)."""

    alpha: float
    maximum: float  # T: the planned maximum information
    a: float  # efficacy line S >= a + c I
    c: float
    futility_a: float  # futility line, mirrored around theta1
    futility_c: float


@dataclass(frozen=True)
class Evaluation:
    """One or many looks at once (arrays of the counts' shape)."""

    lift: Floats
    lower: Floats  # promotion bound: promote when above theta0
    upper: Floats  # futility bound: reject when below theta1
    p_value: Floats  # this look's p-value (not yet the running minimum)
    information: Floats  # fraction of the planned maximum reached (sequential), else 0
    promote: npt.NDArray[np.bool_]  # the rule holds (gates aside)
    reject: npt.NDArray[np.bool_]  # futility or the planned maximum (gates aside)


# -- validation -----------------------------------------------------------------------


def check_settings(settings: Settings) -> None:
    """Raise InvalidSetting for a setting the test cannot honour."""
    if settings.method not in get_args(Method):
        raise InvalidSetting(f"unknown method {settings.method!r}")
    if settings.promote_when not in get_args(PromotionRule):
        raise InvalidSetting(f"unknown promoteWhen {settings.promote_when!r}")
    alpha = settings.alpha
    if not (isinstance(alpha, int | float) and MIN_ALPHA <= alpha < MAX_ALPHA):
        raise InvalidSetting(
            f"alpha {alpha!r} is outside [{MIN_ALPHA:g}, {MAX_ALPHA}): above 0.5 a promotion is likelier wrong "
            "than right"
        )
    delta = settings.min_improvement
    if not (isinstance(delta, int | float) and MIN_IMPROVEMENT <= delta < 1):
        raise InvalidSetting(f"minImprovement {delta!r} must lie in [{MIN_IMPROVEMENT:g}, 1)")
    minimum = settings.min_samples_per_arm
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise InvalidSetting(f"minSamplesPerArm {minimum!r} must be an integer >= 1")


def check_arm(name: str, arm: Arm) -> None:
    """Raise InvalidMetrics for counts that cannot be real."""
    s, n = arm.successes, arm.samples
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (s, n)):
        raise InvalidMetrics(f"{name}: counts must be numbers, got {s!r}/{n!r}")
    if not (math.isfinite(s) and math.isfinite(n)):
        raise InvalidMetrics(f"{name}: non-finite counts {s}/{n}")
    if s < 0 or n < 0:
        raise InvalidMetrics(f"{name}: negative counts {s}/{n}")
    if s > n:
        raise InvalidMetrics(f"{name}: {s:g} successes out of {n:g} samples")


def check_look(champion: Arm, challenger: Arm, settings: Settings) -> None:
    """Both arms' counts and the settings, and samples on both arms."""
    check_settings(settings)
    check_arm("champion", champion)
    check_arm("challenger", challenger)
    if min(champion.samples, challenger.samples) <= 0:
        raise NotEnoughData("an arm has no samples yet", reason="NoSamples")


# -- the tests ------------------------------------------------------------------------


def z_test(champion: Arm, challenger: Arm) -> tuple[float, float]:
    """(z, one-sided p) that the challenger's rate is larger; pooled variance
    under H0, as ``statsmodels.stats.proportion.proportions_ztest``."""
    check_look(champion, challenger, Settings(min_samples_per_arm=1))
    pooled = (champion.successes + challenger.successes) / (champion.samples + challenger.samples)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / champion.samples + 1.0 / challenger.samples))
    if se == 0.0:
        return 0.0, 1.0
    z = (challenger.rate - champion.rate) / se
    return z, float(norm.sf(z))


def fixed_horizon(base_rate: float, lift: float, alpha: float = 0.05, power: float = POWER) -> int:
    """Samples per arm a one-sided z-test needs to detect ``lift`` over ``base_rate``."""
    if not (base_rate >= 0.0 and lift > 0.0 and base_rate + lift <= 1.0 and 0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise InvalidSetting(f"no fixed horizon for lift {lift} over {base_rate} at alpha {alpha}, power {power}")
    p1, p2 = base_rate, base_rate + lift
    mean = (p1 + p2) / 2
    z_a, z_b = float(norm.isf(alpha)), float(norm.ppf(power))
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(max(p1 * (1 - p1) + p2 * (1 - p2), 0.0))
    return math.ceil(root**2 / lift**2)


def log_crossing(a: Floats | float, slope: Floats | float, maximum: float) -> Floats:
    """log P(a Brownian motion crosses a + slope t for some t <= maximum), a > 0."""
    a_, c_ = np.asarray(a, dtype=np.float64), np.asarray(slope, dtype=np.float64)
    root = math.sqrt(maximum)
    first = special.log_ndtr(-(a_ + c_ * maximum) / root)  # log Phi-bar, as a ufunc: the design calls it often
    second = -2.0 * a_ * c_ + special.log_ndtr((c_ * maximum - a_) / root)
    return np.asarray(np.logaddexp(first, second), dtype=np.float64)


def _intercept(slope: float, maximum: float, level: float) -> float:
    """The a > 0 with crossing probability ``level`` for a line of ``slope``."""
    target = math.log(level)
    high = 1.0
    while float(log_crossing(high, slope, maximum)) > target:
        high *= 2.0
    return float(optimize.brentq(lambda a: float(log_crossing(a, slope, maximum)) - target, 1e-12, high, xtol=1e-12))


def _line(level: float, power: float, maximum: float) -> tuple[float, float]:
    """(a, c): crossing probability ``level`` at drift 0 and ``power`` at drift 1."""

    def shortfall(slope: float) -> float:
        return float(log_crossing(_intercept(slope, maximum, level), slope - 1.0, maximum)) - math.log(power)

    low = -1.0
    while shortfall(low) < 0:  # the power rises as the line flattens, to a single look's at T
        low *= 2.0
        if low < -1e3:
            raise InvalidSetting(f"no sequential design reaches power {power} at level {level}")
    high = 1.0 - 1e-3
    if shortfall(high) >= 0:  # even a line parallel to the drift has the power: take the steepest
        return _intercept(high, maximum, level), high
    # A falling line would put a bound on the wrong side of the observed lift
    # (possible for alpha above ~0.25): keep it flat there, at less power.
    slope = max(0.0, float(optimize.brentq(shortfall, low, high, xtol=1e-12)))
    return _intercept(slope, maximum, level), slope


def _reachable(level: float, maximum: float) -> float:
    """The design power, or less where T cannot reach it (a large alpha, or
    the futility line for one): short of a single look at T's power."""
    return min(DESIGN_POWER, float(norm.cdf(math.sqrt(maximum) - norm.isf(level))) - 0.02)


@functools.lru_cache(maxsize=256)
def design(alpha: float) -> Design:
    """The sequential boundaries for ``alpha`` (delta = 1 units; cached)."""
    check_settings(Settings(alpha=alpha))
    maximum = MAX_INFORMATION * float(norm.isf(alpha) + norm.ppf(POWER)) ** 2
    level = alpha * (1.0 - GROSS_SHARE)
    a, c = _line(level, _reachable(level, maximum), maximum)
    futility_a, futility_c = _line(FUTILITY_ALPHA, _reachable(FUTILITY_ALPHA, maximum), maximum)
    return Design(alpha, maximum, a, c, futility_a, futility_c)


def _null_variance(sa: Floats, na: Floats, sb: Floats, nb: Floats, theta: float) -> Floats:
    """Variance of the lift if it were ``theta``: both rates moved to it around
    the pooled, Laplace-smoothed rate, each at least 1 / (n + 2) from 0 and 1."""
    total = na + nb
    pooled = (sa + sb + 1.0) / (total + 2.0)
    pa = np.clip(pooled - nb / total * theta, 1.0 / (na + 2.0), 1.0 - 1.0 / (na + 2.0))
    pb = np.clip(pooled + na / total * theta, 1.0 / (nb + 2.0), 1.0 - 1.0 / (nb + 2.0))
    variance = pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb
    # Kept where its square is still a number: counts beyond 1e100 or below
    # 1e-100 decide as at those bounds instead of turning into NaN.
    return np.asarray(np.clip(variance, VARIANCE_RANGE[0], VARIANCE_RANGE[1]), dtype=np.float64)


def _mixture_distance(variance: Floats, tau2: float, level: float) -> Floats:
    """Distance of a one-sided always-valid bound from the normal-mixture
    confidence sequence (Robbins): its two-sided half-width at ``level``,
    which lies beyond the one-sided bound at ``level``, so it is conservative."""
    log_ratio = 2.0 * math.log(1.0 / level) + np.log1p(tau2 / variance)
    return np.asarray(np.sqrt(variance * (variance + tau2) / tau2 * log_ratio), dtype=np.float64)


def _mixture_p_value(distance: Floats, variance: Floats, tau2: float) -> Floats:
    """1 / Lambda(distance) of the normal mixture (one-sided: 1 at or below 0),
    in log space: below ``level`` exactly when distance > _mixture_distance(level)."""
    log_ratio = 0.5 * np.log(variance / (variance + tau2)) + tau2 * distance**2 / (2.0 * variance * (variance + tau2))
    return np.asarray(np.where(distance > 0, np.exp(-np.maximum(log_ratio, 0.0)), 1.0), dtype=np.float64)


def theta0(settings: Settings) -> float:
    return settings.min_improvement if settings.promote_when == "BetterByMinImprovement" else 0.0


def evaluate(
    champion_successes: npt.ArrayLike,
    champion_samples: npt.ArrayLike,
    challenger_successes: npt.ArrayLike,
    challenger_samples: npt.ArrayLike,
    settings: Settings,
) -> Evaluation:
    """The bounds and the rule at many looks at once. Counts must be valid and
    every arm must have samples (else InvalidMetrics or InvalidSetting); gates
    are not applied."""
    check_settings(settings)
    sa = np.asarray(champion_successes, dtype=np.float64)
    na = np.asarray(champion_samples, dtype=np.float64)
    sb = np.asarray(challenger_successes, dtype=np.float64)
    nb = np.asarray(challenger_samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        real = np.isfinite(sa) & np.isfinite(na) & np.isfinite(sb) & np.isfinite(nb)
        real &= (sa >= 0) & (sb >= 0) & (sa <= na) & (sb <= nb) & (na > 0) & (nb > 0)
    if not np.all(real):
        raise InvalidMetrics("counts that cannot be real, or an arm without samples")
    # A vanishing arm (1e-300 samples) has an infinite variance: bounds at -1
    # and 1 and p = 1 are the right answer, not a warning.
    with np.errstate(over="ignore", divide="ignore"):
        return _evaluate(sa, na, sb, nb, settings)


def _evaluate(sa: Floats, na: Floats, sb: Floats, nb: Floats, settings: Settings) -> Evaluation:
    delta, null = settings.min_improvement, theta0(settings)
    alternative = null + delta
    lift = sb / nb - sa / na
    v0 = _null_variance(sa, na, sb, nb, null)
    v1 = _null_variance(sa, na, sb, nb, alternative)
    gross = lift + _mixture_distance(v1, GROSS_TAU2, GROSS_ALPHA)
    if settings.method == "fixed":
        z = float(norm.isf(settings.alpha))
        if null == 0.0:  # the pooled z-test, unsmoothed (statsmodels' p-value)
            pooled = (sa + sb) / (na + nb)
            se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
        else:
            se = np.sqrt(v0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_value = np.where(se > 0, norm.sf((lift - null) / np.where(se > 0, se, 1.0)), 1.0)
        lower = lift - z * se
        upper = np.minimum(lift + z * np.sqrt(v1), gross)
        information = np.zeros_like(lift)
        significant = p_value < settings.alpha
        ended = np.zeros(lift.shape, dtype=np.bool_)
    else:
        d = design(settings.alpha)
        share = settings.alpha * GROSS_SHARE
        lower = np.maximum(lift - (d.c * delta + d.a * v0 / delta), lift - _mixture_distance(v0, GROSS_TAU2, share))
        upper = np.minimum(lift + d.futility_c * delta + d.futility_a * v1 / delta, gross)
        information = delta**2 / (v0 * d.maximum)
        # the intercept of the parallel line through today's point (delta = 1 units)
        through = (lift - null - d.c * delta) * delta / v0
        line_p = np.where(through > 0, np.exp(log_crossing(np.maximum(through, 1e-300), d.c, d.maximum)), 1.0)
        # the union of both tests, as one p-value: below alpha when either clears its share
        p_value = np.minimum(line_p / (1.0 - GROSS_SHARE), _mixture_p_value(lift - null, v0, GROSS_TAU2) / GROSS_SHARE)
        significant = lower > null
        ended = information >= 1.0
    promote = (
        significant & (lift >= delta) if settings.promote_when == "BetterAndObservedMinImprovement" else significant
    )
    reject = ~promote & ((upper < alternative) | ended)
    return Evaluation(
        lift=lift,
        lower=np.clip(lower, -1.0, 1.0),
        upper=np.clip(upper, -1.0, 1.0),
        p_value=np.clip(p_value, 0.0, 1.0),
        information=information,
        promote=np.asarray(promote, dtype=np.bool_),
        reject=np.asarray(reject, dtype=np.bool_),
    )


# -- samples needed ---------------------------------------------------------------------


def planned_maximum(champion: Arm, challenger: Arm, settings: Settings) -> float:
    """Samples on the smaller arm at which the sequential test reaches its
    planned maximum, at today's pooled rate and traffic split."""
    check_look(champion, challenger, settings)
    total = champion.samples + challenger.samples
    smaller, larger = sorted((champion.samples, challenger.samples))
    pooled = (champion.successes + challenger.successes + 1.0) / (total + 2.0)
    # V = pq (1/n_a + 1/n_b) reaches delta^2 / T at this many on the smaller arm
    information = design(settings.alpha).maximum / settings.min_improvement**2
    return float(pooled * (1 - pooled) * information * (1.0 + smaller / larger))


def _further(champion: Arm, challenger: Arm, settings: Settings, end: float, posterior: bool) -> Floats:
    """Further smaller-arm samples to a decision on simulated futures: rates at
    today's estimate (``posterior`` False) or drawn from their Beta posteriors."""
    rng = np.random.default_rng(FORECAST_SEED)
    total = champion.samples + challenger.samples
    share_a, share_b = champion.samples / total, challenger.samples / total

    def rates(arm: Arm) -> Floats:
        if not posterior:
            return np.full((FORECAST_PATHS, 1), (arm.successes + 1.0) / (arm.samples + 2.0))
        return rng.beta(arm.successes + 1.0, arm.samples - arm.successes + 1.0, size=(FORECAST_PATHS, 1))

    rate_a, rate_b = rates(champion), rates(challenger)
    totals = np.linspace(total, end, FORECAST_LOOKS + 1)
    na = champion.samples + np.round((totals[1:] - total) * share_a)
    nb = challenger.samples + np.round((totals[1:] - total) * share_b)
    steps_a = np.diff(np.concatenate([[champion.samples], na])).astype(np.int64)
    steps_b = np.diff(np.concatenate([[challenger.samples], nb])).astype(np.int64)
    sa = champion.successes + rng.binomial(steps_a, rate_a).cumsum(axis=1)
    sb = challenger.successes + rng.binomial(steps_b, rate_b).cumsum(axis=1)
    looked = evaluate(sa, na, sb, nb, settings)
    decided = (np.minimum(na, nb) >= settings.min_samples_per_arm) & (looked.promote | looked.reject)
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), FORECAST_LOOKS - 1)
    return np.asarray(np.minimum(na, nb)[first] - min(champion.samples, challenger.samples), dtype=np.float64)


def forecast(champion: Arm, challenger: Arm, settings: Settings) -> tuple[int, int] | None:
    """(median, 90th percentile) of the further samples on the smaller arm
    until the first look that decides, by predictive simulation: the median
    with both rates at today's estimate, the 90th percentile with them drawn
    from their posteriors (which also carries the uncertainty about the
    rates); None when it lies beyond any reasonable horizon. ``fixed``
    decides once, at its horizon."""
    check_look(champion, challenger, settings)
    smaller = min(champion.samples, challenger.samples)
    total = champion.samples + challenger.samples
    if settings.method == "fixed":
        rate = (champion.successes + challenger.successes + 1.0) / (total + 2.0)
        rate = min(max(rate, 1e-6), 1.0 - 1e-6 - settings.min_improvement)
        horizon = fixed_horizon(rate, settings.min_improvement, settings.alpha) if rate > 0 else 0
        needed = max(0, math.ceil(max(horizon, settings.min_samples_per_arm) - smaller))
        return needed, needed
    share_small = smaller / total
    if share_small < 1.0 / FORECAST_LIMIT:
        return None
    gate = settings.min_samples_per_arm / share_small
    end = max(planned_maximum(champion, challenger, settings) / share_small, gate) * 1.6
    if end > FORECAST_LIMIT:
        return None
    if end <= total:
        return 0, 0
    median = float(np.median(_further(champion, challenger, settings, end, posterior=False)))
    upper = float(np.quantile(_further(champion, challenger, settings, end, posterior=True), 0.9))
    return math.ceil(median), math.ceil(max(upper, median))


# -- one look ---------------------------------------------------------------------------


def decide(
    champion: Arm,
    challenger: Arm,
    settings: Settings,
    previous_p_value: float = 1.0,
    *,
    with_forecast: bool = True,
) -> Verdict:
    """The decision of one look at both arms' cumulative counts.

    ``previous_p_value`` is the sequential p-value of the previous look (the
    always-valid p-value is a running minimum; anything that is not a
    probability counts as 1); ignored by ``fixed``. ``with_forecast=False``
    skips the samples-needed simulation (simulations of many looks). Raises
    InvalidMetrics or InvalidSetting, never decides on invalid input.
    """
    check_settings(settings)
    check_arm("champion", champion)
    check_arm("challenger", challenger)
    alpha, delta, rule = settings.alpha, settings.min_improvement, settings.promote_when
    smaller = min(champion.samples, challenger.samples)
    if smaller <= 0:
        return Verdict("Continue", "NoSamples", "an arm has no samples yet", math.nan, -1.0, 1.0, 1.0, None)
    if not (isinstance(previous_p_value, int | float) and 0.0 <= previous_p_value <= 1.0):
        previous_p_value = 1.0
    looked = evaluate(champion.successes, champion.samples, challenger.successes, challenger.samples, settings)
    lift, lower, upper = float(looked.lift), float(looked.lower), float(looked.upper)
    p_value = float(looked.p_value)
    if settings.method == "sequential":
        p_value = min(p_value, previous_p_value)
    null, alternative = theta0(settings), theta0(settings) + delta
    predicted = forecast(champion, challenger, settings) if with_forecast else None
    maximum = None
    if settings.method == "sequential":
        maximum = math.ceil(min(planned_maximum(champion, challenger, settings), FORECAST_LIMIT))
    numbers = f"lift {lift:+.4f} [{lower:+.4f}, {upper:+.4f}], p={p_value:.4g}"
    arms = (
        f"champion {champion.successes:.0f}/{champion.samples:.0f}, "
        f"challenger {challenger.successes:.0f}/{challenger.samples:.0f}"
    )
    needed, needed_upper = predicted if predicted is not None else (None, None)

    def verdict(outcome: Outcome, reason: str, message: str) -> Verdict:
        if outcome != "Continue":
            return Verdict(outcome, reason, message, lift, lower, upper, p_value, 0, 0, maximum)
        return Verdict(outcome, reason, message, lift, lower, upper, p_value, needed, needed_upper, maximum)

    if smaller < settings.min_samples_per_arm:
        return verdict(
            "Continue",
            "NotEnoughSamples",
            f"{smaller:.0f} of {settings.min_samples_per_arm} samples on the smaller arm; {numbers} ({arms})",
        )
    if bool(looked.promote):
        observed = f" and the observed lift >= {delta}" if rule == "BetterAndObservedMinImprovement" else ""
        return verdict(
            "Promote",
            "ChallengerBetter",
            f"{numbers}: the lower bound clears {null:g} at alpha {alpha}{observed} "
            f"({settings.method}, {rule}; {arms})",
        )
    if upper < alternative:
        return verdict(
            "Reject",
            "ChallengerNotBetter",
            f"{numbers}: the upper bound {upper:+.4f} rules out a lift of {alternative:g} "
            f"({settings.method}, {rule}; {arms})",
        )
    if bool(looked.reject):
        return verdict(
            "Reject",
            "PlannedMaximumReached",
            f"{numbers}: the planned maximum ({maximum} samples on the smaller arm) is reached without showing "
            f"the challenger better than {null:g}; a lift of {alternative:g} would have been promoted with "
            f"probability {POWER} ({settings.method}, {rule}; {arms})",
        )
    return verdict("Continue", "Undecided", f"{numbers}; {arms}")


def first_decision(looks: Iterable[tuple[Arm, Arm]], settings: Settings) -> tuple[Verdict, int] | None:
    """Look after look at cumulative (champion, challenger) counts, as the
    operator does every analysis interval: the first verdict that is not
    Continue and its look number (from 1), or None when none decides."""
    p_value = 1.0
    for number, (champion, challenger) in enumerate(looks, start=1):
        verdict = decide(champion, challenger, settings, previous_p_value=p_value, with_forecast=False)
        p_value = verdict.p_value
        if verdict.outcome != "Continue":
            return verdict, number
    return None


# -- the paired test of a shadow stage ----------------------------------------------------
#
# In a shadow stage both versions answer the same labelled requests (the
# challenger's copies are mirrored and its answers discarded), so each label
# says whether each version was right on the same request. Only the discordant
# pairs carry information about which is better: b (champion right,
# challenger wrong) and c (champion wrong, challenger right). The lift is
# (c - b) / pairs; under "the challenger is not better" (c <= b in
# expectation) each discordant pair is c with probability q <= 1/2.
#
# ``fixed``: the exact one-sided McNemar test, P(Binomial(b + c, 1/2) >= c)
# (as scipy.stats.binomtest), valid when looked at once, at the planned pairs.
# ``sequential``: its always-valid counterpart, the mixture likelihood ratio
#
#     Lambda(b, c) = integral over q in (1/2, 1) of (2q)^c (2(1 - q))^b  2 dq
#
# (uniform prior on q above 1/2). For every q0 <= 1/2 and fixed q > 1/2 one
# more discordant pair multiplies (2q)^c (2(1-q))^b by a factor of mean
# 2 (q0 q + (1 - q0)(1 - q)) <= 1, so Lambda is a non-negative supermartingale
# under the null and, by Ville's inequality, P(ever Lambda >= 1 / alpha) <= alpha
# for any looks at all. p = min(1, 1 / Lambda), kept as a running minimum.
# Futility mirrors it (q below 1/2, level PAIRED_FUTILITY_ALPHA): a challenger
# that is clearly worse on the same requests is rejected early.

PAIRED_FUTILITY_ALPHA = 0.01  # the chance to reject, early, a challenger that is in truth no worse


@dataclass(frozen=True)
class Pairs:
    """Labelled requests both versions answered: all of them, and the discordant ones."""

    pairs: float  # labelled requests both versions answered
    champion_only: float  # b: the champion right, the challenger wrong
    challenger_only: float  # c: the champion wrong, the challenger right

    @property
    def lift(self) -> float:
        return (self.challenger_only - self.champion_only) / self.pairs if self.pairs > 0 else math.nan


@dataclass(frozen=True)
class PairedVerdict:
    outcome: Outcome
    reason: str
    message: str
    lift: float
    p_value: float  # always valid (sequential, running minimum) or exact McNemar (fixed)
    futility_p_value: float  # the same for "the challenger is not worse" (early rejection)


def check_pairs(pairs: Pairs) -> None:
    """Raise InvalidMetrics for counts that cannot be real."""
    values = (pairs.pairs, pairs.champion_only, pairs.challenger_only)
    if not all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in values):
        raise InvalidMetrics(f"paired counts must be finite and >= 0, got {pairs}")
    if pairs.champion_only + pairs.challenger_only > pairs.pairs * (1 + 1e-9):
        raise InvalidMetrics(
            f"{pairs.champion_only:g} + {pairs.challenger_only:g} discordant pairs are more than the "
            f"{pairs.pairs:g} labelled pairs"
        )


def log_mixture_ratio(champion_only: float, challenger_only: float) -> float:
    """log Lambda(b, c) for "the challenger is better" (the module's mixture over q > 1/2):
    log 2 + n log 2 + log B(c + 1, b + 1) + log P(Beta(c + 1, b + 1) > 1/2)."""
    b, c = float(champion_only), float(challenger_only)
    tail = float(special.betaincc(c + 1.0, b + 1.0, 0.5))
    if tail > 1e-280:
        return math.log(2.0) * (b + c + 1.0) + float(special.betaln(c + 1.0, b + 1.0)) + math.log(tail)
    # The tail underflows where c is far below b; then it is P(Binomial(N, 1/2) <= c)
    # with N = b + c + 1, summed in log space (the 2^N cancels).
    # Lambda <= 1 whenever c <= b (each (2q)^c (2(1-q))^b <= 1 above 1/2), so
    # beyond a million terms the exact value changes nothing: no evidence.
    if c > 1e6:
        return -math.inf
    total = b + c + 1.0
    k = np.arange(0.0, math.floor(c) + 1.0)
    terms = special.gammaln(total + 1.0) - special.gammaln(k + 1.0) - special.gammaln(total - k + 1.0)
    return float(special.betaln(c + 1.0, b + 1.0) + special.logsumexp(terms))


def _mixture_p(champion_only: float, challenger_only: float) -> float:
    return float(min(1.0, math.exp(-max(log_mixture_ratio(champion_only, challenger_only), 0.0))))


def mcnemar_p_value(champion_only: float, challenger_only: float) -> float:
    """The exact one-sided McNemar p-value: P(Binomial(b + c, 1/2) >= c) (1 without discordant pairs).
    Fractional counts (Prometheus extrapolation) are rounded to the nearest whole pair."""
    b, c = float(round(champion_only)), float(round(challenger_only))
    if b + c <= 0:
        return 1.0
    # binomtest(c, b + c, 1/2, alternative="greater").pvalue, through binom.sf,
    # which also takes counts beyond what binomtest's integers hold
    return float(min(1.0, binom.sf(c - 1, b + c, 0.5)))


def check_paired_settings(settings: Settings, planned_pairs: int | None) -> None:
    """Raise InvalidSetting for a setting the paired test cannot honour."""
    check_settings(settings)
    if settings.promote_when == "BetterByMinImprovement":
        raise InvalidSetting("a shadow stage's paired test cannot use promoteWhen BetterByMinImprovement")
    if planned_pairs is not None and not (isinstance(planned_pairs, int) and planned_pairs >= 1):
        raise InvalidSetting(f"planned pairs must be a whole number >= 1, got {planned_pairs!r}")
    if settings.method == "fixed" and planned_pairs is None:
        raise InvalidSetting("the fixed paired test needs the number of pairs to collect (traffic.shadow.pairs)")


def decide_paired(
    pairs: Pairs,
    settings: Settings,
    *,
    planned_pairs: int | None,
    previous_p_value: float = 1.0,
) -> PairedVerdict:
    """The decision of one look at a shadow stage's cumulative paired counts.

    ``sequential`` decides at any look: Promote once the always-valid p-value
    is below alpha (the gate of ``min_samples_per_arm`` labelled pairs
    passed), Reject once the challenger is shown worse. ``fixed`` decides
    once ``planned_pairs`` are in, with the exact McNemar test. The rule
    ``BetterByMinImprovement`` has no paired form here (the discordant pairs
    alone cannot test a lift above delta): InvalidSetting; with
    ``BetterAndObservedMinImprovement`` the observed lift must also reach
    ``min_improvement``. Raises InvalidMetrics or InvalidSetting, never
    decides on invalid input."""
    check_paired_settings(settings, planned_pairs)
    check_pairs(pairs)
    if not (isinstance(previous_p_value, int | float) and 0.0 <= previous_p_value <= 1.0):
        previous_p_value = 1.0
    b, c, n = pairs.champion_only, pairs.challenger_only, pairs.pairs
    lift = pairs.lift
    if settings.method == "fixed":
        p_value, futility = mcnemar_p_value(b, c), mcnemar_p_value(c, b)
    else:
        p_value, futility = min(_mixture_p(b, c), previous_p_value), _mixture_p(c, b)
    numbers = (
        f"paired lift {lift:+.4f} over {n:.0f} labelled pairs (champion only right {b:.0f}, challenger only "
        f"right {c:.0f}), p={p_value:.4g}"
        if n > 0
        else "no labelled pairs yet"
    )

    def verdict(outcome: Outcome, reason: str, message: str) -> PairedVerdict:
        return PairedVerdict(outcome, reason, message, lift, p_value, futility)

    if n <= 0:
        return verdict("Continue", "NoSamples", numbers)
    if n < settings.min_samples_per_arm:
        return verdict("Continue", "NotEnoughSamples", f"{n:.0f} of {settings.min_samples_per_arm} pairs; {numbers}")
    at_horizon = planned_pairs is not None and n >= planned_pairs
    if settings.method == "fixed" and not at_horizon:
        return verdict("Continue", "Undecided", f"{n:.0f} of {planned_pairs} planned pairs; {numbers}")
    observed = settings.promote_when != "BetterAndObservedMinImprovement" or lift >= settings.min_improvement
    method = "exact McNemar" if settings.method == "fixed" else "sequential McNemar"
    if p_value < settings.alpha and observed:
        return verdict("Promote", "ChallengerBetterOnSameRequests", f"{numbers} < alpha {settings.alpha} ({method})")
    if settings.method == "sequential" and futility < PAIRED_FUTILITY_ALPHA:
        return verdict(
            "Reject",
            "ChallengerWorseOnSameRequests",
            f"{numbers}: the challenger is wrong where the champion is right significantly more often "
            f"(p={futility:.4g} < {PAIRED_FUTILITY_ALPHA}, {method})",
        )
    if at_horizon:
        return verdict(
            "Reject",
            "PlannedPairsReached",
            f"{numbers}: {planned_pairs} planned pairs collected without showing the challenger better ({method})",
        )
    return verdict("Continue", "Undecided", numbers)
