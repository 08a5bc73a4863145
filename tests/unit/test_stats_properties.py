"""Property tests of the experiment decision over whole input spaces: any
counts (negative, NaN, infinite, successes above samples, 0, 1e12), any
setting the CRD admits, any traffic split. A look returns a verdict or
raises one typed error, and never promotes on invalid data or past what the
boundaries allow."""

from __future__ import annotations

import datetime
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from relearn.api.abexperiment import ABExperimentSpec
from relearn.core import experiment, stats
from relearn.core.stats import Arm, Settings
from relearn.errors import DecisionError, InvalidMetrics, InvalidSetting

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

special_counts = st.sampled_from([0.0, 1.0, 1e12, -1.0, -1e12, math.nan, math.inf, -math.inf, 0.5, 1e-300])
counts = st.one_of(
    st.integers(0, 10**7).map(float),
    special_counts,
    st.floats(allow_nan=True, allow_infinity=True),
)
arms = st.builds(Arm, counts, counts)
# valid arms: successes <= samples, real counts (Prometheus increase() may give fractions)
sizes = st.one_of(st.integers(0, 5000), st.integers(0, 10**6), st.just(10**12)).map(float)
valid_arms = st.tuples(st.floats(0, 1), sizes).map(lambda t: Arm(math.floor(t[0] * t[1]), t[1]))
open_unit = st.floats(0, 1, exclude_min=True, exclude_max=True)  # the CRD's exclusive bounds
alphas = st.one_of(open_unit, st.sampled_from([0.05, 0.01, 0.1, 0.3, 0.49, 0.5, 0.9]))
all_settings = st.builds(
    Settings,
    method=st.sampled_from(["sequential", "fixed"]),
    alpha=alphas,
    min_samples_per_arm=st.one_of(st.integers(1, 200), st.integers(1, 10**6)),
    min_improvement=st.one_of(open_unit, st.sampled_from([0.02, 0.005, 0.1])),
    promote_when=st.sampled_from(["Better", "BetterByMinImprovement", "BetterAndObservedMinImprovement"]),
)


def valid(arm: Arm) -> bool:
    s, n = arm.successes, arm.samples
    return math.isfinite(s) and math.isfinite(n) and 0 <= s <= n


def honourable(s: Settings) -> bool:
    return stats.MIN_ALPHA <= s.alpha < stats.MAX_ALPHA and s.min_improvement >= stats.MIN_IMPROVEMENT


def check_verdict(champion: Arm, challenger: Arm, s: Settings, verdict: stats.Verdict) -> None:
    assert verdict.outcome in ("Continue", "Promote", "Reject")
    assert 0.0 <= verdict.p_value <= 1.0
    smaller = min(champion.samples, challenger.samples)
    if smaller == 0:
        assert verdict.outcome == "Continue"
        return
    assert -1.0 <= verdict.ci_lower <= verdict.lift <= verdict.ci_upper <= 1.0
    if verdict.outcome != "Continue":
        assert smaller >= s.min_samples_per_arm  # the gate holds
    if verdict.outcome == "Promote":
        assert verdict.ci_lower > stats.theta0(s)
        if s.promote_when == "BetterAndObservedMinImprovement":
            assert verdict.lift >= s.min_improvement
    if s.method == "sequential" and smaller >= s.min_samples_per_arm:
        looked = stats.evaluate(champion.successes, champion.samples, challenger.successes, challenger.samples, s)
        if float(looked.information) >= 1.0:
            assert verdict.outcome != "Continue"  # the planned maximum ends every experiment
    for needed in (verdict.samples_needed, verdict.samples_needed_upper):
        assert needed is None or needed >= 0


@FAST
@given(arms, arms, all_settings)
def test_any_counts_and_settings_give_a_verdict_or_a_typed_error(champion: Arm, challenger: Arm, s: Settings) -> None:
    try:
        verdict = stats.decide(champion, challenger, s, with_forecast=False)
    except InvalidSetting:
        assert not honourable(s)
        return
    except InvalidMetrics:
        assert not (valid(champion) and valid(challenger))
        return
    assert honourable(s)
    assert valid(champion)
    assert valid(challenger)  # never a verdict on impossible counts
    check_verdict(champion, challenger, s, verdict)


@SLOW
@given(valid_arms, valid_arms, all_settings)
def test_samples_needed_is_a_reproducible_median_and_upper_value(champion: Arm, challenger: Arm, s: Settings) -> None:
    assume(honourable(s))
    verdict = stats.decide(champion, challenger, s)
    check_verdict(champion, challenger, s, verdict)
    if verdict.outcome == "Continue" and verdict.samples_needed is not None:
        assert verdict.samples_needed_upper is not None
        assert verdict.samples_needed <= verdict.samples_needed_upper
        if min(champion.samples, challenger.samples) < s.min_samples_per_arm:
            assert verdict.samples_needed >= s.min_samples_per_arm - min(champion.samples, challenger.samples) - 1
        assert stats.decide(champion, challenger, s) == verdict  # seeded: the same look, the same numbers


@FAST
@given(valid_arms, valid_arms, all_settings)
def test_sequential_p_value_agrees_with_the_lower_bound(champion: Arm, challenger: Arm, s: Settings) -> None:
    s = Settings("sequential", s.alpha, 1, s.min_improvement, s.promote_when)
    assume(honourable(s))
    assume(min(champion.samples, challenger.samples) > 0)
    looked = stats.evaluate(champion.successes, champion.samples, challenger.successes, challenger.samples, s)
    assume(abs(float(looked.lower) - stats.theta0(s)) > 1e-9)
    assert (float(looked.p_value) < s.alpha) == (float(looked.lower) > stats.theta0(s))


@st.composite
def far_apart(draw: st.DrawFn) -> tuple[float, float]:
    """(champion's rate, how much worse the challenger is): at least 36 points, both rates in [0, 1]."""
    worse_by = draw(st.floats(0.36, 1.0))
    return draw(st.floats(worse_by, 1.0)), worse_by


@FAST
@given(
    rates=far_apart(),
    minimum=st.integers(50, 20_000),
    challenger_share=st.floats(0.1, 0.9),
    s=all_settings,
)
def test_rejects_far_worse_challenger_at_first_look(
    rates: tuple[float, float], minimum: int, challenger_share: float, s: Settings
) -> None:
    """A challenger 36 points or more below the champion (a broken retrain)
    is rejected at the first look where both arms pass the gate, whatever
    the rates, the traffic split and the settings (down to 50 per arm)."""
    champion_rate, worse_by = rates
    assume(honourable(s))
    s = Settings(s.method, s.alpha, minimum, s.min_improvement, s.promote_when)
    total = minimum / min(challenger_share, 1 - challenger_share)
    na, nb = math.ceil(total * (1 - challenger_share)), math.ceil(total * challenger_share)
    champion = Arm(round(champion_rate * na), na)
    challenger = Arm(round((champion_rate - worse_by) * nb), nb)
    assume(challenger.rate <= champion.rate - 0.36)
    verdict = stats.decide(champion, challenger, s, with_forecast=False)
    assert verdict.outcome == "Reject"
    assert verdict.reason == "ChallengerNotBetter"


spec_analysis = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["sequential", "fixed"]),
        "alpha": st.floats(0, 0.5, exclude_min=True, exclude_max=True),  # the CRD's bounds
        "minSamplesPerArm": st.integers(1, 10**5),
        "minImprovement": open_unit,
        "promoteWhen": st.sampled_from(["Better", "BetterByMinImprovement", "BetterAndObservedMinImprovement"]),
    }
)
guardrail_values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@SLOW
@given(spec_analysis, arms, arms, st.lists(guardrail_values, max_size=3), st.floats(-1e6, 1e9))
def test_a_look_is_judged_or_refused_with_a_typed_error(
    analysis: dict[str, object], champion: Arm, challenger: Arm, values: list[float | None], seconds: float
) -> None:
    spec = ABExperimentSpec.model_validate(
        {"model": "docs", "challenger": "1.1.0", "workload": {"name": "docs"}, "analysis": analysis}
    )
    guardrails = [experiment.GuardrailValue(f"g{i}", v, 0.05) for i, v in enumerate(values)]
    look = experiment.Look(champion, challenger, guardrails, datetime.timedelta(seconds=seconds))
    try:
        judged = experiment.judge(spec, look)
    except (InvalidMetrics, InvalidSetting):
        return
    assert valid(champion)
    assert valid(challenger)
    assert all(v is None or math.isfinite(v) for v in values)
    if judged.outcome == "Promote":
        assert not judged.missing
        assert judged.verdict.outcome == "Promote"


@FAST
@given(arms, arms, all_settings)
def test_every_public_statistic_is_total(champion: Arm, challenger: Arm, s: Settings) -> None:
    """The helpers the bench and the forecast use refuse what decide refuses."""
    calls = (
        lambda: stats.z_test(champion, challenger),
        lambda: stats.planned_maximum(champion, challenger, s),
        lambda: stats.evaluate(champion.successes, champion.samples, challenger.successes, challenger.samples, s),
    )
    for call in calls:
        try:
            call()
        except DecisionError:
            continue
        assert valid(champion)
        assert valid(challenger)
        assert min(champion.samples, challenger.samples) > 0
