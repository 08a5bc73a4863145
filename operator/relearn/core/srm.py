"""The sample-ratio-mismatch guard of an A/B look: do the requests each arm
received since the last weight change match the weights the router reports?

A router that does not apply its weights, or a challenger that is not ready
and drops requests, silently skews an A/B test: the arms then no longer see
the same population, and no test on their outcomes can be trusted. So every
look of :mod:`relearn.handlers.experiments.analysis` first asks
:func:`check`: a chi-square goodness-of-fit test (one degree of freedom) of
the observed per-arm request counts against the reported split (the exact
binomial test when an arm expects fewer than :data:`MIN_EXPECTED` requests). Below
``spec.analysis.sampleRatio.pValue`` (0.001 by default, GrowthBook's and
Statsig's alert level) the experiment holds: no decision, no weight change,
condition ``SampleRatioMismatch``. Pure: the handler reads the counts.

Counts are non-integer (Prometheus extrapolates ``increase``): the test is
defined for any non-negative counts. A split with an arm at 0 % or 100 % has
no ratio to test (a request on the 0 % arm is an in-flight one, not
evidence); fewer than :data:`MIN_REQUESTS` requests are not judged. The
handler counts from :data:`SETTLE_SECONDS` after the change, so that requests
routed by the old split (a proxy applying the change late, or Prometheus
extrapolating the window's start) do not count as a mismatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats as scipy_stats

from relearn.errors import InvalidMetrics, InvalidSetting

SrmResult = Literal["Sound", "Mismatch", "NotJudged"]
DEFAULT_P_VALUE = 0.001
MIN_REQUESTS = 100  # below this a skew means little
MAX_REQUESTS = 1e15  # more requests than any window can hold: a broken query
# Requests are counted from this long after the weight change: the data plane applies
# weights late, and Prometheus extrapolates a window's edges over the scrape before it.
SETTLE_SECONDS = 10.0
MIN_EXPECTED = 5  # the textbook rule for the chi-square approximation; below it the exact binomial test


@dataclass(frozen=True)
class SrmVerdict:
    result: SrmResult
    p_value: float | None  # None when not judged
    champion_requests: float
    challenger_requests: float
    expected_challenger_share: float  # the challenger's weight as a share, 0..1
    message: str

    @property
    def mismatch(self) -> bool:
        return self.result == "Mismatch"


def _checked(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0 or value > MAX_REQUESTS:
        raise InvalidMetrics(f"{name} requests {value} are not a count of requests (0 to {MAX_REQUESTS:g})")
    return value


def check(
    *,
    champion_requests: float,
    challenger_requests: float,
    champion_weight: int,
    challenger_weight: int,
    p_value: float = DEFAULT_P_VALUE,
) -> SrmVerdict:
    """The guard's verdict for one look. Raises :class:`InvalidMetrics` for
    counts that cannot be real and :class:`InvalidSetting` for a threshold
    outside (0, 1) or weights that are not a split."""
    if not 0 < p_value < 1:
        raise InvalidSetting(f"sampleRatio.pValue {p_value} is outside (0, 1)")
    if champion_weight < 0 or challenger_weight < 0 or champion_weight + challenger_weight <= 0:
        raise InvalidSetting(f"weights {champion_weight}/{challenger_weight} are not a traffic split")
    a = _checked("champion", champion_requests)
    b = _checked("challenger", challenger_requests)
    share = challenger_weight / (champion_weight + challenger_weight)
    counts = f"champion {a:.0f}, challenger {b:.0f} requests"
    total = a + b

    def verdict(result: SrmResult, p: float | None, message: str) -> SrmVerdict:
        return SrmVerdict(result, p, a, b, share, message)

    if share in (0.0, 1.0):
        return verdict("NotJudged", None, f"{counts}: one arm takes all traffic, no ratio to test")
    if total < MIN_REQUESTS:
        return verdict("NotJudged", None, f"{counts}: fewer than {MIN_REQUESTS} requests, not judged")
    expected_b = total * share
    expected_a = total - expected_b
    if min(expected_a, expected_b) >= MIN_EXPECTED:
        # (a - Ea)^2/Ea + (b - Eb)^2/Eb, written in shares: no overflow for large counts
        statistic = total * (b / total - share) ** 2 / (share * (1 - share))
        p, test = float(scipy_stats.chi2.sf(statistic, 1)), "chi-square"
    else:  # an arm expecting a handful of requests: the chi-square approximation would over-alarm
        p, test = float(scipy_stats.binomtest(round(b), round(total), share).pvalue), "exact binomial"
    observed = f"{counts} ({b / total:.1%} challenger) against weights {champion_weight}/{challenger_weight}"
    if p < p_value:
        return verdict("Mismatch", p, f"{observed}: {test} p {p:.2g} < {p_value:g}")
    return verdict("Sound", p, f"{observed}: {test} p {p:.2g}")
