"""Health of a promoted champion: which checks run, what each result means,
and when failures add up to a rollback. Pure; the experiment handler
queries Prometheus and acts.

Checks, each a PromQL query with a ``max`` (``{{model}}``, ``{{version}}``
and ``{{window}}`` = ``rollback.checkWindow`` filled in), plus the
Deployment's availability (every replica available). When
``rollback.checks`` is empty, three come from the metric contract:

- ``error-rate``: failed requests / all requests, max 0.05;
- ``p99-latency``: the 99th percentile request duration, max 1 s;
- ``feedback-error-rate``: incorrect / all human feedback over the check
  window, against 3x the rate the version had when it was promoted (the
  original specification's "accuracy drop of more than 3x the pre-promotion
  error rate"), judged from the counts, not the point estimates, so that
  sampling noise never rolls a healthy champion back: the limit is 3x the
  *upper* confidence bound (95 %) of the rate at promotion (at least 0.01),
  the check fails only when the *lower* confidence bound (99 %) of the
  current rate is above it, and with fewer than
  :data:`MIN_FEEDBACK_SAMPLES` feedback samples in the window it is
  ``NotEnoughData`` (neither healthy nor failing). See
  :func:`feedback_error_rate`; ``bench/health_noise.py`` measures false
  rollbacks and detection against the point-estimate rule.

A check without data is ``NoData``: reported, neither healthy nor failing,
unless ``rollback.failOnNoData``. A rollback is due after
``failureThreshold`` consecutive checks with a failure.

With ``rollback.method: sequential`` (the default) the two rate checks,
``error-rate`` and ``feedback-error-rate``, are judged instead by an
always-valid test against their maximum (:func:`sequential_check`): the
requests (or feedback) counted since the previous look are one batch, whose
mixture likelihood ratio against "rate = max" (uniform prior on rates above
the max) is an e-value under any rate at or below the max; the e-values are
combined as a CUSUM e-detector (``M = max(M_prev, 1) * E``), which alarms when
``M >= 1 / rollback.alpha``. Its guarantee holds however often it looks: a
version whose error rate stays at or below the max raises a false alarm on
average no sooner than after ``1 / alpha`` looks (Shin, Ramdas and Rinaldo,
"E-detectors", 2023), while a version that fails every request reaches the
alarm with four failed requests in one look. That alarm is decisive: it
rolls back at once, without waiting for ``failureThreshold`` looks.
``method: threshold`` keeps the rule above for parity.
``bench/rollback.py`` measures both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from scipy import special as scipy_special
from scipy import stats as scipy_stats

from relearn.api.abexperiment import MetricCheck
from relearn.core import promql
from relearn.errors import InvalidMetrics, InvalidSetting

Result = Literal["Healthy", "Failing", "NoData", "NotEnoughData"]
AVAILABILITY = "availability"
ERROR_RATE = "error-rate"
FEEDBACK_ERROR_RATE = "feedback-error-rate"
ACCURACY_FACTOR = 3.0
MIN_LIMIT = 0.01
MIN_FEEDBACK_SAMPLES = 30
PROMOTION_CONFIDENCE = 0.95  # one-sided upper bound of the rate at promotion
CURRENT_CONFIDENCE = 0.99  # one-sided lower bound of the current rate, looked at every interval


@dataclass(frozen=True)
class Counts:
    """Errors out of samples (non-integer: Prometheus extrapolates ``increase``)."""

    errors: float
    samples: float

    @property
    def rate(self) -> float:
        return self.errors / self.samples if self.samples > 0 else math.nan


def counts(errors: float, samples: float) -> Counts:
    """Checked counts, or :class:`InvalidMetrics` for counts that cannot be real."""
    if not (math.isfinite(errors) and math.isfinite(samples)):
        raise InvalidMetrics(f"feedback counts are not finite: {errors} errors of {samples}")
    if errors < 0 or samples < 0:
        raise InvalidMetrics(f"feedback counts are negative: {errors} errors of {samples}")
    # increase() extrapolates each series on its own: allow a rounding's worth above.
    if errors > samples * 1.01 + 1:
        raise InvalidMetrics(f"more errors than feedback samples: {errors} of {samples}")
    return Counts(min(errors, samples), samples)


@functools.lru_cache(maxsize=16)
def _z(confidence: float) -> float:
    return float(scipy_stats.norm.ppf(confidence))


def wilson_bound(errors: float, samples: float, confidence: float, upper: bool) -> float:
    """A one-sided Wilson score bound of a rate (valid for non-integer counts)."""
    if not 0.5 <= confidence < 1:
        raise InvalidSetting(f"confidence {confidence} is outside [0.5, 1)")
    if samples <= 0:
        return 1.0 if upper else 0.0
    z = _z(confidence)
    p = min(max(errors / samples, 0.0), 1.0)
    # The usual formula multiplied through by the samples: no division by a tiny count.
    centre = (p * samples + z * z / 2) / (samples + z * z)
    spread = z * math.sqrt(p * (1 - p) * samples + z * z / 4) / (samples + z * z)
    return min(1.0, centre + spread) if upper else max(0.0, centre - spread)


def feedback_limit(at_promotion: Counts) -> float:
    """3x the upper confidence bound of the error rate at promotion, within [0.01, 1]."""
    upper = wilson_bound(at_promotion.errors, at_promotion.samples, PROMOTION_CONFIDENCE, upper=True)
    return min(1.0, max(MIN_LIMIT, ACCURACY_FACTOR * upper))


def feedback_error_rate(current: Counts | None, at_promotion: Counts, fail_on_no_data: bool = False) -> CheckResult:
    """The feedback-error-rate check from counts: Failing only when the current
    rate is above the limit beyond sampling noise (its lower confidence bound
    above :func:`feedback_limit`); ``NotEnoughData`` under
    :data:`MIN_FEEDBACK_SAMPLES`."""
    limit = feedback_limit(at_promotion)
    if current is None or current.samples <= 0:
        return CheckResult(FEEDBACK_ERROR_RATE, None, limit, "Failing" if fail_on_no_data else "NoData")
    if current.samples < MIN_FEEDBACK_SAMPLES:
        return CheckResult(FEEDBACK_ERROR_RATE, current.rate, limit, "NotEnoughData", current.samples)
    lower = wilson_bound(current.errors, current.samples, CURRENT_CONFIDENCE, upper=False)
    return CheckResult(
        FEEDBACK_ERROR_RATE, current.rate, limit, "Failing" if lower > limit else "Healthy", current.samples
    )


def default_checks() -> list[MetricCheck]:
    """The checks that are one query each (``feedback-error-rate`` is judged
    from counts by :func:`feedback_error_rate`)."""
    checks = [
        MetricCheck(name=ERROR_RATE, query=promql.ERROR_RATE, max=0.05),
        MetricCheck(name="p99-latency", query=promql.P99_LATENCY, max=1.0),
    ]
    return checks


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float | None
    max: float | None
    result: Result
    samples: float | None = None  # the counts behind a rate, when it is judged from counts
    sequential: SequentialState | None = None  # the always-valid test's state after this look
    decisive: bool = False  # failing with always-valid evidence: roll back without waiting for more looks

    def describe(self) -> str:
        if self.sequential is not None and self.value is None and self.result == "NotEnoughData":
            return f"{self.name}: no requests counted since the last look (the sequential test starts here)"
        if self.sequential is not None and self.value is not None:
            evidence = f"evidence {math.exp(min(self.sequential.log_evidence, 700.0)):.3g}"
            relation = "above" if self.decisive else "not shown above"
            return (
                f"{self.name}: {self.value:.4g} of {self.samples or 0:.0f} since the last look, {relation} max "
                f"{self.max:.4g} ({evidence}, alarm at {self.sequential.alarm_at:.3g})"
            )
        if self.value is None:
            return f"{self.name}: no data"
        if self.result == "NotEnoughData":
            return f"{self.name}: {self.samples:.0f} samples, fewer than {MIN_FEEDBACK_SAMPLES}: not judged"
        if self.samples is not None:
            relation = "above" if self.result == "Failing" else "not above"
            return (
                f"{self.name}: {self.value:.4g} of {self.samples:.0f} samples, {relation} max {self.max:.4g} "
                "beyond sampling noise"
            )
        if self.name == AVAILABILITY:
            return f"{self.name}: {self.value:.0%} of replicas available"
        return f"{self.name}: {self.value:.4g} {'>' if self.result == 'Failing' else '<='} max {self.max:g}"


def judge_check(name: str, value: float | None, limit: float, fail_on_no_data: bool) -> CheckResult:
    if value is None or math.isnan(value):
        return CheckResult(name, None, limit, "Failing" if fail_on_no_data else "NoData")
    return CheckResult(name, value, limit, "Failing" if value > limit else "Healthy")


def availability(available: int, desired: int) -> CheckResult:
    share = available / desired if desired > 0 else 0.0
    return CheckResult(AVAILABILITY, share, None, "Healthy" if desired > 0 and available >= desired else "Failing")


@dataclass(frozen=True)
class HealthVerdict:
    failures: int  # consecutive checks with a failure, this one included
    failing: tuple[CheckResult, ...]
    roll_back: bool

    def message(self) -> str:
        return "; ".join(c.describe() for c in self.failing)


def assess(results: list[CheckResult], previous_failures: int, threshold: int) -> HealthVerdict:
    """Consecutive failing looks against ``threshold``; a decisive failure
    (always-valid evidence, :func:`sequential_check`) rolls back at once."""
    failing = tuple(r for r in results if r.result == "Failing")
    failures = previous_failures + 1 if failing else 0
    return HealthVerdict(failures, failing, failures >= threshold or any(r.decisive for r in failing))


# -- the always-valid test ---------------------------------------------------------------

DEFAULT_ALPHA = 0.0001
MAX_LOG_EVIDENCE = 1e6


@dataclass(frozen=True)
class SequentialState:
    """What the always-valid test keeps between looks: the cumulative counter
    readings it last saw and the detector's log evidence."""

    errors_total: float
    samples_total: float
    log_evidence: float
    alarm_at: float  # 1 / alpha


def log_batch_evidence(errors: float, samples: float, limit: float) -> float:
    """log of the e-value of one batch against "rate = ``limit``": the
    likelihood ratio averaged over a uniform prior on rates in (limit, 1].
    Its expectation is at most 1 under any rate at or below ``limit`` (the
    ratio for each alternative is), so it is valid for composite H0; defined
    for non-integer counts."""
    if samples <= 0:
        return 0.0
    f = min(max(errors, 0.0), samples)
    s = samples - f
    # integral_{limit}^{1} p^f (1-p)^s dp = B(f+1, s+1) * P(Beta(f+1, s+1) > limit)
    log_integral = float(scipy_special.betaln(f + 1, s + 1)) + float(scipy_stats.beta.logsf(limit, f + 1, s + 1))
    return log_integral - math.log1p(-limit) - f * math.log(limit) - s * math.log1p(-limit)


def sequential_check(
    name: str,
    current: Counts | None,
    previous: SequentialState | None,
    limit: float,
    alpha: float,
    fail_on_no_data: bool = False,
) -> CheckResult:
    """One look of the always-valid rate check. ``current`` are the cumulative
    counter readings now (errors of samples), ``previous`` the state the last
    look left. The batch is what the counters grew by since; a counter that
    went down restarted (a pod restart), and its batch is what it counted since.
    The first look only records where the counters stand (``NotEnoughData``)."""
    if not 0 < limit <= 1:
        raise InvalidSetting(f"{name}: max {limit} is outside (0, 1], where a rate can be tested")
    if not 0 < alpha < 1:
        raise InvalidSetting(f"rollback.alpha {alpha} is outside (0, 1)")
    alarm_at = 1 / alpha
    if limit == 1:  # no rate is above 1: the check cannot fail, and nothing is counted
        return CheckResult(name, None, limit, "Healthy", sequential=previous)
    if current is not None:
        current = counts(current.errors, current.samples)
    if previous is not None and not all(
        math.isfinite(v) and v >= 0 for v in (previous.errors_total, previous.samples_total)
    ):
        previous = None  # a state edited into nonsense: start counting again
    if previous is not None and math.isnan(previous.log_evidence):
        previous = SequentialState(previous.errors_total, previous.samples_total, 0.0, alarm_at)
    if current is None:
        return CheckResult(name, None, limit, "Failing" if fail_on_no_data else "NoData", sequential=previous)
    if previous is None:
        state = SequentialState(current.errors, current.samples, 0.0, alarm_at)
        return CheckResult(name, None, limit, "NotEnoughData", 0.0, sequential=state)
    restarted = current.samples < previous.samples_total or current.errors < previous.errors_total
    errors = current.errors if restarted else current.errors - previous.errors_total
    samples = current.samples if restarted else current.samples - previous.samples_total
    errors = min(max(errors, 0.0), samples)
    log_e = max(previous.log_evidence, 0.0) + log_batch_evidence(errors, samples, limit)
    alarm = log_e >= math.log(alarm_at)
    # The detector restarts from 1 (log 0) below it anyway; the cap keeps status JSON finite.
    state = SequentialState(current.errors, current.samples, min(max(log_e, 0.0), MAX_LOG_EVIDENCE), alarm_at)
    rate = errors / samples if samples > 0 else None
    if rate is None:
        return CheckResult(name, None, limit, "NotEnoughData", 0.0, sequential=state)
    return CheckResult(name, rate, limit, "Failing" if alarm else "Healthy", samples, state, decisive=alarm)
