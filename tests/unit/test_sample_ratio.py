"""The sample-ratio guard: under correct routing it false-alarms at about its
threshold, whatever the split and traffic; a router that does not apply its
weights trips it; any counts give a verdict or a typed error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.core import srm
from relearn.errors import InvalidMetrics, InvalidSetting

DRAWS = 2000


@settings(max_examples=25, deadline=None)
@given(
    challenger_weight=st.integers(min_value=1, max_value=99),
    requests=st.integers(min_value=srm.MIN_REQUESTS, max_value=200_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_false_alarm_rate_under_correct_routing_is_about_the_threshold(
    challenger_weight: int, requests: int, seed: int
) -> None:
    threshold = 0.01  # the default 0.001 needs ten times the draws to see
    rng = np.random.default_rng(seed)
    challenger = rng.binomial(requests, challenger_weight / 100, size=DRAWS)
    alarms = sum(
        srm.check(
            champion_requests=float(requests - b),
            challenger_requests=float(b),
            champion_weight=100 - challenger_weight,
            challenger_weight=challenger_weight,
            p_value=threshold,
        ).mismatch
        for b in challenger
    )
    se = math.sqrt(threshold * (1 - threshold) / DRAWS)
    # Discrete counts make the test a little conservative, never much too eager.
    assert alarms / DRAWS <= threshold + 4 * se + 0.003
    if min(challenger_weight, 100 - challenger_weight) * requests / 100 >= 100:
        assert alarms / DRAWS >= threshold - 4 * se - 0.003  # and it does alarm at its rate: not vacuous


@given(
    challenger_weight=st.integers(min_value=1, max_value=50),
    skew=st.floats(min_value=0.1, max_value=0.5),
    requests=st.floats(min_value=2000, max_value=1e7),
)
def test_trips_on_a_router_sending_a_share_far_from_its_weights(
    challenger_weight: int, skew: float, requests: float
) -> None:
    share = min(1.0, challenger_weight / 100 + skew)
    verdict = srm.check(
        champion_requests=requests * (1 - share),
        challenger_requests=requests * share,
        champion_weight=100 - challenger_weight,
        challenger_weight=challenger_weight,
    )
    assert verdict.mismatch
    assert verdict.p_value is not None
    assert verdict.p_value < srm.DEFAULT_P_VALUE


def test_a_router_ignoring_a_ten_percent_weight_is_named_with_both_counts() -> None:
    verdict = srm.check(champion_requests=510, challenger_requests=490, champion_weight=90, challenger_weight=10)
    assert verdict.mismatch
    assert "champion 510" in verdict.message
    assert "challenger 490" in verdict.message


def test_an_exact_split_is_sound_and_a_degenerate_or_tiny_one_is_not_judged() -> None:
    sound = srm.check(champion_requests=900, challenger_requests=100, champion_weight=90, challenger_weight=10)
    assert sound.result == "Sound"
    assert sound.p_value == pytest.approx(1.0)
    all_on_champion = srm.check(champion_requests=1000, challenger_requests=3, champion_weight=100, challenger_weight=0)
    assert all_on_champion.result == "NotJudged"  # requests in flight at a weight change are not evidence
    few = srm.check(champion_requests=10, challenger_requests=50, champion_weight=90, challenger_weight=10)
    assert few.result == "NotJudged"


anything = st.floats(allow_nan=True, allow_infinity=True)


@given(a=anything, b=anything, wa=st.integers(-5, 105), wb=st.integers(-5, 105), p=anything)
def test_any_input_gives_a_verdict_or_a_typed_error(a: float, b: float, wa: int, wb: int, p: float) -> None:
    try:
        verdict = srm.check(
            champion_requests=a, challenger_requests=b, champion_weight=wa, challenger_weight=wb, p_value=p
        )
    except (InvalidMetrics, InvalidSetting):
        return  # the typed refusals, both DecisionErrors
    assert verdict.result in ("Sound", "Mismatch", "NotJudged")
    assert verdict.p_value is None or 0.0 <= verdict.p_value <= 1.0
    assert verdict.mismatch == (verdict.p_value is not None and verdict.p_value < p)
