"""What a DriftPolicy check decides, from counts already fetched: the
per-feature verdicts, concept drift, the policy's verdict, and whether to
request a retraining. Pure; ``relearn.handlers.drift`` fetches and writes.
"""

from __future__ import annotations

import datetime
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.api.modelversion import ModelVersionSpec
from relearn.core import drift
from relearn.core.durations import parse_duration


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
    """Reference and current buckets cannot be compared."""


def from_window(window: WindowCounts) -> WindowData:
    features: dict[str, FeatureCounts] = {}
    for name, buckets in window.numeric.items():
        les = [le for le, _ in buckets]
        cumulative = [count for _, count in buckets]
        edges = tuple(le for le in les if le != float("inf"))
        features[name] = FeatureCounts("numeric", tuple(drift.buckets_from_cumulative(cumulative)), edges)
    for name, by_category in window.categorical.items():
        categories = tuple(sorted(by_category))
        features[name] = FeatureCounts("categorical", tuple(by_category[c] for c in categories), categories=categories)
    outcomes = {k: v for k, v in window.feedback.items() if math.isfinite(v)}
    correct, incorrect = outcomes.get("correct"), outcomes.get("incorrect")
    total = (correct or 0.0) + (incorrect or 0.0) if outcomes else None
    return WindowData(features, correct, total)


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


def align(reference: FeatureCounts, current: FeatureCounts) -> tuple[list[float], list[float], tuple[float, ...]]:
    """The two windows' counts over the same buckets."""
    if reference.kind != current.kind:
        raise AlignmentError(f"reference is {reference.kind}, current is {current.kind}")
    if reference.kind == "categorical":
        categories = list(reference.categories) + [c for c in current.categories if c not in reference.categories]
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
                f"(threshold {c.jensen_shannon_threshold:.3f}), {c.test} p={verdict.adjusted_p_value:.2g} "
                f"on {c.reference_samples:.0f}/{c.current_samples:.0f} samples"
            )
        if self.concept and self.concept.drifted:
            r = self.concept.result
            lines.append(
                f"accuracy: {r.reference_accuracy:.3f} -> {r.current_accuracy:.3f} (drop {r.drop:.3f}, "
                f"95% CI {r.ci_lower:.3f}..{r.ci_upper:.3f}) on {r.current_samples:.0f} feedback samples"
            )
        return lines


def assess(spec: DriftPolicySpec, reference: WindowData, current: WindowData) -> Assessment:
    thresholds = spec.thresholds
    alpha = thresholds.p_value
    comparisons: list[tuple[str, drift.FeatureComparison | None, str | None]] = []
    for feature in spec.features:
        ref, cur = reference.features.get(feature.name), current.features.get(feature.name)
        if ref is None or cur is None:
            where = "reference" if ref is None else "current window"
            comparisons.append((feature.name, None, f"no data in the {where}"))
            continue
        try:
            ref_counts, cur_counts, edges = align(ref, cur)
        except AlignmentError as error:
            comparisons.append((feature.name, None, str(error)))
            continue
        comparisons.append(
            (
                feature.name,
                drift.compare_feature(
                    feature.name,
                    ref.kind,
                    ref_counts,
                    cur_counts,
                    edges=edges,
                    psi_threshold=thresholds.psi,
                    js_threshold=thresholds.jensen_shannon,
                    alpha=alpha,
                    min_samples=thresholds.min_samples,
                ),
                None,
            )
        )
    testable = [c for _, c, _ in comparisons if c is not None and c.enough_data]
    adjusted = iter(drift.adjust_p_values([c.p_value for c in testable], thresholds.correction))
    verdicts = []
    for name, comparison, note in comparisons:
        if comparison is None:
            verdicts.append(FeatureVerdict(name, None, None, None, note))
        elif not comparison.enough_data:
            verdicts.append(
                FeatureVerdict(name, comparison, None, None, f"fewer than {thresholds.min_samples} samples")
            )
        else:
            p = next(adjusted)
            verdicts.append(FeatureVerdict(name, comparison, p, drift.drifted(comparison, p, alpha)))
    concept = None
    if spec.accuracy.enabled and reference.total and current.total is not None:
        result = drift.accuracy_drop(reference.correct or 0.0, reference.total, current.correct or 0.0, current.total)
        enough = current.total >= thresholds.min_samples
        concept = ConceptVerdict(
            result, (result.drop >= thresholds.accuracy_drop and result.ci_lower > 0) if enough else None
        )
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


def retraining_job_name(policy: str, policy_uid: str, requested_at: datetime.datetime) -> str:
    """Deterministic: the same trigger names the same Job, so a restart cannot start a second one."""
    digest = hashlib.sha256(f"{policy_uid}/{requested_at.isoformat()}".encode()).hexdigest()[:8]
    return f"{policy[:51].rstrip('-')}-rt-{digest}"  # 63 characters at most: a label value


def champion(versions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The model's champion: the version the operator made Champion, else the
    one declared champion from Git (fresh installs)."""
    chosen = [v for v in versions if (v.get("status") or {}).get("phase") == "Champion"]
    if not chosen:
        chosen = [v for v in versions if (v.get("spec") or {}).get("declaredChampion")]
    return chosen[0] if chosen else None
