"""What a model's report says, from the objects the registry keeps.

Pure: ModelVersions, ABExperiments, DriftPolicies and retraining Jobs as
the API server returns them (plain dicts) in; the champion timeline, the
registry's statistics, every retraining and every experiment with its
numbers out. ``relearn.reporting`` reads the objects and Prometheus' series
and renders what this module decides to say; the operator never calls it.

Total: an object whose fields cannot be read (a missing or malformed
timestamp, a status written by a newer operator) is left out of what needs
that field and named in :attr:`ModelReport.notes`, never an exception.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relearn.core.model_versions import champion as current_champion
from relearn.core.retraining import job_state
from relearn.core.workloads import MODEL_LABEL

# Actions that end a version's time as champion (on the outgoing version).
_LEAVES = ("Demoted", "RolledBack", "Archived")
_PHASES = ("Champion", "Challenger", "Registered", "Rejected", "RolledBack", "Archived")


def timestamp(value: object) -> datetime.datetime | None:
    """An RFC 3339 timestamp as the API server writes it; None for anything else."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class TimelineEntry:
    """One change of a version's standing, as its ModelVersion's history records it."""

    time: datetime.datetime
    version: str
    action: str
    from_version: str | None
    to_version: str | None
    reason: str | None
    message: str | None
    triggered_by: str | None


@dataclass(frozen=True)
class VersionSummary:
    version: str
    phase: str
    created: datetime.datetime | None
    champion_seconds: float  # time as champion inside the report's period
    accuracy: float | None  # offline, on held-out data, when the trainer recorded it
    champion_accuracy: float | None  # the champion's on the same data
    parent: str | None
    trigger_reasons: tuple[str, ...]


@dataclass(frozen=True)
class Retraining:
    """One retraining: the Job and, when it produced one, the version it registered."""

    job: str
    version: str | None
    reasons: tuple[str, ...]
    started: datetime.datetime | None
    finished: datetime.datetime | None
    duration_seconds: float | None
    outcome: str  # Succeeded, Failed, Running
    accuracy: float | None
    champion_accuracy: float | None
    samples: float | None
    message: str | None


@dataclass(frozen=True)
class ExperimentSummary:
    name: str
    champion: str | None
    challenger: str | None
    phase: str | None
    started: datetime.datetime | None
    promoted: datetime.datetime | None
    outcome: str | None
    reason: str | None
    message: str | None
    lift: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    champion_samples: float | None
    challenger_samples: float | None
    challenger_weight: float | None


@dataclass(frozen=True)
class RegistryStats:
    versions_by_phase: dict[str, int]
    champion_seconds: dict[str, float]
    drift_to_fix_seconds: tuple[float, ...]  # per promoted retrained version: trigger to promotion

    @property
    def mean_drift_to_fix_seconds(self) -> float | None:
        values = self.drift_to_fix_seconds
        return sum(values) / len(values) if values else None


@dataclass
class ModelReport:
    model: str
    namespace: str
    start: datetime.datetime
    end: datetime.datetime
    champion: str | None
    timeline: list[TimelineEntry]
    versions: list[VersionSummary]
    retrainings: list[Retraining]
    experiments: list[ExperimentSummary]
    stats: RegistryStats
    notes: list[str] = field(default_factory=list)


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(obj.get("spec"))


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(obj.get("status"))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(obj.get("metadata"))


def models(model_versions: Iterable[Mapping[str, Any]]) -> list[str]:
    """The models the registry knows, sorted."""
    return sorted({m for v in model_versions if (m := _text(_spec(v).get("model")))})


def timeline(
    model_versions: Iterable[Mapping[str, Any]], start: datetime.datetime, end: datetime.datetime, notes: list[str]
) -> list[TimelineEntry]:
    """Every history entry of the model's versions inside [start, end], oldest first."""
    entries = []
    for mv in model_versions:
        version = _text(_spec(mv).get("version")) or "?"
        history = _status(mv).get("history")
        for raw in history if isinstance(history, list) else ():
            entry = _mapping(raw)
            moment = timestamp(entry.get("time"))
            action = _text(entry.get("action"))
            if moment is None or action is None:
                notes.append(f"{version}: a history entry without a readable time or action was left out")
                continue
            if start <= moment <= end:
                entries.append(
                    TimelineEntry(
                        moment,
                        version,
                        action,
                        _text(entry.get("fromVersion")),
                        _text(entry.get("toVersion")),
                        _text(entry.get("reason")),
                        _text(entry.get("message")),
                        _text(entry.get("triggeredBy")),
                    )
                )
    # At one moment (a hand-over) the version leaving comes before the one promoted.
    return sorted(entries, key=lambda e: (e.time, e.action not in _LEAVES, e.version))


def champion_intervals(
    mv: Mapping[str, Any], end: datetime.datetime
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """When this version was champion: from each ``Promoted`` entry (or, for a
    declared champion, its creation) to the next entry that demoted, rolled
    back or archived it, or to ``end`` while it still is champion."""
    entries = []
    history = _status(mv).get("history")
    for raw in history if isinstance(history, list) else ():
        entry = _mapping(raw)
        moment, action = timestamp(entry.get("time")), _text(entry.get("action"))
        if moment is not None and action is not None:
            entries.append((moment, action))
    entries.sort()
    intervals: list[tuple[datetime.datetime, datetime.datetime]] = []
    since: datetime.datetime | None = None
    promoted = any(action == "Promoted" for _, action in entries)
    created = timestamp(_meta(mv).get("creationTimestamp"))
    if _spec(mv).get("declaredChampion") is True:
        since = created  # champion from its first spec check (championSince moves with each promotion)
    elif not promoted and _status(mv).get("phase") == "Champion":
        since = timestamp(_status(mv).get("championSince")) or created
    for moment, action in entries:
        if action == "Promoted" and since is None:
            since = moment
        elif action in _LEAVES and since is not None:
            intervals.append((since, moment))
            since = None
    if since is not None:
        intervals.append((since, max(since, end)))
    return intervals


def _overlap(
    intervals: Sequence[tuple[datetime.datetime, datetime.datetime]], start: datetime.datetime, end: datetime.datetime
) -> float:
    return sum(max(0.0, (min(b, end) - max(a, start)).total_seconds()) for a, b in intervals)


def versions(
    model_versions: Sequence[Mapping[str, Any]], start: datetime.datetime, end: datetime.datetime
) -> list[VersionSummary]:
    summaries = []
    for mv in model_versions:
        spec, status = _spec(mv), _status(mv)
        metrics, source = _mapping(spec.get("metrics")), _mapping(spec.get("source"))
        reasons = source.get("triggerReasons")
        summaries.append(
            VersionSummary(
                version=_text(spec.get("version")) or "?",
                phase=_text(status.get("phase")) or "Pending",
                created=timestamp(_meta(mv).get("creationTimestamp")),
                champion_seconds=_overlap(champion_intervals(mv, end), start, end),
                accuracy=_number(metrics.get("accuracy")),
                champion_accuracy=_number(metrics.get("championAccuracy")),
                parent=_text(source.get("parentVersion")),
                trigger_reasons=tuple(r for r in reasons if isinstance(r, str)) if isinstance(reasons, list) else (),
            )
        )
    return sorted(summaries, key=lambda s: (s.created or end, s.version))


def _job_end(job: Mapping[str, Any], outcome: str) -> datetime.datetime | None:
    """When a finished Job finished: its completionTime, else (a failure) its condition's time."""
    finished = timestamp(_status(job).get("completionTime"))
    if finished is None and outcome != "Running":
        times = [
            timestamp(_mapping(c).get("lastTransitionTime"))
            for c in _status(job).get("conditions") or ()
            if _mapping(c).get("status") == "True"
        ]
        finished = max((t for t in times if t is not None), default=None)
    return finished


def retrainings(
    model_versions: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]],
    start: datetime.datetime,
    end: datetime.datetime,
) -> list[Retraining]:
    """Each retraining Job in the period with the version it registered (the
    ModelVersion whose lineage names the Job), oldest first. A version whose
    Job is gone (cleaned up by its TTL) is still listed from its lineage."""
    by_job: dict[str, Mapping[str, Any]] = {}
    for mv in model_versions:
        job = _text(_mapping(_spec(mv).get("source")).get("job"))
        if job:
            by_job[job] = mv
    result = []
    seen = set()
    for obj in jobs:
        name = _text(_meta(obj).get("name")) or "?"
        seen.add(name)
        started = timestamp(_status(obj).get("startTime")) or timestamp(_meta(obj).get("creationTimestamp"))
        if started is not None and not start <= started <= end:
            continue
        outcome, reason = job_state(obj)
        result.append(_retraining(name, by_job.get(name), started, _job_end(obj, outcome), outcome, reason or None))
    for name, mv in by_job.items():
        if name in seen:
            continue
        created = timestamp(_meta(mv).get("creationTimestamp"))
        if created is None or start <= created <= end:
            result.append(_retraining(name, mv, None, created, "Succeeded", None))
    return sorted(result, key=lambda r: (r.started or r.finished or end, r.job))


def _retraining(
    job: str,
    mv: Mapping[str, Any] | None,
    started: datetime.datetime | None,
    finished: datetime.datetime | None,
    outcome: str,
    message: str | None,
) -> Retraining:
    spec = _spec(mv or {})
    metrics, source = _mapping(spec.get("metrics")), _mapping(spec.get("source"))
    reasons = source.get("triggerReasons")
    duration = (finished - started).total_seconds() if started and finished and finished >= started else None
    return Retraining(
        job=job,
        version=_text(spec.get("version")),
        reasons=tuple(r for r in reasons if isinstance(r, str)) if isinstance(reasons, list) else (),
        started=started,
        finished=finished,
        duration_seconds=duration,
        outcome=outcome,
        accuracy=_number(metrics.get("accuracy")),
        champion_accuracy=_number(metrics.get("championAccuracy")),
        samples=_number(metrics.get("samples")),
        message=message,
    )


def experiments(
    abexperiments: Sequence[Mapping[str, Any]], start: datetime.datetime, end: datetime.datetime
) -> list[ExperimentSummary]:
    """Each experiment that ran in the period, oldest first."""
    result = []
    for abx in abexperiments:
        spec, status = _spec(abx), _status(abx)
        started = timestamp(status.get("startTime")) or timestamp(_meta(abx).get("creationTimestamp"))
        ended = timestamp(status.get("promotionTime"))
        if started is not None and started > end:
            continue
        decision, statistic = _mapping(status.get("decision")), _mapping(status.get("statistic"))
        arms, weights = _mapping(status.get("arms")), _mapping(status.get("weights"))
        result.append(
            ExperimentSummary(
                name=_text(_meta(abx).get("name")) or "?",
                champion=_text(spec.get("champion")) or _text(status.get("champion")),
                challenger=_text(spec.get("challenger")),
                phase=_text(status.get("phase")),
                started=started,
                promoted=ended,
                outcome=_text(decision.get("outcome")),
                reason=_text(decision.get("reason")),
                message=_text(decision.get("message")),
                lift=_number(statistic.get("lift")),
                ci_lower=_number(statistic.get("ciLower")),
                ci_upper=_number(statistic.get("ciUpper")),
                p_value=_number(statistic.get("pValue")),
                champion_samples=_number(_mapping(arms.get("champion")).get("samples")),
                challenger_samples=_number(_mapping(arms.get("challenger")).get("samples")),
                challenger_weight=_number(weights.get("challenger")),
            )
        )
    return sorted(result, key=lambda e: (e.started or end, e.name))


def registry_stats(
    model_versions: Sequence[Mapping[str, Any]], start: datetime.datetime, end: datetime.datetime
) -> RegistryStats:
    """Versions by phase now, time as champion in the period, and for each
    retrained version that was promoted in the period the time from the drift
    that triggered it (the end of its training window, where the operator
    requested it) to its promotion."""
    by_phase = dict.fromkeys(_PHASES, 0)
    champion_seconds = {}
    to_fix = []
    for mv in model_versions:
        spec, status = _spec(mv), _status(mv)
        version = _text(spec.get("version")) or "?"
        phase = _text(status.get("phase")) or "Pending"
        by_phase[phase] = by_phase.get(phase, 0) + 1
        champion_seconds[version] = _overlap(champion_intervals(mv, end), start, end)
        source = _mapping(spec.get("source"))
        triggered = timestamp(source.get("windowEnd")) or (
            timestamp(_meta(mv).get("creationTimestamp")) if source.get("job") else None
        )
        if triggered is None:
            continue
        history = status.get("history")
        promotions = [
            moment
            for raw in (history if isinstance(history, list) else ())
            if _mapping(raw).get("action") == "Promoted"
            and (moment := timestamp(_mapping(raw).get("time"))) is not None
            and start <= moment <= end
        ]
        if promotions:
            to_fix.append(max(0.0, (min(promotions) - triggered).total_seconds()))
    return RegistryStats({k: v for k, v in by_phase.items() if v}, champion_seconds, tuple(to_fix))


def build(
    model: str,
    namespace: str,
    model_versions: Sequence[Mapping[str, Any]],
    abexperiments: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]],
    start: datetime.datetime,
    end: datetime.datetime,
    holder: str | None = None,
) -> ModelReport:
    """The report of one model over [start, end] from all objects of its
    namespace (other models' objects are left out here); ``holder``: the
    version the model's champion record names."""
    mine = [v for v in model_versions if _spec(v).get("model") == model]
    experiments_of = [x for x in abexperiments if _spec(x).get("model") == model]
    jobs_of = [j for j in jobs if _mapping(_meta(j).get("labels")).get(MODEL_LABEL) == model]
    notes: list[str] = []
    champions = [v for v in mine if _status(v).get("phase") == "Champion"]
    champion = current_champion(mine, holder)
    if len(champions) > 1:
        notes.append(
            f"{len(champions)} versions are Champion at once (a hand-over between its writes); "
            "the champion record's is shown as champion"
        )
    return ModelReport(
        model=model,
        namespace=namespace,
        start=start,
        end=end,
        champion=_text(_spec(champion).get("version")) if champion else None,
        timeline=timeline(mine, start, end, notes),
        versions=versions(mine, start, end),
        retrainings=retrainings(mine, jobs_of, start, end),
        experiments=experiments(experiments_of, start, end),
        stats=registry_stats(mine, start, end),
        notes=notes,
    )
