"""One analysis of an ABExperiment, and the gates and phases around it:
pure functions the experiment handler (:mod:`relearn.handlers.experiments`) calls.

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

:func:`judge_shadow` is the same for a shadow stage: the paired counts of
the labelled requests both versions answered, and where they lead (on to
the live test, promotion when shadow only, rejection, or Inconclusive).

Around the analysis: :func:`turn_action` is the phase machine (what a daemon
turn does in each phase), :func:`end_phase` where a decision leads,
:func:`blocking_experiment` the one-experiment-per-model rule,
:func:`promotion_gate` the approval of a Manual promotion, and
:func:`conclusion_event` the Event a decision is announced with.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relearn.api.abexperiment import (
    TERMINAL_PHASES,
    ABExperimentSpec,
    DecisionOutcome,
    ExperimentPhase,
    PromotionMode,
    Traffic,
)
from relearn.api.names import CHALLENGER_READY, EventType
from relearn.core import stats
from relearn.core.durations import format_duration, parse_duration
from relearn.errors import InvalidMetrics, InvalidSetting

LookOutcome = Literal["Continue", "Promote", "Reject", "Inconclusive"]


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


# -- the shadow stage ------------------------------------------------------------------

ShadowOutcome = Literal["Continue", "Live", "Promote", "Reject", "Inconclusive"]


@dataclass(frozen=True)
class ShadowLook:
    pairs: stats.Pairs
    elapsed: datetime.timedelta  # since the shadow stage began


@dataclass(frozen=True)
class ShadowJudgement:
    outcome: ShadowOutcome  # Live: on to the live A/B test; Promote: shadow only, promoted at once
    reason: str
    message: str
    verdict: stats.PairedVerdict


def judge_shadow(spec: ABExperimentSpec, look: ShadowLook, previous_p_value: float = 1.0) -> ShadowJudgement:
    """This look of the shadow stage (:func:`relearn.core.stats.decide_paired`
    on the labelled pairs; ``analysis.minSamplesPerArm`` is the gate in
    pairs): a challenger shown better goes Live (or, with
    ``traffic.shadow.live`` false, is promoted), one shown worse, or not
    better at the planned pairs, is rejected; past ``traffic.shadow.duration``
    (or ``analysis.maxDuration``) without a decision the experiment is
    Inconclusive. Raises InvalidMetrics or InvalidSetting; never decides on
    invalid data."""
    shadow = spec.traffic.shadow
    if shadow is None:
        raise InvalidSetting("the experiment has no shadow stage (traffic.shadow)")
    verdict = stats.decide_paired(
        look.pairs, settings(spec), planned_pairs=shadow.pairs, previous_p_value=previous_p_value
    )

    def judgement(outcome: ShadowOutcome, reason: str, message: str) -> ShadowJudgement:
        return ShadowJudgement(outcome, reason, message, verdict)

    if verdict.outcome == "Promote":
        return judgement("Live" if shadow.live else "Promote", verdict.reason, verdict.message)
    if verdict.outcome == "Reject":
        return judgement("Reject", verdict.reason, verdict.message)
    if shadow.duration is not None and look.elapsed >= parse_duration(shadow.duration):
        return judgement(
            "Inconclusive",
            "ShadowDurationReached",
            f"no decision within traffic.shadow.duration {shadow.duration}: {verdict.message}",
        )
    if look.elapsed > parse_duration(spec.analysis.max_duration):
        return judgement(
            "Inconclusive",
            "MaxDurationReached",
            f"no decision within maxDuration {spec.analysis.max_duration}: {verdict.message}",
        )
    return judgement("Continue", verdict.reason, verdict.message)


def next_weight(traffic: Traffic, current: int) -> int:
    """The challenger weight for the next interval: the next step above the current one, then ``weight``."""
    for step in traffic.steps or ():
        if step > current:
            return step
    return traffic.weight


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- the phase machine ---------------------------------------------------------------------

# Where each ending decision leads. Promote goes to Promoting at once; the
# others keep their phase until the challenger is withdrawn, so a Rejected
# experiment never still routes traffic to its challenger.
END_PHASES: Mapping[str, ExperimentPhase] = {
    "Promote": "Promoting",
    "Reject": "Rejected",
    "Inconclusive": "Inconclusive",
    "Abort": "Aborted",
}
TurnAction = Literal["Watch", "Done", "Settle", "Advance"]


def turn_action(phase: str | None, decision: str | None) -> TurnAction:
    """What a daemon turn does: Watch a promoted champion (health checks,
    rollback), nothing once Done (the end phase is written only after its
    actions; redoing them could undo what later experiments did), Settle a
    decision taken (idempotent, until its end phase is written), else Advance
    the experiment (start it, analyse it)."""
    if phase == "Promoted":
        return "Watch"
    if phase in TERMINAL_PHASES:
        return "Done"
    if phase == "Promoting" or decision in END_PHASES:
        return "Settle"
    return "Advance"


def end_phase(phase: str | None, decision: str | None) -> ExperimentPhase | None:
    """The phase a decision under way ends in; None when nothing is left to
    settle (already ended, or no ending decision)."""
    if phase in ("Promoted", "RolledBack", "Failed") or decision is None:
        return None
    return END_PHASES.get(decision)


CONCLUSION_EVENTS: Mapping[str, tuple[EventType, str]] = {
    "Promote": ("Normal", "PromotionStarted"),
    "Reject": ("Warning", "ChallengerRejected"),
    "Inconclusive": ("Warning", "ExperimentInconclusive"),
    "Abort": ("Warning", "ExperimentAborted"),
}


def conclusion_event(decision: DecisionOutcome) -> tuple[EventType, str]:
    """The Event (type, reason) that announces a decision; a decision that
    does not end the experiment is announced as a Warning with its own name."""
    return CONCLUSION_EVENTS.get(decision, ("Warning", decision))


# -- gates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Whether a promotion the statistics call for may go ahead, and how it was allowed."""

    go: bool
    how: str


def approved(annotation: str | None, challenger: str) -> bool:
    """The approve annotation approves this challenger: ``true`` or its version."""
    return annotation is not None and annotation.strip() in ("true", challenger)


def promotion_gate(mode: PromotionMode, *, challenger: str, approval: str | None, requested_by: str | None) -> Gate:
    """Automatic promotion goes at once; Manual waits for the approve
    annotation (``relearn promote``), naming who approved when known."""
    if mode == "Automatic":
        return Gate(True, "automatic")
    if not approved(approval, challenger):
        return Gate(False, "awaiting approval")
    return Gate(True, f"approved by {requested_by}" if requested_by else "approved")


@dataclass(frozen=True)
class Blocker:
    name: str
    phase: str


def _running(status: Mapping[str, Any]) -> bool:
    phase = status.get("phase") or "Pending"
    rolling_back = phase == "Promoted" and (status.get("decision") or {}).get("outcome") == "RollBack"
    return phase in ("Progressing", "Promoting") or rolling_back


def _starting(status: Mapping[str, Any]) -> bool:
    """Pending and waiting for its challenger to become ready; an experiment
    stuck on something a person must fix does not hold others."""
    return (status.get("phase") or "Pending") == "Pending" and any(
        c.get("type") == CHALLENGER_READY and c.get("reason") == "NotReady" for c in status.get("conditions") or ()
    )


def blocking_experiment(
    *, name: str, created: str | None, model: str, others: Sequence[Mapping[str, Any]]
) -> Blocker | None:
    """One running experiment per model: two would fight over the same
    routing. The first experiment of ``model`` (other than ``name``) that
    holds this one back: one running (or rolling back), or one starting that
    is older (creation time, then name, decides among those starting at once)."""
    mine = (created or "", name)
    for other in others:
        meta = other.get("metadata") or {}
        if (other.get("spec") or {}).get("model") != model or meta.get("name") == name:
            continue
        status = other.get("status") or {}
        ahead = _starting(status) and (meta.get("creationTimestamp") or "", str(meta.get("name"))) < mine
        if _running(status) or ahead:
            return Blocker(str(meta.get("name")), status.get("phase") or "Pending")
    return None
