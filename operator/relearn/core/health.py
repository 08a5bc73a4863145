"""Health of a promoted champion: which checks run, what each result means,
and when failures add up to a rollback. Pure; the experiment handler
queries Prometheus and acts.

Checks, each a PromQL query with a ``max`` (``{{model}}``, ``{{version}}``
and ``{{window}}`` = ``rollback.checkWindow`` filled in), plus the
Deployment's availability (every replica available). When
``rollback.checks`` is empty, three come from the metric contract:

- ``error-rate``: failed requests / all requests, max 0.05;
- ``p99-latency``: the 99th percentile request duration, max 1 s;
- ``feedback-error-rate``: incorrect / all human feedback, max 3x the rate
  the version had when it was promoted (the original specification's
  "accuracy drop of more than 3x the pre-promotion error rate").

A check without data is ``NoData``: reported, neither healthy nor failing,
unless ``rollback.failOnNoData``. A rollback is due after
``failureThreshold`` consecutive checks with a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from relearn.api.abexperiment import MetricCheck
from relearn.serving.contract import ERRORS, FEEDBACK, LATENCY, PREDICTIONS

Result = Literal["Healthy", "Failing", "NoData"]
AVAILABILITY = "availability"
ACCURACY_FACTOR = 3.0
_SEL = '{model="{{model}}",version="{{version}}"}'
_W = "{{window}}"
_FEEDBACK_CORRECT = '{model="{{model}}",version="{{version}}",outcome="correct"}'


def default_checks(error_rate_before: float | None) -> list[MetricCheck]:
    checks = [
        MetricCheck(
            name="error-rate",
            query=f"sum(rate({ERRORS}_total{_SEL}[{_W}])) / (sum(rate({PREDICTIONS}_total{_SEL}[{_W}]))"
            f" + sum(rate({ERRORS}_total{_SEL}[{_W}])))",
            max=0.05,
        ),
        MetricCheck(
            name="p99-latency",
            query=f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}_bucket{_SEL}[{_W}])))",
            max=1.0,
        ),
    ]
    if error_rate_before is not None:
        checks.append(
            MetricCheck(
                name="feedback-error-rate",
                query=(
                    f"1 - sum(increase({FEEDBACK}_total{_FEEDBACK_CORRECT}[{_W}]))"
                    f" / sum(increase({FEEDBACK}_total{_SEL}[{_W}]))"
                ),
                max=min(1.0, max(0.01, ACCURACY_FACTOR * error_rate_before)),
            )
        )
    return checks


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float | None
    max: float | None
    result: Result

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name}: no data"
        if self.name == AVAILABILITY:
            return f"{self.name}: {self.value:.0%} of replicas available"
        return f"{self.name}: {self.value:.4g} {'>' if self.result == 'Failing' else '<='} max {self.max:g}"


def judge_check(name: str, value: float | None, limit: float, fail_on_no_data: bool) -> CheckResult:
    if value is None:
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
    failing = tuple(r for r in results if r.result == "Failing")
    failures = previous_failures + 1 if failing else 0
    return HealthVerdict(failures, failing, failures >= threshold)
