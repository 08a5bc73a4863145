"""Property tests of the shadow stage's paired test (:func:`relearn.core.stats.decide_paired`):
any counts give a verdict or one typed error, the sequential statistic is a
supermartingale under "the challenger is not better" (so its false promotions
stay within alpha at any looks, by Ville's inequality), and the fixed test is
the exact McNemar test."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relearn.api.abexperiment import ABExperimentSpec
from relearn.core import experiment, stats
from relearn.core.stats import Pairs, Settings
from relearn.errors import InvalidMetrics, InvalidSetting
from scipy.stats import binomtest

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

anything = st.one_of(
    st.integers(0, 10**7).map(float),
    st.sampled_from([0.0, 1.0, 1e12, -1.0, math.nan, math.inf, -math.inf, 0.5, 1e-300]),
    st.floats(allow_nan=True, allow_infinity=True),
)
discordant = st.integers(0, 5000)
paired_settings = st.builds(
    Settings,
    method=st.sampled_from(["sequential", "fixed"]),
    alpha=st.one_of(st.floats(1e-6, 0.49), st.sampled_from([0.05, 0.01, 0.5, 0.0, -1.0, math.nan])),
    min_samples_per_arm=st.integers(1, 2000),
    min_improvement=st.sampled_from([0.02, 0.005, 0.1]),
    promote_when=st.sampled_from(["Better", "BetterByMinImprovement", "BetterAndObservedMinImprovement"]),
)


@FAST
@given(
    pairs=st.builds(Pairs, anything, anything, anything),
    setting=paired_settings,
    planned=st.none() | st.integers(-2, 10**6),
)
def test_any_counts_give_a_verdict_or_one_typed_error(pairs: Pairs, setting: Settings, planned: int | None) -> None:
    try:
        verdict = stats.decide_paired(pairs, setting, planned_pairs=planned)
    except (InvalidMetrics, InvalidSetting):
        return
    assert verdict.outcome in ("Continue", "Promote", "Reject")
    assert 0.0 <= verdict.p_value <= 1.0
    assert 0.0 <= verdict.futility_p_value <= 1.0
    assert pairs.champion_only + pairs.challenger_only <= pairs.pairs * (1 + 1e-9)  # never decided on the impossible


@FAST
@given(b=discordant, c=discordant, q0=st.floats(0.0, 0.5))
def test_sequential_statistic_never_grows_in_expectation_when_the_challenger_is_not_better(
    b: int, c: int, q0: float
) -> None:
    # E[Lambda after one more discordant pair] <= Lambda for any q0 <= 1/2:
    # a supermartingale, so P(ever Lambda >= 1/alpha) <= alpha at any looks.
    now = stats.log_mixture_ratio(b, c)
    up, down = stats.log_mixture_ratio(b, c + 1) - now, stats.log_mixture_ratio(b + 1, c) - now
    assert q0 * math.exp(up) + (1 - q0) * math.exp(down) <= 1 + 1e-6


@FAST
@given(b=discordant, c=discordant)
def test_more_pairs_won_by_the_challenger_mean_stronger_evidence(b: int, c: int) -> None:
    assert stats.log_mixture_ratio(b, c + 1) >= stats.log_mixture_ratio(b, c)
    assert stats.mcnemar_p_value(b, c + 1) <= stats.mcnemar_p_value(b, c)


@FAST
@given(b=st.integers(0, 400), c=st.integers(0, 400))
def test_fixed_test_is_the_exact_one_sided_mcnemar_test(b: int, c: int) -> None:
    expected = binomtest(c, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    assert stats.mcnemar_p_value(b, c) == pytest.approx(expected)


@FAST
@given(b=discordant, c=discordant, extra=st.integers(0, 10**5), previous=st.floats(0, 1))
def test_sequential_p_value_is_a_running_minimum(b: int, c: int, extra: int, previous: float) -> None:
    verdict = stats.decide_paired(
        Pairs(b + c + extra, b, c), Settings(min_samples_per_arm=1), planned_pairs=None, previous_p_value=previous
    )
    assert verdict.p_value <= previous


def test_promotes_a_challenger_right_where_the_champion_was_wrong() -> None:
    verdict = stats.decide_paired(Pairs(600, 15, 50), Settings(min_samples_per_arm=100), planned_pairs=2000)
    assert verdict.outcome == "Promote"
    assert verdict.reason == "ChallengerBetterOnSameRequests"


def test_rejects_a_challenger_wrong_where_the_champion_was_right() -> None:
    verdict = stats.decide_paired(Pairs(600, 60, 10), Settings(min_samples_per_arm=100), planned_pairs=2000)
    assert verdict.outcome == "Reject"
    assert verdict.reason == "ChallengerWorseOnSameRequests"


def test_holds_until_the_gate_of_labelled_pairs() -> None:
    verdict = stats.decide_paired(Pairs(99, 0, 40), Settings(min_samples_per_arm=100), planned_pairs=None)
    assert verdict.outcome == "Continue"
    assert verdict.reason == "NotEnoughSamples"


def test_fixed_test_decides_only_at_its_planned_pairs() -> None:
    fixed = Settings(method="fixed", min_samples_per_arm=10)
    assert stats.decide_paired(Pairs(500, 10, 40), fixed, planned_pairs=1000).outcome == "Continue"
    assert stats.decide_paired(Pairs(1000, 20, 80), fixed, planned_pairs=1000).outcome == "Promote"
    assert stats.decide_paired(Pairs(1000, 40, 42), fixed, planned_pairs=1000).reason == "PlannedPairsReached"


def test_refuses_more_discordant_pairs_than_pairs() -> None:
    with pytest.raises(InvalidMetrics):
        stats.decide_paired(Pairs(10, 8, 8), Settings(), planned_pairs=None)


def test_refuses_a_rule_the_paired_test_cannot_test() -> None:
    with pytest.raises(InvalidSetting):
        stats.decide_paired(Pairs(10, 1, 2), Settings(promote_when="BetterByMinImprovement"), planned_pairs=None)


def _spec(**shadow: object) -> ABExperimentSpec:
    return ABExperimentSpec.model_validate(
        {
            "model": "m",
            "challenger": "1.1.0",
            "workload": {"name": "m"},
            "traffic": {"shadow": {"pairs": 2000, **shadow}},
            "analysis": {"minSamplesPerArm": 100},
        }
    )


def test_a_shadow_stage_won_goes_live_or_promotes_when_shadow_only() -> None:
    look = experiment.ShadowLook(Pairs(600, 15, 50), datetime.timedelta(minutes=5))
    assert experiment.judge_shadow(_spec(), look).outcome == "Live"
    assert experiment.judge_shadow(_spec(live=False), look).outcome == "Promote"


def test_a_shadow_stage_past_its_duration_without_a_decision_is_inconclusive() -> None:
    look = experiment.ShadowLook(Pairs(300, 10, 12), datetime.timedelta(hours=2))
    judged = experiment.judge_shadow(_spec(duration="1h"), look)
    assert judged.outcome == "Inconclusive"
    assert judged.reason == "ShadowDurationReached"


def test_a_shadow_stage_that_collected_its_pairs_without_a_win_rejects() -> None:
    look = experiment.ShadowLook(Pairs(2000, 40, 45), datetime.timedelta(minutes=30))
    assert experiment.judge_shadow(_spec(), look).reason == "PlannedPairsReached"
