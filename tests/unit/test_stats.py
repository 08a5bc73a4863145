"""The experiment statistics against references: statsmodels' z-test, the
Brownian crossing probability against its classical special cases, the
boundaries by hand, and seed-fixed simulations of continuous monitoring at
the settings the audit found weak (small arms near 1, 90/10 traffic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from relearn.core import stats
from relearn.core.stats import Arm, Settings
from relearn.errors import InvalidMetrics, InvalidSetting
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
    fixed = stats.decide(Arm(*champion), Arm(*challenger), Settings(method="fixed", min_samples_per_arm=1))
    assert fixed.p_value == pytest.approx(ref_p, abs=1e-9)


def test_fixed_horizon_is_the_textbook_sample_size() -> None:
    # +2 points over 0.85, alpha 0.05 one-sided, power 0.8
    assert stats.fixed_horizon(0.85, 0.02) == 3721


@pytest.mark.parametrize(("a", "maximum"), [(1.0, 1.0), (2.5, 9.0), (0.3, 40.0)])
def test_crossing_probability_of_a_flat_line_is_the_reflection_principle(a: float, maximum: float) -> None:
    assert math.exp(float(stats.log_crossing(a, 0.0, maximum))) == pytest.approx(2 * norm.sf(a / math.sqrt(maximum)))


@pytest.mark.parametrize(("a", "slope"), [(1.0, 0.5), (3.0, 0.2), (0.5, 2.0)])
def test_crossing_probability_without_a_maximum_is_doobs(a: float, slope: float) -> None:
    assert math.exp(float(stats.log_crossing(a, slope, 1e9))) == pytest.approx(math.exp(-2 * a * slope), rel=1e-6)


@pytest.mark.parametrize("alpha", [1e-9, 0.001, 0.01, 0.05, 0.2, 0.45])
def test_design_has_level_alpha_and_the_power_it_promises(alpha: float) -> None:
    d = stats.design(alpha)
    line = alpha * (1 - stats.GROSS_SHARE)  # the wide confidence sequence takes the rest of alpha
    assert math.exp(float(stats.log_crossing(d.a, d.c, d.maximum))) == pytest.approx(line, rel=1e-6)
    power = math.exp(float(stats.log_crossing(d.a, d.c - 1.0, d.maximum)))
    futility = math.exp(float(stats.log_crossing(d.futility_a, d.futility_c, d.maximum)))
    assert futility == pytest.approx(stats.FUTILITY_ALPHA, rel=1e-6)
    if alpha <= 0.1:  # the power a user is promised at theta1, after futility took its share
        assert power - stats.FUTILITY_ALPHA - stats.GROSS_ALPHA >= stats.POWER - 1e-9


def test_worked_example_by_hand() -> None:
    """850/1000 vs 900/1000: the numbers a user reads in status."""
    champion, challenger = Arm(850, 1000), Arm(900, 1000)
    verdict = stats.decide(champion, challenger, Settings())
    d = stats.design(0.05)
    pooled = (850 + 900 + 1) / 2002
    v0 = pooled * (1 - pooled) * (2 / 1000)
    tau2, share = stats.GROSS_TAU2, 0.05 * stats.GROSS_SHARE
    wide = math.sqrt(v0 * (v0 + tau2) / tau2 * (2 * math.log(1 / share) + math.log(1 + tau2 / v0)))
    assert verdict.ci_lower == pytest.approx(max(0.05 - (d.c * 0.02 + d.a * v0 / 0.02), 0.05 - wide), abs=1e-12)
    through = (0.05 - d.c * 0.02) * 0.02 / v0
    line_p = math.exp(float(stats.log_crossing(through, d.c, d.maximum))) / (1 - stats.GROSS_SHARE)
    mixture = math.sqrt(v0 / (v0 + tau2)) * math.exp(tau2 * 0.05**2 / (2 * v0 * (v0 + tau2)))
    assert verdict.p_value == pytest.approx(min(line_p, 1 / mixture / stats.GROSS_SHARE))
    assert verdict.outcome == "Promote"
    assert verdict.reason == "ChallengerBetter"
    assert verdict.p_value < 0.05
    # the always-valid p-value never rises again
    later = stats.decide(champion, Arm(860, 1000), Settings(), previous_p_value=verdict.p_value)
    assert later.p_value == verdict.p_value


def test_promotes_a_far_better_challenger_at_first_look_of_a_small_gate() -> None:
    verdict = stats.decide(Arm(50, 100), Arm(90, 100), Settings(min_samples_per_arm=100))
    assert verdict.outcome == "Promote"


def test_rejects_far_worse_challenger_at_first_look() -> None:
    """The audit's crash: champion 0.85, a broken challenger far below it."""
    for challenger in (Arm(0, 1000), Arm(10, 1000), Arm(300, 1000)):
        verdict = stats.decide(Arm(850, 1000), challenger, Settings())
        assert verdict.outcome == "Reject"
        assert verdict.reason == "ChallengerNotBetter"
        assert verdict.ci_upper < 0.02
    small = stats.decide(Arm(43, 50), Arm(2, 50), Settings(min_samples_per_arm=50))
    assert small.outcome == "Reject"


def test_decisions_name_their_numbers() -> None:
    worse = stats.decide(Arm(900, 1000), Arm(800, 1000), Settings())
    assert worse.outcome == "Reject"
    assert "rules out a lift of 0.02" in worse.message
    early = stats.decide(Arm(85, 100), Arm(95, 100), Settings())
    assert early.outcome == "Continue"
    assert early.reason == "NotEnoughSamples"
    assert early.samples_needed is not None
    assert early.samples_needed >= 900
    tied = stats.decide(Arm(850, 1000), Arm(860, 1000), Settings())
    assert tied.outcome == "Continue"
    assert tied.samples_needed is not None
    assert tied.samples_needed_upper is not None
    assert 0 < tied.samples_needed <= tied.samples_needed_upper
    assert tied.planned_maximum is not None
    assert tied.samples_needed_upper <= 1.7 * tied.planned_maximum
    assert stats.decide(Arm(0, 0), Arm(0, 0), Settings()).reason == "NoSamples"


def test_sequential_test_ends_at_its_planned_maximum() -> None:
    settings = Settings()
    slightly = stats.decide(Arm(8500, 10000), Arm(8600, 10000), settings)
    assert slightly.outcome == "Reject"
    assert slightly.reason == "PlannedMaximumReached"
    assert slightly.planned_maximum is not None
    assert slightly.planned_maximum < 10000
    assert stats.fixed_horizon(0.85, 0.02) * 1.4 < slightly.planned_maximum < stats.fixed_horizon(0.85, 0.02) * 1.7


def test_promotion_rules_test_what_they_are_named() -> None:
    counts = (Arm(8500, 10000), Arm(8800, 10000))  # +3 points, well measured
    better = stats.decide(*counts, Settings(min_improvement=0.01, promote_when="Better"))
    by_margin = stats.decide(*counts, Settings(min_improvement=0.025, promote_when="BetterByMinImprovement"))
    observed = stats.decide(*counts, Settings(min_improvement=0.035, promote_when="BetterAndObservedMinImprovement"))
    assert better.outcome == "Promote"
    assert better.ci_lower > 0
    assert by_margin.outcome != "Promote"  # a lift of 3 points does not show "at least 2.5" yet
    assert by_margin.ci_lower < 0.025
    assert observed.outcome != "Promote"  # significant, but the observed lift is below 3.5 points


@pytest.mark.parametrize(
    ("champion", "challenger", "error"),
    [
        (Arm(-1, 100), Arm(50, 100), InvalidMetrics),
        (Arm(50, 100), Arm(150, 100), InvalidMetrics),
        (Arm(math.nan, 100), Arm(50, 100), InvalidMetrics),
        (Arm(50, math.inf), Arm(50, 100), InvalidMetrics),
    ],
)
def test_impossible_counts_raise_invalid_metrics(champion: Arm, challenger: Arm, error: type[Exception]) -> None:
    with pytest.raises(error):
        stats.decide(champion, challenger, Settings(min_samples_per_arm=1))


@pytest.mark.parametrize("alpha", [0.5, 0.7, 0.999, 0.0, -1.0, math.nan])
def test_alpha_the_test_cannot_honour_raises_invalid_setting(alpha: float) -> None:
    with pytest.raises(InvalidSetting):
        stats.decide(Arm(850, 1000), Arm(900, 1000), Settings(alpha=alpha))


def false_promotions(base: float, share_b: float, minimum: int, runs: int, seed: int) -> tuple[float, float]:
    """(Relearn, naive z-test) share of equal-rate experiments promoted at
    some look, looking every 50 samples on the smaller arm."""
    settings = Settings(min_samples_per_arm=minimum)
    rng = np.random.default_rng(seed)
    small = np.arange(50.0, 10_000.0, 50.0)
    nb = small  # the challenger is the smaller arm
    na = np.round(small * (1 - share_b) / share_b)
    sa = rng.binomial(np.diff(np.concatenate([[0], na])).astype(int), base, size=(runs, len(na))).cumsum(axis=1)
    sb = rng.binomial(np.diff(np.concatenate([[0], nb])).astype(int), base, size=(runs, len(nb))).cumsum(axis=1)
    na2, nb2 = np.broadcast_to(na, sa.shape), np.broadcast_to(nb, sb.shape)
    looked = stats.evaluate(sa, na2, sb, nb2, settings)
    gated = np.minimum(na2, nb2) >= minimum
    decided = gated & (looked.promote | looked.reject)
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), decided.shape[1] - 1)
    ours = float(np.mean(looked.promote[np.arange(runs), first] & decided.any(axis=1)))
    pooled = (sa + sb) / (na2 + nb2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / na2 + 1 / nb2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (sb / nb2 - sa / na2) / np.where(se > 0, se, 1), 0)
    naive = float(np.mean((gated & (norm.sf(z) < settings.alpha)).any(axis=1)))
    return ours, naive


@pytest.mark.parametrize(("base", "share_b", "minimum"), [(0.85, 0.5, 100), (0.95, 0.1, 50), (0.99, 0.1, 50)])
def test_false_promotions_stay_below_alpha_under_continuous_monitoring(
    base: float, share_b: float, minimum: int
) -> None:
    ours, naive = false_promotions(base, share_b, minimum, runs=1000, seed=20261201)
    print(f"base {base}, challenger share {share_b}, minSamplesPerArm {minimum}: relearn {ours:.1%}, naive {naive:.1%}")
    assert ours <= 0.05
    assert naive > ours
