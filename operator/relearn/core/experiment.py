"""One analysis of an ABExperiment, and the ModelVersion changes its
decisions make: pure functions the experiment handler calls.

:func:`judge` turns what was measured (both arms' counts, each guardrail's
value, the time since the challenger took traffic) into the outcome of this
look: Continue, Promote, Reject or Inconclusive, with the reason and the
numbers. Missing data never passes: an arm or guardrail without data holds
promotion (the ``Inconclusive`` condition says which), and only the
statistics or a breached guardrail can reject. Invalid data never decides:
:func:`judge` raises :class:`relearn.errors.InvalidMetrics` for impossible
counts or a non-finite guardrail value, and
:class:`relearn.errors.InvalidSetting` for a setting the test cannot honour
(the handler records either as a condition and takes no decision).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relearn.api.abexperiment import ABExperimentSpec, Traffic
from relearn.api.base import rfc3339
from relearn.core import stats
from relearn.core.durations import format_duration, parse_duration
from relearn.errors import InvalidMetrics, InvalidSetting

LookOutcome = Literal["Continue", "Promote", "Reject", "Inconclusive"]
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class GuardrailValue:
    name: str
    value: float | None  # None: no data
    max: float


@dataclass(frozen=True)
class Look:
    champion: stats.Arm
    challenger: stats.Arm
    guardrails: Sequence[GuardrailValue]
    elapsed: datetime.timedelta


@dataclass(frozen=True)
class Judgement:
    outcome: LookOutcome
    reason: str
    message: str
    verdict: stats.Verdict
    missing: tuple[str, ...]  # what had no data (holds promotion)
    eta: str | None  # the median samples needed at the smaller arm's rate so far
    eta_upper: str | None = None  # the same for the 90th percentile


def settings(spec: ABExperimentSpec) -> stats.Settings:
    a = spec.analysis
    return stats.Settings(
        method=a.method,
        alpha=a.alpha,
        min_samples_per_arm=a.min_samples_per_arm,
        min_improvement=a.min_improvement,
        promote_when=a.promote_when,
    )


MAX_ETA = datetime.timedelta(days=3650)  # beyond ten years "when" is not a useful answer


def _eta(samples: int | None, smaller: float, seconds: float) -> str | None:
    """``samples`` on the smaller arm at its rate so far, as a duration."""
    if samples is None or smaller <= 0 or not (0 < seconds < math.inf):
        return None
    wait = samples / (smaller / seconds)
    if not math.isfinite(wait) or wait > MAX_ETA.total_seconds():
        return None
    return format_duration(datetime.timedelta(seconds=wait))


def judge(spec: ABExperimentSpec, look: Look, previous_p_value: float = 1.0) -> Judgement:
    """This look's outcome. Raises InvalidMetrics or InvalidSetting (see the
    module docstring); never decides on invalid data."""
    for g in look.guardrails:
        if not math.isfinite(g.max):
            raise InvalidSetting(f"guardrail {g.name}: max {g.max} is not a finite number")
        if g.value is not None and not math.isfinite(g.value):
            raise InvalidMetrics(f"guardrail {g.name}: value {g.value} is not a finite number")
    verdict = stats.decide(look.champion, look.challenger, settings(spec), previous_p_value)
    smaller = min(look.champion.samples, look.challenger.samples)
    seconds = look.elapsed.total_seconds()
    eta = _eta(verdict.samples_needed, smaller, seconds)
    eta_upper = _eta(verdict.samples_needed_upper, smaller, seconds)
    breached = [g for g in look.guardrails if g.value is not None and g.value > g.max]
    missing = tuple(g.name for g in look.guardrails if g.value is None)

    def judgement(outcome: LookOutcome, reason: str, message: str) -> Judgement:
        return Judgement(outcome, reason, message, verdict, missing, eta, eta_upper)

    if breached:
        return judgement(
            "Reject",
            "GuardrailBreached",
            "; ".join(f"guardrail {g.name}: {g.value:.4g} > max {g.max:g}" for g in breached),
        )
    if verdict.outcome == "Promote" and missing:
        return judgement(
            "Continue", "GuardrailNoData", f"{verdict.message}; but no data for guardrails {', '.join(missing)}"
        )
    if verdict.outcome == "Continue" and look.elapsed > parse_duration(spec.analysis.max_duration):
        return judgement(
            "Inconclusive",
            "MaxDurationReached",
            f"no decision within maxDuration {spec.analysis.max_duration}: {verdict.message}",
        )
    return judgement(verdict.outcome, verdict.reason, verdict.message)


def next_weight(traffic: Traffic, current: int) -> int:
    """The challenger weight for the next interval: the next step above the current one, then ``weight``."""
    for step in traffic.steps or ():
        if step > current:
            return step
    return traffic.weight


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def version_change(
    phase: str,
    *,
    action: str,
    now: datetime.datetime,
    reason: str,
    message: str,
    triggered_by: str,
    from_version: str | None = None,
    to_version: str | None = None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A ModelVersion status change to ``phase`` with one history entry
    (bounded, newest last); nothing changes when it is in ``phase`` already,
    so a change redone after a restart is written once."""

    def change(status: dict[str, Any]) -> dict[str, Any]:
        if status.get("phase") == phase:
            return {}
        entry = {
            "time": rfc3339(now),
            "action": action,
            "reason": reason,
            "message": message[:1024],
            "triggeredBy": triggered_by,
        }
        if from_version:
            entry["fromVersion"] = from_version
        if to_version:
            entry["toVersion"] = to_version
        history = [*(status.get("history") or []), entry][-HISTORY_LIMIT:]
        patch: dict[str, Any] = {"phase": phase, "history": history}
        if phase == "Champion":
            patch["championSince"] = rfc3339(now)
        return patch

    return change
