"""A DriftPolicy check's decisions from counts: alignment, per-feature and
concept verdicts, and the retraining trigger."""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.adapters.prometheus import Sample, arrange
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.api.modelversion import ModelVersionSpec
from relearn.core.drift_policy import (
    AlignmentError,
    FeatureCounts,
    WindowData,
    align,
    assess,
    decide_trigger,
    from_baseline,
    from_window,
)
from relearn.core.model_versions import champion
from relearn.errors import InvalidMetrics

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
EDGES = (-1.0, 0.0, 1.0)


def policy(**overrides: Any) -> DriftPolicySpec:
    spec: dict[str, Any] = {
        "model": "m",
        "prometheus": {"url": "http://prometheus:9090"},
        "features": [{"name": "x"}, {"name": "c", "type": "categorical"}],
        "trigger": {"consecutiveChecks": 2, "cooldown": "1h"},
        "retraining": {"image": "trainer:1", "dataset": {"uri": "/data"}, "output": {"uri": "/out"}},
    }
    spec.update(overrides)
    return DriftPolicySpec.model_validate(spec)


def window(x: list[float], c: dict[str, float], correct: float = 0, total: float = 0) -> WindowData:
    return WindowData(
        {
            "x": FeatureCounts("numeric", tuple(x), EDGES),
            "c": FeatureCounts("categorical", tuple(c.values()), categories=tuple(c)),
        },
        correct if total else None,
        total or None,
    )


REFERENCE = window([1000, 3000, 3000, 1000], {"a": 5000, "b": 3000}, correct=870, total=1000)


def test_a_window_like_the_reference_is_no_drift() -> None:
    result = assess(policy(), REFERENCE, window([500, 1500, 1500, 500], {"a": 2500, "b": 1500}, 430, 500))
    assert result.drifted is False
    assert [f.drifted for f in result.features] == [False, False]
    assert result.concept is not None
    assert result.concept.drifted is False


def test_a_shifted_feature_drifts_and_is_named_with_its_numbers() -> None:
    result = assess(policy(), REFERENCE, window([100, 500, 1500, 1900], {"a": 2500, "b": 1500}))
    assert result.drifted is True
    assert [f.name for f in result.drifted_features] == ["x"]
    (line,) = result.reasons()
    assert line.startswith("x: PSI ")
    assert "on 8000/4000 samples" in line


def test_accuracy_drop_is_concept_drift() -> None:
    result = assess(policy(), REFERENCE, window([500, 1500, 1500, 500], {"a": 2500, "b": 1500}, 350, 500))
    assert result.drifted is True
    assert result.drifted_features == []
    assert result.concept is not None
    assert result.concept.drifted is True
    assert "accuracy: 0.870 -> 0.700" in result.reasons()[0]


def test_too_few_samples_is_no_answer() -> None:
    result = assess(policy(), REFERENCE, window([10, 30, 30, 10], {"a": 50, "b": 30}))
    assert result.drifted is None
    assert {f.note for f in result.features} == {"fewer than 500 samples"}


def test_a_feature_missing_from_the_window_is_reported_not_guessed() -> None:
    current = WindowData({"x": FeatureCounts("numeric", (500, 1500, 1500, 500), EDGES)})
    result = assess(policy(), REFERENCE, current)
    (missing,) = [f for f in result.features if f.name == "c"]
    assert (missing.drifted, missing.note) == (None, "no data in the current window")
    assert result.drifted is False


def test_current_buckets_realign_onto_coarser_reference_edges() -> None:
    reference = FeatureCounts("numeric", (1, 2, 3), (0.0, 1.0))
    current = FeatureCounts("numeric", (1, 1, 1, 1, 1), (0.0, 0.5, 1.0, 2.0))
    assert align(reference, current) == ([1, 2, 3], [1.0, 2.0, 2.0], (0.0, 1.0))
    with pytest.raises(AlignmentError, match="bucket edges differ"):
        align(FeatureCounts("numeric", (1, 2), (5.0,)), current)


def test_prometheus_answer_becomes_per_bucket_counts() -> None:
    samples = [
        Sample({"feature": "x", "le": le}, v) for le, v in (("1.0", 30), ("-1.0", 10), ("+Inf", 40), ("0.0", 20))
    ]
    samples += [
        Sample({"feature": "c", "category": "a"}, 7.0),
        Sample({"outcome": "correct"}, 9.0),
        Sample({"outcome": "incorrect"}, 1.0),
    ]
    data = from_window(arrange(samples))
    assert data.features["x"] == FeatureCounts("numeric", (10, 10, 10, 10), (-1.0, 0.0, 1.0))
    assert data.features["c"].counts == (7.0,)
    assert (data.correct, data.total) == (9.0, 10.0)


def test_baseline_comes_from_the_model_version() -> None:
    version = ModelVersionSpec.model_validate(
        {
            "model": "m",
            "version": "1.0.0",
            "baseModel": {"uri": "/m"},
            "metrics": {"accuracy": 0.9, "samples": 1000},
            "baseline": {"features": [{"name": "x", "type": "numeric", "edges": [0.0], "counts": [5, 5]}]},
        }
    )
    reference = from_baseline(version)
    assert reference.features["x"] == FeatureCounts("numeric", (5.0, 5.0), (0.0,))
    assert reference.total == 1000
    assert reference.correct == pytest.approx(900)


DRIFTED = assess(policy(), REFERENCE, window([100, 500, 1500, 1900], {"a": 2500, "b": 1500}))


def test_retraining_waits_for_consecutive_checks() -> None:
    first = decide_trigger(policy(), DRIFTED, 0, None, NOW)
    assert (first.consecutive, first.request) == (1, False)
    second = decide_trigger(policy(), DRIFTED, first.consecutive, None, NOW)
    assert (second.consecutive, second.request) == (2, True)
    assert second.reasons[0].startswith("x: PSI")


def test_a_clean_check_resets_the_count_and_no_data_keeps_it() -> None:
    clean = assess(policy(), REFERENCE, REFERENCE)
    assert decide_trigger(policy(), clean, 5, None, NOW).consecutive == 0
    unknown = assess(policy(), REFERENCE, window([1, 1, 1, 1], {"a": 1, "b": 1}))
    assert decide_trigger(policy(), unknown, 5, None, NOW).consecutive == 5


def test_no_second_retraining_while_one_is_active_or_in_cooldown() -> None:
    running = RetrainingRecord(job="j", requested_at=NOW - datetime.timedelta(hours=3), outcome="Running")
    assert "still running" in decide_trigger(policy(), DRIFTED, 5, running, NOW).why
    recent = RetrainingRecord(job="j", requested_at=NOW - datetime.timedelta(minutes=10), outcome="Succeeded")
    assert "cooldown" in decide_trigger(policy(), DRIFTED, 5, recent, NOW).why
    old = RetrainingRecord(job="j", requested_at=NOW - datetime.timedelta(hours=2), outcome="Failed")
    assert decide_trigger(policy(), DRIFTED, 5, old, NOW).request


def test_no_retraining_without_its_configuration() -> None:
    decision = decide_trigger(policy(retraining=None), DRIFTED, 5, None, NOW)
    assert (decision.request, decision.why) == (False, "retraining is not configured")


def test_champion_is_the_promoted_version_else_the_declared_one() -> None:
    declared = {"spec": {"version": "1.0.0", "declaredChampion": True}}
    promoted = {"spec": {"version": "1.1.0"}, "status": {"phase": "Champion"}}
    assert champion([declared, promoted]) is promoted
    assert champion([declared]) is declared
    assert champion([{"spec": {"version": "2.0.0"}}]) is None


def test_reference_deciles_stay_quiet_on_fresh_normal_data() -> None:
    rng = np.random.default_rng(3)
    edges = tuple(float(e) for e in np.quantile(rng.normal(size=100_000), np.linspace(0.1, 0.9, 9)))
    reference = WindowData({"x": FeatureCounts("numeric", (10_000.0,) * 10, edges)})
    counts = np.bincount(np.searchsorted(edges, rng.normal(size=2000)), minlength=10).astype(float)
    current = WindowData({"x": FeatureCounts("numeric", tuple(counts), edges)})
    assert assess(policy(features=[{"name": "x"}]), reference, current).drifted is False


def test_feedback_without_data_is_no_accuracy_not_zero_accuracy() -> None:
    data = from_window(
        arrange([Sample({"outcome": "correct"}, float("nan")), Sample({"outcome": "incorrect"}, float("nan"))])
    )
    assert data.total is None
    result = assess(policy(), REFERENCE, window([500, 1500, 1500, 500], {"a": 2500, "b": 1500}))
    assert result.concept is None


# -- invalid metrics never become decisions --------------------------------------------------


def cumulative_window(les: list[str], values: list[float]) -> WindowData:
    return from_window(arrange([Sample({"feature": "x", "le": le}, v) for le, v in zip(les, values, strict=True)]))


def test_a_reset_in_one_le_series_is_invalid_metrics() -> None:
    with pytest.raises(InvalidMetrics, match="fall back"):
        cumulative_window(["-1", "0", "1", "+Inf"], [100, 5000, 300, 400])


def test_a_histogram_without_its_inf_bucket_or_with_a_repeated_bound_is_invalid_metrics() -> None:
    with pytest.raises(InvalidMetrics, match=r"\+Inf"):
        cumulative_window(["-1", "0", "1"], [100, 200, 300])
    with pytest.raises(InvalidMetrics, match="distinct"):
        cumulative_window(["1", "1.0", "+Inf"], [100, 200, 300])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5.0])
def test_garbage_counts_in_a_window_raise_invalid_metrics_naming_the_feature(bad: float) -> None:
    current = window([500, 1500, bad, 500], {"a": 2500, "b": 1500})
    with pytest.raises(InvalidMetrics, match=r"^x: "):
        assess(policy(), REFERENCE, current)


def test_more_correct_answers_than_answers_is_invalid_metrics() -> None:
    data = from_window(arrange([], feedback=(900.0, 500.0)))
    with pytest.raises(InvalidMetrics, match="accuracy"):
        assess(policy(), REFERENCE, WindowData(REFERENCE.features, data.correct, data.total))


def test_counts_that_do_not_match_their_layout_are_invalid_metrics() -> None:
    current = WindowData({"x": FeatureCounts("numeric", (1.0, 2.0), EDGES)})
    with pytest.raises(InvalidMetrics, match="counts for 4 edges"):
        assess(policy(features=[{"name": "x"}]), REFERENCE, current)


def test_a_single_bucket_feature_is_no_answer_with_a_note() -> None:
    reference = WindowData({"x": FeatureCounts("numeric", (8000.0,))})
    current = WindowData({"x": FeatureCounts("numeric", (4000.0,))})
    (verdict,) = assess(policy(features=[{"name": "x"}]), reference, current).features
    assert verdict.drifted is None
    assert "two" in (verdict.note or "")


counts_or_garbage = st.one_of(
    st.floats(min_value=0, max_value=1e12), st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf")])
)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_window_gives_an_assessment_or_a_typed_error_never_drift_on_garbage(data: st.DataObject) -> None:
    buckets = data.draw(st.integers(min_value=1, max_value=12))
    edges = tuple(float(e) for e in range(buckets - 1))
    categories = tuple(f"c{i}" for i in range(data.draw(st.integers(min_value=1, max_value=12))))

    def features() -> dict[str, FeatureCounts]:
        x = data.draw(st.lists(counts_or_garbage, min_size=buckets, max_size=buckets + 1))
        c = data.draw(st.lists(counts_or_garbage, min_size=len(categories), max_size=len(categories)))
        return {
            "x": FeatureCounts("numeric", tuple(x), edges),
            "c": FeatureCounts("categorical", tuple(c), categories=categories),
        }

    reference, current = WindowData(features()), WindowData(features())
    thresholds = {
        "minSamples": data.draw(st.integers(min_value=1, max_value=1000)),
        "pValue": data.draw(st.floats(min_value=1e-9, max_value=0.999)),
        "psi": data.draw(st.floats(min_value=1e-9, max_value=10)),
        "jensenShannon": data.draw(st.floats(min_value=1e-9, max_value=1)),
        "correction": data.draw(st.sampled_from(["benjamini-hochberg", "bonferroni", "none"])),
    }
    spec = policy(thresholds=thresholds)
    garbage = any(
        not math.isfinite(v) or v < 0 for w in (reference, current) for f in w.features.values() for v in f.counts
    ) or any(len(f.counts) != len(edges) + 1 for w in (reference, current) for f in [w.features["x"]])
    try:
        result = assess(spec, reference, current)
    except InvalidMetrics:
        return
    assert not garbage
    assert result.drifted in (True, False, None)


def test_invalid_metrics_in_many_features_give_a_bounded_message() -> None:
    names = [f"f{i}" for i in range(200)]
    good = WindowData({n: FeatureCounts("numeric", (1.0, 1.0, 1.0, 1.0), EDGES) for n in names})
    bad = WindowData({n: FeatureCounts("numeric", (-1.0, 1.0, 1.0, 1.0), EDGES) for n in names})
    with pytest.raises(InvalidMetrics, match=r"and 190 more$") as error:
        assess(policy(features=[{"name": n} for n in names]), good, bad)
    assert len(error.value.message) < 2000


def test_of_two_champions_during_a_hand_over_the_incoming_one_is_the_champion() -> None:
    outgoing = {"spec": {"version": "1.0.0"}, "status": {"phase": "Champion", "championSince": "2026-01-01T00:00:00Z"}}
    incoming = {"spec": {"version": "1.1.0"}, "status": {"phase": "Champion", "championSince": "2026-02-01T00:00:00Z"}}

    assert champion([incoming, outgoing]) is incoming
    assert champion([outgoing, incoming]) is incoming


def test_a_drift_reason_names_the_score_that_raised_it() -> None:
    from relearn.core import drift
    from relearn.core.drift_policy import _raised_by

    def compare(reference: list[float], current: list[float]) -> drift.FeatureComparison:
        return drift.compare_feature(
            "length",
            "numeric",
            reference,
            current,
            edges=list(range(1, len(reference))),
            psi_threshold=0.2,
            js_threshold=0.1,
            alpha=0.001,
            min_samples=100,
        )

    assert _raised_by(compare([100] * 10 + [0], [10] * 10 + [400])) == "PSI"
    # A small shift on much data: PSI and JS stay under their thresholds, the
    # tests on the counts see it; the reason says which.
    shifted = compare([100_000] * 4, [20_000, 25_000, 25_000, 30_000])
    assert shifted.psi < shifted.psi_threshold
    assert shifted.p_value < 1e-6
    assert _raised_by(shifted) in ("KS", "chi-square")
