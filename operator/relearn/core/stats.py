"""The statistics of an A/B experiment on a success rate: pure functions, no
I/O, so every number in an ABExperiment's status can be reproduced by hand.

Two methods, both comparing the challenger's success rate with the
champion's (``lift`` = challenger rate - champion rate):

- ``fixed``: the one-sided two-proportion z-test (pooled variance under H0),
  as in the original specification: promote when p < alpha, every arm has at
  least ``minSamplesPerArm`` samples and the observed lift is at least
  ``minImprovement``. Valid when looked at once; looked at every interval
  its false-promotion rate grows with the number of looks (see
  ``bench/ab_stats.py``).
- ``sequential`` (the default): the mixture sequential probability ratio
  test (mSPRT; Robbins 1970, Johari et al. 2017 "Peeking at A/B tests") on
  the normal approximation of the lift, one-sided. Its p-value and bounds
  are *always valid*: the chance that they ever wrongly exclude the truth,
  however often and for however long one looks, is at most alpha.

  With V the variance of the estimated lift and d = lift - theta0, the
  likelihood ratio of "the lift is theta" against "it is theta0", mixed over
  theta0 + |N(0, tau^2)| (a half-normal: only lifts above theta0), is

      Lambda+(d) = 2 Lambda(d) Phi(tau d / sqrt(V (V + tau^2)))
      Lambda(d)  = sqrt(V / (V + tau^2)) exp(tau^2 d^2 / (2 V (V + tau^2)))

  (Lambda is the two-sided mixture over N(0, tau^2); ``tests/unit`` checks
  both against numerical integration). Under "the lift is at most theta0"
  it is a nonnegative supermartingale, so by Ville's inequality it exceeds
  1/alpha with probability at most alpha, ever. Hence:

  - the always-valid p-value that the challenger is better: the running
    minimum of 1/Lambda+(lift);
  - the lower bound of the lift: lift - h, with Lambda+(h) = 1/alpha; the
    challenger is significantly better when it is above 0 at the current look;
  - the upper bound: lift + h, the mirror image (lifts below theta0), used
    for futility; each bound holds with probability 1 - alpha.

  tau^2 is fixed before the experiment from its *expected sample size*: the
  fixed-horizon sample size that detects ``minImprovement`` with power 0.8
  makes V* = minImprovement^2 / (z_alpha + z_0.8)^2, and tau^2 = r* V* with
  r* minimising the bound's distance h at V* (so the test is sharpest where
  a decision is expected).

Both methods stop for *futility* when the upper confidence bound of the lift
is below ``minImprovement``: the data rule out an improvement worth
promoting, so the challenger is rejected rather than kept on live traffic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from scipy import optimize
from scipy.stats import norm

Method = Literal["sequential", "fixed"]
Outcome = Literal["Continue", "Promote", "Reject"]
POWER = 0.8
MAX_SCALE = 1e6  # beyond a million times today's samples a decision is "never" at this effect


@dataclass(frozen=True)
class Arm:
    successes: float
    samples: float

    @property
    def rate(self) -> float:
        return self.successes / self.samples if self.samples > 0 else math.nan

    @property
    def variance(self) -> float:
        """Bernoulli variance, smoothed so an arm with all or no successes is not certain."""
        p = (self.successes + 0.5) / (self.samples + 1.0)
        return p * (1.0 - p)


@dataclass(frozen=True)
class Settings:
    method: Method = "sequential"
    alpha: float = 0.05
    min_samples_per_arm: int = 1000
    min_improvement: float = 0.02


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    message: str
    lift: float
    ci_lower: float
    ci_upper: float
    p_value: float
    samples_needed: int | None  # more samples on the smaller arm to decide at the current effect; None: never


def _sf(z: float) -> float:
    """Standard normal survival function (math.erfc: fast enough for simulations)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def z_test(champion: Arm, challenger: Arm) -> tuple[float, float]:
    """(z, one-sided p) that the challenger's rate is larger; pooled variance
    under H0, as ``statsmodels.stats.proportion.proportions_ztest``."""
    pooled = (champion.successes + challenger.successes) / (champion.samples + challenger.samples)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / champion.samples + 1.0 / challenger.samples))
    if se == 0.0:
        return 0.0, 1.0
    z = (challenger.rate - champion.rate) / se
    return z, _sf(z)


def fixed_horizon(base_rate: float, lift: float, alpha: float = 0.05, power: float = POWER) -> int:
    """Samples per arm a one-sided z-test needs to detect ``lift`` over ``base_rate``."""
    p1, p2 = base_rate, base_rate + lift
    mean = (p1 + p2) / 2
    z_a, z_b = float(norm.ppf(1 - alpha)), float(norm.ppf(power))
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root**2 / lift**2)


def _width_factor(r: float, alpha: float) -> float:
    """Squared distance of the one-sided bound in units of V, for tau^2 = r V
    (the large-distance form: Phi(.) = 1, exact within 2% at the boundary)."""
    return (1.0 + 1.0 / r) * (2.0 * math.log(1.0 / (2.0 * alpha)) + math.log1p(r))


@functools.lru_cache(maxsize=64)
def mixing_variance(alpha: float, min_improvement: float, power: float = POWER) -> float:
    """tau^2 from the expected sample size (see the module docstring)."""
    expected = min_improvement**2 / (norm.ppf(1 - alpha) + norm.ppf(power)) ** 2
    best = optimize.minimize_scalar(
        lambda log_r: _width_factor(math.exp(log_r), alpha), bounds=(-10, 10), method="bounded"
    )
    return float(math.exp(best.x) * expected)


def likelihood_ratio(lift: float, variance: float, tau2: float, theta0: float = 0.0) -> float:
    """The two-sided mixture likelihood ratio Lambda (closed form)."""
    exponent = tau2 * (lift - theta0) ** 2 / (2.0 * variance * (variance + tau2))
    return math.sqrt(variance / (variance + tau2)) * math.exp(min(exponent, 700.0))


def one_sided_ratio(lift: float, variance: float, tau2: float, theta0: float = 0.0) -> float:
    """Lambda+: the mixture over lifts above ``theta0`` only (closed form)."""
    z = math.sqrt(tau2) * (lift - theta0) / math.sqrt(variance * (variance + tau2))
    return 2.0 * likelihood_ratio(lift, variance, tau2, theta0) * 0.5 * math.erfc(-z / math.sqrt(2.0))


def half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the two-sided (1 - alpha) confidence sequence (Lambda < 1/alpha)."""
    return math.sqrt(
        variance * (variance + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance))
    )


def one_sided_distance(variance: float, tau2: float, alpha: float) -> float:
    """h with Lambda+(h) = 1/alpha: how far below (or above) the lift its
    always-valid one-sided bound lies. Lambda+ rises with h from below 1 at 0,
    and reaches 1/alpha by the two-sided half-width (where Lambda = 1/alpha
    and Phi >= 1/2), so bisection between them finds it."""
    low, high = 0.0, half_width(variance, tau2, alpha)
    target = 1.0 / alpha
    for _ in range(48):
        middle = (low + high) / 2.0
        if one_sided_ratio(middle, variance, tau2) < target:
            low = middle
        else:
            high = middle
    return high


def _approximate_distance(variance: float, tau2: float, alpha: float) -> float:
    """One-sided distance in closed form (Phi taken as 1: at most 2% short);
    fast enough for the many evaluations a samples-needed estimate makes."""
    return half_width(variance, tau2, 2.0 * alpha)


def _scale_needed(variance: float, gap: float, width: Callable[[float], float]) -> float | None:
    """Smallest k >= 1 with width(variance / k) < gap (samples scaled by k), or None."""
    if gap <= 0:
        return None
    if width(variance) < gap:
        return 1.0
    if width(variance / MAX_SCALE) >= gap:
        return None
    low, high = 1.0, MAX_SCALE
    for _ in range(100):
        middle = math.sqrt(low * high)
        if width(variance / middle) < gap:
            high = middle
        else:
            low = middle
        if high / low < 1.001:
            break
    return high


def decide(
    champion: Arm,
    challenger: Arm,
    settings: Settings,
    previous_p_value: float = 1.0,
) -> Verdict:
    """The decision of one look at both arms' cumulative counts.

    ``previous_p_value`` is the sequential p-value of the previous look (the
    always-valid p-value is a running minimum); ignored by ``fixed``.
    """
    alpha, delta = settings.alpha, settings.min_improvement
    smaller = min(champion.samples, challenger.samples)
    if smaller <= 0:
        return Verdict("Continue", "NoSamples", "an arm has no samples yet", math.nan, -1.0, 1.0, 1.0, None)
    lift = challenger.rate - champion.rate
    variance = champion.variance / champion.samples + challenger.variance / challenger.samples
    if settings.method == "fixed":
        _, p_value = z_test(champion, challenger)
        z = float(norm.ppf(1 - alpha))
        half = z * math.sqrt(variance)
        lower, upper = lift - half, lift + half
        significant = p_value < alpha

        def width(v: float) -> float:
            return z * math.sqrt(v)

    else:
        tau2 = mixing_variance(alpha, delta)
        p_value = min(previous_p_value, 1.0, 1.0 / one_sided_ratio(lift, variance, tau2))
        half = one_sided_distance(variance, tau2, alpha)
        lower, upper = lift - half, lift + half
        # Promote on this look's evidence: the lower bound is above 0 now
        # (1/Lambda+(lift) < alpha), so the bound users read agrees with it.
        significant = lower > 0

        def width(v: float) -> float:
            return _approximate_distance(v, tau2, alpha)

    lower, upper = max(-1.0, lower), min(1.0, upper)  # a difference of rates lies in [-1, 1]
    # Samples to a decision at the current effect: to significance when the
    # lift is worth promoting, else to ruling the minimum improvement out.
    gap = lift if lift >= delta else delta - lift
    scale = _scale_needed(variance, gap, width)
    by_minimum = settings.min_samples_per_arm / smaller
    needed: int | None = None
    if scale is not None:
        needed = max(0, math.ceil(smaller * (max(scale, by_minimum) - 1.0)))
    numbers = f"lift {lift:+.4f} [{lower:+.4f}, {upper:+.4f}], p={p_value:.4g}"
    arms = (
        f"champion {champion.successes:.0f}/{champion.samples:.0f}, "
        f"challenger {challenger.successes:.0f}/{challenger.samples:.0f}"
    )

    def verdict(outcome: Outcome, reason: str, message: str) -> Verdict:
        return Verdict(outcome, reason, message, lift, lower, upper, p_value, needed)

    if smaller < settings.min_samples_per_arm:
        return verdict(
            "Continue",
            "NotEnoughSamples",
            f"{smaller:.0f} of {settings.min_samples_per_arm} samples on the smaller arm; {numbers} ({arms})",
        )
    if significant and lift >= delta:
        return verdict(
            "Promote",
            "ChallengerBetter",
            f"{numbers} < alpha {alpha} and lift >= {delta} ({settings.method}; {arms})",
        )
    if upper < delta:
        return verdict(
            "Reject",
            "ChallengerNotBetter",
            f"{numbers}: the upper bound {upper:+.4f} rules out the minimum improvement {delta} "
            f"({settings.method}; {arms})",
        )
    return verdict("Continue", "Undecided", f"{numbers}; {arms}")


def first_decision(looks: Iterable[tuple[Arm, Arm]], settings: Settings) -> tuple[Verdict, int] | None:
    """Look after look at cumulative (champion, challenger) counts, as the
    operator does every analysis interval: the first verdict that is not
    Continue and its look number (from 1), or None when none decides."""
    p_value = 1.0
    for number, (champion, challenger) in enumerate(looks, start=1):
        verdict = decide(champion, challenger, settings, previous_p_value=p_value)
        p_value = verdict.p_value
        if verdict.outcome != "Continue":
            return verdict, number
    return None
