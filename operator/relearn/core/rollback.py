"""What the watch over a promoted champion decides: pure functions the
rollback handler (:mod:`relearn.handlers.experiments.rollback`) calls.

- :func:`target`: where a rollback asked for by annotation goes, or
  :class:`relearn.errors.RollbackRefused` by one of four rules (no previous
  champion known, the target is the champion already, no such version, the
  target failed its own checks);
- :func:`watched`: whether the promoted version is still this experiment's to
  watch, or must be restored to Champion;
- :func:`release_due` and :func:`monitoring`: the bake-time and window verdicts,
  from ``now`` and the promotion time;
- :func:`health_condition`: the ``Healthy`` condition for one look's results;
- :func:`triggered_by` and :func:`scale_up_replicas`: how a rollback is carried out.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relearn.api.conditions import ConditionStatus
from relearn.core import health, model_versions
from relearn.errors import RollbackRefused

PREVIOUS_REQUESTS = ("", "true", "previous")  # annotation values that mean "the previous champion"
IDLE_POLL = 30.0  # seconds between looks once the rollback window is over


def target(
    request: str, *, previous: str | None, champion: str, model: str, versions: Sequence[Mapping[str, Any]]
) -> str:
    """The version a requested rollback returns to: the previous champion, or
    the version the annotation names. Raises :class:`RollbackRefused` with
    the rule it breaks; a rollback never goes to a version that failed."""
    asked = request.strip()
    wanted = previous if asked in PREVIOUS_REQUESTS else asked
    if wanted is None:
        raise RollbackRefused(
            "rollback to the previous champion refused: the experiment does not know the previous champion"
        )
    problem = None
    if wanted == champion:
        problem = f"{wanted} is the champion already"
    else:
        found = model_versions.find(versions, wanted)
        phase = model_versions.phase_of(found)
        if found is None:
            problem = f"no ModelVersion of {model} has version {wanted}"
        elif phase in model_versions.FAILED_PHASES:
            problem = f"{wanted} failed its own checks ({phase}); a rollback never returns to it"
    if problem is not None:
        raise RollbackRefused(f"rollback to {wanted} refused: {problem}")
    return wanted


def requested_message(request: str, *, champion: str, to: str, annotation: str, by: str | None) -> str:
    """The decision message of a rollback asked for by annotation (and by whom)."""
    asked = f"{annotation}: {request.strip() or 'previous'}" + (f", by {by}" if by else "")
    return f"rollback of {champion} to {to} asked for ({asked})"


Watched = Literal["Watch", "Stop", "RestoreChampion"]


def watched(versions: Sequence[Mapping[str, Any]], promoted: str, holder: str | None = None) -> Watched:
    """Whether this experiment still watches its promoted version: Stop when
    it is gone, superseded by a later champion or rolled back by another
    experiment; RestoreChampion when it is the champion but its phase says
    otherwise (the champion record names it and a phase write is behind, or
    an older operator's re-registration: the model never stays without a
    Champion phase). ``holder``: the version the champion record names."""
    mine = model_versions.find(versions, promoted)
    if mine is None:
        return "Stop"
    phase = model_versions.phase_of(mine)
    if holder is not None and model_versions.find(versions, holder) is not None:
        if holder != promoted or phase in model_versions.FAILED_PHASES:
            return "Stop"
        return "Watch" if phase == "Champion" else "RestoreChampion"
    if phase == "Champion":
        return "Watch"
    if model_versions.champion(versions) is not None or phase in model_versions.FAILED_PHASES:
        return "Stop"
    return "RestoreChampion"


def release_due(*, warm: bool, since_promotion: datetime.timedelta, bake_time: datetime.timedelta) -> bool:
    """Whether the previous champion, still warm, should stop running now: bake time passed."""
    return warm and since_promotion > bake_time


@dataclass(frozen=True)
class Monitoring:
    """Whether health checks run on this look, and if not why and when to look again."""

    checks: bool
    why: str = ""
    wait: float = 0.0


def monitoring(
    *,
    enabled: bool,
    since_promotion: datetime.timedelta,
    window: datetime.timedelta,
    window_text: str,
    interval: float,
    bake_time: datetime.timedelta = datetime.timedelta(0),
    bake_interval: float | None = None,
) -> Monitoring:
    """Health checks run within ``rollback.window`` after promotion while
    automatic rollback is on, every ``bake_interval`` during ``bake_time``
    (a new champion fails, if at all, mostly at first: looking often then
    is what makes a rollback take seconds), every ``interval`` after it;
    past the window the watch looks rarely (bake-time release and manual
    rollbacks still need a look)."""
    over = since_promotion > window
    if enabled and not over:
        baking = bake_interval is not None and since_promotion <= bake_time
        return Monitoring(True, wait=min(interval, bake_interval) if baking and bake_interval else interval)
    why = "automatic rollback is off" if not enabled else f"the rollback window ({window_text}) is over"
    return Monitoring(False, why, max(interval, IDLE_POLL) if over else interval)


@dataclass(frozen=True)
class HealthCondition:
    status: ConditionStatus
    reason: str
    message: str
    event: bool  # a Warning Event goes with it (the first failing look)


def health_condition(
    verdict: health.HealthVerdict, results: Sequence[health.CheckResult], problem: str | None, threshold: int
) -> HealthCondition:
    """The ``Healthy`` condition of one look: failing checks first, then
    missing data (neither healthy nor failing), else passing."""
    if verdict.failing:
        if any(r.decisive for r in verdict.failing):
            message = f"{verdict.message()} (the sequential test's evidence decides at this look)"
        else:
            message = f"{verdict.message()} ({verdict.failures} of {threshold} consecutive checks)"
        return HealthCondition("False", "ChecksFailing", message, verdict.failures == 1)
    missing = [r for r in results if r.result in ("NoData", "NotEnoughData")]
    if problem or missing:
        return HealthCondition("Unknown", "NoData", problem or "; ".join(r.describe() for r in missing), False)
    return HealthCondition("True", "ChecksPassing", "; ".join(r.describe() for r in results), False)


def triggered_by(reason: str | None, *, experiment: str, annotation: str, by: str | None) -> str:
    """Who or what a rollback's history entries name."""
    if reason == "HealthCheckFailed":
        return f"abexperiment/{experiment} health checks"
    return f"{annotation} on abexperiment/{experiment}" + (f" by {by}" if by else "")


def scale_up_replicas(warm_annotation: str | None, failed_replicas: int | None) -> int:
    """Replicas for a released previous champion brought back: what it had
    when released, else what the failed version runs, at least one."""
    try:
        recorded = int(warm_annotation) if warm_annotation else 0
    except ValueError:
        recorded = 0  # an annotation edited by hand: fall back to the failed version's size
    return max(1, recorded or failed_replicas or 1)
