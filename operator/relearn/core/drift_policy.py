"""What a DriftPolicy check decides, from counts already fetched: the
per-feature verdicts, concept drift, the policy's verdict, and whether to
request a retraining. Pure; ``relearn.handlers.drift`` fetches and writes.

Counts that cannot be real raise ``InvalidMetrics`` (from ``from_window``
and ``assess``), which the handler records as ``MetricsAvailable=False``:
no verdict is ever drawn from them.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relearn.api.conditions import ConditionUpdate, EventRecord
from relearn.api.driftpolicy import ConceptDrift, DriftPolicySpec, FeatureScore, RetrainingRecord
from relearn.api.modelversion import ModelVersionSpec
from relearn.api.names import DRIFTED, RETRAINING
from relearn.core import drift
from relearn.core.durations import parse_duration
from relearn.core.retraining import next_sequence, request_name
from relearn.errors import InvalidMetrics, NotEnoughData


@dataclass(frozen=True)
class WindowCounts:
    """What one window query returned, arranged per feature."""

    numeric: dict[str, list[tuple[float, float]]]  # feature -> [(le, cumulative count)]
    categorical: dict[str, dict[str, float]]  # feature -> category -> count
    feedback: dict[str, float]  # outcome -> count

    @property
    def empty(self) -> bool:
        return not (self.numeric or self.categorical or self.feedback)


@dataclass(frozen=True)
class FeatureCounts:
    """One window's counts of one feature: per bucket (numeric, with its
    ``le`` edges, +Inf implied) or per category."""

    kind: drift.FeatureKind
    counts: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowData:
    features: dict[str, FeatureCounts]
    correct: float | None = None
    total: float | None = None

    @property
    def empty(self) -> bool:
        return not self.features and not self.total


class AlignmentError(ValueError):
    """Reference and current buckets cannot be compared (different layouts):
    the feature gets a note, not a verdict."""


def _numeric_window(name: str, buckets: Sequence[tuple[float, float]]) -> FeatureCounts:
    """Per-bucket counts from ``(le, cumulative count)`` pairs, sorted by ``le``."""
    les = [le for le, _ in buckets]
    if any(math.isnan(le) for le in les) or len(set(les)) != len(les):
        raise InvalidMetrics(f"feature {name}: bucket bounds `le` must be distinct numbers, got {les}")
    if not les or les[-1] != math.inf:
        raise InvalidMetrics(f"feature {name}: histogram without its +Inf bucket (le {les})")
    try:
        per_bucket = drift.buckets_from_cumulative([count for _, count in buckets])
    except InvalidMetrics as error:
        raise InvalidMetrics(f"feature {name}: {error.message}") from None
    return FeatureCounts("numeric", tuple(float(v) for v in per_bucket), tuple(les[:-1]))


def from_window(window: WindowCounts) -> WindowData:
    """One window's counts, arranged per feature. InvalidMetrics for counts
    that cannot be real (see ``relearn.core.drift``); NaN feedback is no
    feedback (0/0 of a rate), ±Inf or negative feedback is InvalidMetrics."""
    features: dict[str, FeatureCounts] = {}
    for name, buckets in window.numeric.items():
        features[name] = _numeric_window(name, sorted(buckets))
    for name, by_category in window.categorical.items():
        categories = tuple(sorted(by_category))
        features[name] = FeatureCounts("categorical", tuple(by_category[c] for c in categories), categories=categories)
    outcomes = dict(window.feedback)
    if not outcomes or any(math.isnan(v) for v in outcomes.values()):
        return WindowData(features)  # a rate's 0/0: no feedback, not zero accuracy
    if not all(math.isfinite(v) for v in outcomes.values()):
        raise InvalidMetrics(f"feedback counts are infinite: {outcomes}")
    # A negative count is refused by drift.accuracy_drop, with the numbers.
    correct = outcomes.get("correct", 0.0)
    return WindowData(features, correct, correct + outcomes.get("incorrect", 0.0))


def from_baseline(version: ModelVersionSpec) -> WindowData:
    """The training-time reference a ModelVersion carries inline."""
    features = {}
    for item in (version.baseline.features or []) if version.baseline else []:
        features[item.name] = FeatureCounts(
            item.type, tuple(item.counts), tuple(item.edges or ()), tuple(item.categories or ())
        )
    metrics = version.metrics
    if metrics and metrics.accuracy is not None and metrics.samples:
        return WindowData(features, metrics.accuracy * metrics.samples, float(metrics.samples))
    return WindowData(features)


def _layout(window: str, counts: FeatureCounts) -> None:
    labels = counts.categories if counts.kind == "categorical" else (*counts.edges, math.inf)
    if len(labels) != len(counts.counts):
        what = "categories" if counts.kind == "categorical" else "edges plus +Inf"
        raise InvalidMetrics(f"{window}: {len(counts.counts)} counts for {len(labels)} {what}")
    if counts.kind == "categorical" and len(set(labels)) != len(labels):
        raise InvalidMetrics(f"{window}: a category appears twice")


def align(reference: FeatureCounts, current: FeatureCounts) -> tuple[list[float], list[float], tuple[float, ...]]:
    """The two windows' counts over the same buckets.

    AlignmentError when the layouts differ (not comparable); InvalidMetrics
    when a window's counts do not match its own layout."""
    if reference.kind != current.kind:
        raise AlignmentError(f"reference is {reference.kind}, current is {current.kind}")
    _layout("reference", reference)
    _layout("current window", current)
    if reference.kind == "categorical":
        known = set(reference.categories)
        categories = list(reference.categories) + [c for c in current.categories if c not in known]
        ref = dict(zip(reference.categories, reference.counts, strict=True))
        cur = dict(zip(current.categories, current.counts, strict=True))
        return [ref.get(c, 0.0) for c in categories], [cur.get(c, 0.0) for c in categories], ()
    if reference.edges == current.edges:
        return list(reference.counts), list(current.counts), reference.edges
    # Re-bucket the current window onto the reference edges when they are a subset.
    if not set(reference.edges) <= set(current.edges):
        raise AlignmentError(f"bucket edges differ: reference {list(reference.edges)}, current {list(current.edges)}")
    cumulative, running = {}, 0.0
    for edge, count in zip([*current.edges, float("inf")], current.counts, strict=True):
        running += count
        cumulative[edge] = running
    upper = [cumulative[e] for e in reference.edges] + [running]
    rebucketed = [float(v) for v in np.diff(upper, prepend=0.0)]
    return list(reference.counts), rebucketed, reference.edges


@dataclass(frozen=True)
class FeatureVerdict:
    name: str
    comparison: drift.FeatureComparison | None  # None when the current window lacks the feature
    adjusted_p_value: float | None
    drifted: bool | None
    note: str | None = None


@dataclass(frozen=True)
class ConceptVerdict:
    result: drift.AccuracyDrop
    drifted: bool | None


def _raised_by(c: drift.FeatureComparison) -> str:
    """Which score raised the alarm, so "PSI 0.000" beside a tiny p-value reads
    right: a shift within merged buckets that only KS or chi-square sees."""
    if c.psi > c.psi_threshold:
        return "PSI"
    if c.jensen_shannon > c.jensen_shannon_threshold:
        return "JS"
    return "KS" if c.test == "ks" else "chi-square"


@dataclass(frozen=True)
class Assessment:
    features: tuple[FeatureVerdict, ...]
    concept: ConceptVerdict | None
    drifted: bool | None  # None: not enough data to say

    @property
    def drifted_features(self) -> list[FeatureVerdict]:
        return [f for f in self.features if f.drifted]

    def reasons(self) -> list[str]:
        """One line per drifted feature (and concept drift), with the numbers."""
        lines = []
        for verdict in self.drifted_features:
            c = verdict.comparison
            assert c is not None
            lines.append(
                f"{verdict.name}: PSI {c.psi:.3f} (threshold {c.psi_threshold:.3f}), JS {c.jensen_shannon:.3f} "
                f"(threshold {c.jensen_shannon_threshold:.3f}), p={verdict.adjusted_p_value:.2g} "
                f"(raised by {_raised_by(c)}; all scores, corrected) on "
                f"{c.reference_samples:.0f}/{c.current_samples:.0f} samples"
            )
        if self.concept and self.concept.drifted:
            r = self.concept.result
            lines.append(
                f"accuracy: {r.reference_accuracy:.3f} -> {r.current_accuracy:.3f} (drop {r.drop:.3f}, "
                f"95% CI {r.ci_lower:.3f}..{r.ci_upper:.3f}) on {r.current_samples:.0f} feedback samples"
            )
        return lines


MAX_LISTED = 10  # invalid features named in one message


def _feature_data(
    spec: DriftPolicySpec, reference: WindowData, current: WindowData, notes: dict[str, str], invalid: list[str]
) -> list[drift.FeatureData]:
    """Each feature's aligned counts; why a feature has none goes to ``notes``,
    counts that cannot be real to ``invalid``."""
    data: list[drift.FeatureData] = []
    for feature in spec.features:
        ref, cur = reference.features.get(feature.name), current.features.get(feature.name)
        if ref is None or cur is None:
            notes[feature.name] = f"no data in the {'reference' if ref is None else 'current window'}"
            continue
        try:
            ref_counts, cur_counts, edges = align(ref, cur)
            ref_array, cur_array = drift.check_layout(ref.kind, ref_counts, cur_counts, edges)
        except AlignmentError as error:
            notes[feature.name] = str(error)
        except NotEnoughData as error:
            notes[feature.name] = error.message
        except InvalidMetrics as error:
            invalid.append(f"{feature.name}: {error.message}")
        else:
            data.append(drift.FeatureData(feature.name, ref.kind, ref_array, cur_array, edges))
    return data


def _concept(
    spec: DriftPolicySpec, reference: WindowData, current: WindowData, invalid: list[str]
) -> ConceptVerdict | None:
    """Concept drift (the accuracy drop), when feedback is counted; impossible counts go to ``invalid``."""
    thresholds = spec.thresholds
    if not (spec.accuracy.enabled and reference.total and current.total is not None):
        return None
    try:
        result = drift.accuracy_drop(reference.correct or 0.0, reference.total, current.correct or 0.0, current.total)
    except InvalidMetrics as error:
        invalid.append(f"accuracy: {error.message}")
        return None
    enough = current.total >= thresholds.min_samples
    return ConceptVerdict(result, (result.drop >= thresholds.accuracy_drop and result.ci_lower > 0) if enough else None)


def assess(spec: DriftPolicySpec, reference: WindowData, current: WindowData) -> Assessment:
    """The check's verdict: per feature, concept drift, and overall.

    The alarm is controlled per check: every score of every feature that can
    raise it is a p-value, combined within the feature and corrected across
    the features with enough data (``relearn.core.drift``). Raises
    InvalidMetrics, naming every feature concerned, when any count cannot be
    real: no verdict is drawn from such a window, not even on the other features."""
    thresholds = spec.thresholds
    alpha = thresholds.p_value
    notes: dict[str, str] = {}
    invalid: list[str] = []
    data = _feature_data(spec, reference, current, notes, invalid)
    concept = _concept(spec, reference, current, invalid)
    if invalid:  # a bounded message: it becomes a condition and an Event
        more = f"; and {len(invalid) - MAX_LISTED} more" if len(invalid) > MAX_LISTED else ""
        raise InvalidMetrics("; ".join(invalid[:MAX_LISTED]) + more)
    compared = drift.compare_features(
        data,
        psi_threshold=thresholds.psi,
        js_threshold=thresholds.jensen_shannon,
        alpha=alpha,
        min_samples=thresholds.min_samples,
    )
    decided = {
        c.name: (c, p, verdict)
        for c, (p, verdict) in zip(compared, drift.decide(compared, thresholds.correction, alpha), strict=True)
    }
    verdicts = []
    for feature in spec.features:
        if feature.name not in decided:
            verdicts.append(FeatureVerdict(feature.name, None, None, None, notes.get(feature.name)))
            continue
        comparison, p, verdict = decided[feature.name]
        note = None if comparison.enough_data else f"fewer than {thresholds.min_samples} samples"
        verdicts.append(FeatureVerdict(feature.name, comparison, p, verdict, note))
    answers = [v.drifted for v in verdicts] + ([concept.drifted] if concept else [])
    overall = True if any(answers) else (None if all(a is None for a in answers) else False)
    return Assessment(tuple(verdicts), concept, overall)


@dataclass(frozen=True)
class TriggerDecision:
    consecutive: int
    request: bool
    why: str
    reasons: list[str] = field(default_factory=list)


ACTIVE_OUTCOMES = ("Requested", "Running")


def decide_trigger(
    spec: DriftPolicySpec,
    assessment: Assessment,
    consecutive: int,
    last: RetrainingRecord | None,
    now: datetime.datetime,
) -> TriggerDecision:
    """Count drifted checks in a row and decide whether to request a retraining.

    No data leaves the count as it was; a clean check resets it."""
    if assessment.drifted is None:
        return TriggerDecision(consecutive, False, "not enough data")
    if not assessment.drifted:
        return TriggerDecision(0, False, "no drift")
    count = consecutive + 1
    needed = spec.trigger.consecutive_checks
    if count < needed:
        return TriggerDecision(count, False, f"drifted {count} of {needed} checks in a row")
    if spec.retraining is None or not spec.retraining.enabled:
        return TriggerDecision(count, False, "retraining is not configured")
    if last is not None and last.outcome in ACTIVE_OUTCOMES:
        return TriggerDecision(count, False, f"retraining {last.job} is still {last.outcome.lower()}")
    cooldown = parse_duration(spec.trigger.cooldown)
    if last is not None and last.requested_at is not None and now - last.requested_at < cooldown:
        remaining = cooldown - (now - last.requested_at)
        return TriggerDecision(count, False, f"in cooldown for {int(remaining.total_seconds())}s more")
    return TriggerDecision(count, True, f"drifted {count} checks in a row", assessment.reasons())


@dataclass(frozen=True)
class CheckDecision:
    """What one drift check decides: the Drifted condition, the Retraining
    condition (None: left as it is), the count of drifted checks in a row,
    the retraining request (None: none), and the Events, in order."""

    drifted: ConditionUpdate
    retraining: ConditionUpdate | None
    consecutive: int
    request: RetrainingRecord | None
    events: tuple[EventRecord, ...]


def decide_check(
    spec: DriftPolicySpec,
    assessment: Assessment,
    *,
    was_drifted: bool,
    consecutive: int,
    last: RetrainingRecord | None,
    policy: str,
    uid: str,
    name_limit: int,
    now: datetime.datetime,
) -> CheckDecision:
    """The decision of one check from its ``assessment`` and what the
    policy's status says (``was_drifted``, ``consecutive``, ``last``): a
    DriftDetected Event when drift starts, DriftEnded when it ends, and a
    retraining request (named by :func:`request_name`, so at most one Job per
    request) when :func:`decide_trigger` says so."""
    events: list[EventRecord] = []
    if assessment.drifted is None:
        why = f"fewer than {spec.thresholds.min_samples} samples: no drift decision"
        drifted = ConditionUpdate(DRIFTED, "Unknown", "NotEnoughData", why)
    elif assessment.drifted:
        message = "; ".join(assessment.reasons())
        kind = "ConceptDrift" if not assessment.drifted_features else "DataDrift"
        drifted = ConditionUpdate(DRIFTED, "True", kind, message)
        if not was_drifted:
            events.append(EventRecord("Warning", "DriftDetected", message))
    else:
        why = f"{len(assessment.features)} features and accuracy within thresholds"
        drifted = ConditionUpdate(DRIFTED, "False", "NoDrift", why)
        if was_drifted:
            events.append(EventRecord("Normal", "DriftEnded", "no feature drifts any more"))

    trigger = decide_trigger(spec, assessment, consecutive, last, now)
    if not trigger.request:
        untouched = last is not None  # the Retraining condition says how the last one went
        retraining = None if untouched else ConditionUpdate(RETRAINING, "False", "NotRequested", trigger.why)
        return CheckDecision(drifted, retraining, trigger.consecutive, None, tuple(events))
    sequence = next_sequence(last)
    job = request_name(policy, uid, sequence, name_limit)
    request = RetrainingRecord(
        job=job, sequence=sequence, requested_at=now, reasons=trigger.reasons, outcome="Requested"
    )
    retraining = ConditionUpdate(RETRAINING, "True", "Requested", f"retraining {job} requested: {trigger.why}")
    events.append(EventRecord("Normal", "RetrainingRequested", f"{job}: " + "; ".join(trigger.reasons)))
    return CheckDecision(drifted, retraining, trigger.consecutive, request, tuple(events))


def _optional(value: float | None) -> float | None:
    return None if value is None else float(value)


def _feature_score(verdict: FeatureVerdict) -> dict[str, object]:
    c = verdict.comparison
    score = FeatureScore(
        name=verdict.name,
        p_value=_optional(verdict.adjusted_p_value),
        drifted=None if verdict.drifted is None else bool(verdict.drifted),
        note=verdict.note or None,
    )
    if c is not None:
        score = score.model_copy(
            update={
                "psi": float(c.psi),
                "psi_threshold": float(c.psi_threshold),
                "jensen_shannon": float(c.jensen_shannon),
                "jensen_shannon_threshold": float(c.jensen_shannon_threshold),
                "test": c.test,
                "reference_samples": float(c.reference_samples),
                "current_samples": float(c.current_samples),
                "wasserstein": _optional(c.wasserstein),
            }
        )
    return score.to_wire()


def status_scores(assessment: Assessment) -> dict[str, Any]:
    """``status.features`` and ``status.concept`` of an assessment, through the api models."""
    result: dict[str, Any] = {"features": [_feature_score(v) for v in assessment.features]}
    if assessment.concept is not None:
        r = assessment.concept.result
        drifted = assessment.concept.drifted
        result["concept"] = ConceptDrift(
            reference_accuracy=float(r.reference_accuracy),
            current_accuracy=float(r.current_accuracy),
            drop=float(r.drop),
            ci_lower=float(r.ci_lower),
            ci_upper=float(r.ci_upper),
            reference_samples=float(r.reference_samples),
            current_samples=float(r.current_samples),
            drifted=None if drifted is None else bool(drifted),
        ).to_wire()
    return result
