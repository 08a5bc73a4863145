"""The experiment statistics against references: statsmodels' z-test, the
mSPRT's closed form against numerical integration, and a seed-fixed
simulation of continuous monitoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from relearn.core import stats
from relearn.core.stats import Arm, Settings
from scipy import integrate
from scipy.stats import norm
from statsmodels.stats.proportion import proportions_ztest


@pytest.mark.parametrize(
    ("champion", "challenger"),
    [((850, 1000), (900, 1000)), ((850, 1000), (830, 1000)), ((41, 50), (1990, 2200)), ((5, 7), (6, 9))],
)
def test_z_test_matches_statsmodels_one_sided(champion: tuple[int, int], challenger: tuple[int, int]) -> None:
    z, p = stats.z_test(Arm(*champion), Arm(*challenger))
    ref_z, ref_p = proportions_ztest(
        count=[challenger[0], champion[0]], nobs=[challenger[1], champion[1]], alternative="larger"
    )
    assert z == pytest.approx(ref_z, abs=1e-9)
    assert p == pytest.approx(ref_p, abs=1e-9)


def test_fixed_horizon_is_the_textbook_sample_size() -> None:
    # +2 points over 0.85, alpha 0.05 one-sided, power 0.8
    assert stats.fixed_horizon(0.85, 0.02) == 3721


@pytest.mark.parametrize(("lift", "variance", "tau2"), [(0.05, 2e-4, 5e-4), (0.0, 1e-3, 1e-4), (-0.03, 5e-5, 2e-3)])
def test_mixture_likelihood_ratio_matches_its_integral(lift: float, variance: float, tau2: float) -> None:
    """Lambda = integral of N(lift; theta, V) / N(lift; 0, V) over theta ~ N(0, tau^2)."""
    sd = math.sqrt(variance)

    def integrand(theta: float) -> float:
        return float(norm.pdf(lift, theta, sd) / norm.pdf(lift, 0, sd) * norm.pdf(theta, 0, math.sqrt(tau2)))

    reference, _ = integrate.quad(integrand, -1, 1, points=[0.0, lift], limit=200)
    assert stats.likelihood_ratio(lift, variance, tau2) == pytest.approx(reference, rel=1e-7)


@pytest.mark.parametrize(("lift", "variance", "tau2"), [(0.05, 2e-4, 5e-4), (-0.01, 1e-3, 1e-4), (0.02, 5e-5, 2e-3)])
def test_one_sided_ratio_is_the_half_normal_mixture(lift: float, variance: float, tau2: float) -> None:
    """Lambda+ = integral over theta > 0 of the likelihood ratio, theta ~ 2 N(0, tau^2) restricted to theta > 0."""
    sd = math.sqrt(variance)

    def integrand(theta: float) -> float:
        return float(2 * norm.pdf(lift, theta, sd) / norm.pdf(lift, 0, sd) * norm.pdf(theta, 0, math.sqrt(tau2)))

    reference, _ = integrate.quad(integrand, 0, 1, points=[max(lift, 1e-9)], limit=200)
    assert stats.one_sided_ratio(lift, variance, tau2) == pytest.approx(reference, rel=1e-7)


def test_bounds_are_where_the_one_sided_ratio_reaches_one_over_alpha() -> None:
    variance, tau2, alpha, lift = 3e-4, 5e-4, 0.05, 0.04
    distance = stats.one_sided_distance(variance, tau2, alpha)
    assert stats.one_sided_ratio(lift, variance, tau2, theta0=lift - distance) == pytest.approx(1 / alpha, rel=1e-9)
    # one-sided bounds are tighter than the two-sided sequence, and the closed form is close
    assert distance < stats.half_width(variance, tau2, alpha)
    assert stats._approximate_distance(variance, tau2, alpha) == pytest.approx(distance, rel=0.02)


def test_worked_example_sequential() -> None:
    """850/1000 vs 900/1000: the numbers a user reads in status, by hand."""
    champion, challenger = Arm(850, 1000), Arm(900, 1000)
    settings = Settings(min_samples_per_arm=1000)
    verdict = stats.decide(champion, challenger, settings)
    variance = champion.variance / 1000 + challenger.variance / 1000
    tau2 = stats.mixing_variance(0.05, 0.02)
    two_sided = math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * 0.05**2 / (2 * variance * (variance + tau2)))
    by_hand = 2 * two_sided * norm.cdf(math.sqrt(tau2) * 0.05 / math.sqrt(variance * (variance + tau2)))
    assert verdict.p_value == pytest.approx(1 / by_hand, rel=1e-9)
    assert verdict.outcome == "Promote"
    assert verdict.ci_lower > 0
    assert verdict.ci_upper - verdict.lift == pytest.approx(verdict.lift - verdict.ci_lower)
    # the always-valid p-value never rises again
    assert stats.decide(champion, Arm(860, 1000), settings, previous_p_value=verdict.p_value).p_value == verdict.p_value


def test_mixing_variance_comes_from_the_expected_sample_size() -> None:
    """tau^2 puts the bounds closest to the lift at the fixed-horizon variance."""
    alpha, delta = 0.05, 0.02
    tau2 = stats.mixing_variance(alpha, delta)
    expected = delta**2 / (norm.ppf(1 - alpha) + norm.ppf(0.8)) ** 2
    at_best = stats.one_sided_distance(expected, tau2, alpha)
    assert at_best < stats.one_sided_distance(expected, tau2 * 3, alpha)
    assert at_best < stats.one_sided_distance(expected, tau2 / 3, alpha)


def test_decisions_name_their_numbers() -> None:
    worse = stats.decide(Arm(900, 2000 // 2), Arm(800, 1000), Settings())
    assert worse.outcome == "Reject"
    assert worse.ci_upper < 0.02
    assert "rules out the minimum improvement 0.02" in worse.message
    early = stats.decide(Arm(85, 100), Arm(95, 100), Settings())
    assert early.outcome == "Continue"
    assert early.reason == "NotEnoughSamples"
    assert early.samples_needed is not None
    assert early.samples_needed >= 900
    tied = stats.decide(Arm(8500, 10000), Arm(8600, 10000), Settings())
    assert tied.outcome == "Continue"
    assert tied.samples_needed is not None
    assert tied.samples_needed > 0
    assert stats.decide(Arm(0, 0), Arm(0, 0), Settings()).reason == "NoSamples"


def simulate(rate_a: float, rate_b: float, experiments: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative successes per arm at a look every 100 samples up to 10 000."""
    rng = np.random.default_rng(seed)
    a = rng.binomial(100, rate_a, size=(experiments, 100)).cumsum(axis=1)
    b = rng.binomial(100, rate_b, size=(experiments, 100)).cumsum(axis=1)
    return a, b


def false_promotions(a: np.ndarray, b: np.ndarray, settings: Settings, naive: bool) -> float:
    """Share of simulated experiments that promote at some look."""
    if naive:  # a z-test at every look, promoting at the first p < alpha
        n = 100 * np.arange(1, a.shape[1] + 1)
        return float(
            np.mean(
                [
                    any(
                        stats.z_test(Arm(sa, k), Arm(sb, k))[1] < settings.alpha
                        for sa, sb, k in zip(ra, rb, n, strict=True)
                    )
                    for ra, rb in zip(a, b, strict=True)
                ]
            )
        )
    promoted = 0
    for row_a, row_b in zip(a, b, strict=True):
        looks = (
            (Arm(sa, 100 * i), Arm(sb, 100 * i)) for i, (sa, sb) in enumerate(zip(row_a, row_b, strict=True), start=1)
        )
        decided = stats.first_decision(looks, settings)
        promoted += decided is not None and decided[0].outcome == "Promote"
    return promoted / len(a)


def test_sequential_test_keeps_its_false_promotion_rate_under_continuous_monitoring() -> None:
    a, b = simulate(0.85, 0.85, 1000, seed=20261126)
    sequential = false_promotions(a, b, Settings(min_samples_per_arm=100, min_improvement=0.005), naive=False)
    naive = false_promotions(a, b, Settings(alpha=0.05), naive=True)
    print(f"false promotion rate, 100 looks: sequential {sequential:.1%}, naive z-test {naive:.1%}")
    assert sequential <= 0.05
    assert naive > 0.10
