"""The metric-contract SDK as Prometheus will read it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from relearn.serving import CategoricalFeature, ModelMetrics, NumericFeature, histogram_counts, quantile_edges


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ModelMetrics:
    return ModelMetrics(
        "m", "1.0.0", [NumericFeature("x", [0.0, 1.0]), CategoricalFeature("c", ["a", "b"])], registry=registry
    )


def test_every_series_exists_at_zero_before_traffic(registry: CollectorRegistry, metrics: ModelMetrics) -> None:
    series = scrape(registry)
    base = {("model", "m"), ("version", "1.0.0")}
    assert series[("relearn_model_feedback_total", frozenset({*base, ("outcome", "incorrect")}))] == 0
    assert (
        series[("relearn_model_feature_category_total", frozenset({*base, ("feature", "c"), ("category", "other")}))]
        == 0
    )
    assert series[("relearn_model_feature_value_bucket", frozenset({*base, ("feature", "x"), ("le", "+Inf")}))] == 0
    assert series[("relearn_model_errors_total", frozenset(base))] == 0
    assert {label for key in series for label, _ in key[1]} <= {
        "model",
        "version",
        "feature",
        "le",
        "category",
        "outcome",
    }


def test_observations_land_in_prometheus_buckets(registry: CollectorRegistry, metrics: ModelMetrics) -> None:
    for x, c in ((0.0, "a"), (0.5, "b"), (3.0, "zzz")):
        metrics.observe({"x": x, "c": c, "undeclared": 1}, prediction="p", confidence=0.93)
    metrics.feedback(correct=True)
    series = scrape(registry)
    base = {("model", "m"), ("version", "1.0.0")}

    def bucket(le: str) -> float:
        return series[("relearn_model_feature_value_bucket", frozenset({*base, ("feature", "x"), ("le", le)}))]

    assert (bucket("0.0"), bucket("1.0"), bucket("+Inf")) == (1, 2, 3)  # le is inclusive, cumulative
    assert (
        series[("relearn_model_feature_category_total", frozenset({*base, ("feature", "c"), ("category", "other")}))]
        == 1
    )
    assert series[("relearn_model_predictions_total", frozenset(base))] == 3
    assert series[("relearn_model_feedback_total", frozenset({*base, ("outcome", "correct")}))] == 1
    assert histogram_counts([0.0, 1.0], [0.0, 0.5, 3.0]) == [1, 1, 1]


def test_a_failing_request_counts_as_an_error(registry: CollectorRegistry, metrics: ModelMetrics) -> None:
    with pytest.raises(RuntimeError), metrics.time_request():
        raise RuntimeError("model crashed")
    series = scrape(registry)
    base = frozenset({("model", "m"), ("version", "1.0.0")})
    assert series[("relearn_model_errors_total", base)] == 1
    assert series[("relearn_model_request_duration_seconds_count", base)] == 1


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="ascending"):
        NumericFeature("x", [1.0, 0.0])
    with pytest.raises(ValueError, match="reserved"):
        CategoricalFeature("c", ["other"])
    with pytest.raises(ValueError, match="duplicate"):
        ModelMetrics("m", "1", [NumericFeature("x", [0.0]), NumericFeature("x", [1.0])], registry=None)


def test_quantile_edges_split_the_reference_evenly() -> None:
    reference = list(range(1000))
    edges = quantile_edges(reference, buckets=4)
    assert histogram_counts(edges, reference) == pytest.approx([250, 250, 250, 250], abs=1)


def test_a_shadow_counts_both_outcomes_of_each_labelled_pair(registry: CollectorRegistry) -> None:
    shadow = ModelMetrics("m", "1.1.0", [], registry=registry)
    shadow.pair_with("1.0.0")
    zero = scrape(registry)
    base = {("model", "m"), ("version", "1.1.0"), ("champion", "1.0.0")}

    def pair(champion_outcome: str, outcome: str) -> frozenset[tuple[str, str]]:
        return frozenset({*base, ("champion_outcome", champion_outcome), ("outcome", outcome)})

    assert zero[("relearn_model_shadow_feedback_total", pair("correct", "incorrect"))] == 0  # exists before the first
    shadow.paired_feedback("1.0.0", champion_correct=False, correct=True)
    shadow.paired_feedback("1.0.0", champion_correct=False, correct=True)
    shadow.paired_feedback("1.0.0", champion_correct=True, correct=True)
    series = scrape(registry)
    assert series[("relearn_model_shadow_feedback_total", pair("incorrect", "correct"))] == 2
    assert series[("relearn_model_shadow_feedback_total", pair("correct", "correct"))] == 1
    assert series[("relearn_model_shadow_feedback_total", pair("correct", "incorrect"))] == 0
