"""The metric-contract series and the collector that exports them.

One custom prometheus-client collector per served model version: features
may each have their own bucket edges (a prometheus-client Histogram has one
set per metric), and every series exists from the start at zero, so the
first increments are not lost to ``increase()``. Labels are ``model``,
``version`` and bounded ones only (``feature``, ``category``, ``outcome``):
an unseen category counts as ``other``.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from relearn.core.promql import (  # the series names' one home, shared with the operator's queries
    CONFIDENCE,
    ERRORS,
    FEATURE_CATEGORY,
    FEATURE_VALUE,
    FEEDBACK,
    LATENCY,
    PREDICTIONS,
    SHADOW_FEEDBACK,
)

OTHER_CATEGORY = "other"
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def quantile_edges(reference: Iterable[float], buckets: int = 10) -> list[float]:
    """Bucket edges (``le``) at the reference's quantiles: ``buckets`` equally
    filled buckets for the reference data. Fix them for the model's life."""
    values = np.asarray(list(reference), dtype=np.float64)
    if values.size == 0:
        raise ValueError("quantile edges need reference values")
    edges = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1]))
    return [float(e) for e in edges]


def histogram_counts(edges: Sequence[float], values: Iterable[float]) -> list[float]:
    """Per-bucket counts as Prometheus buckets them (value <= edge, then +Inf):
    what a trainer records as a ModelVersion's baseline."""
    counts = [0.0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_left(edges, value)] += 1
    return counts


@dataclass(frozen=True)
class NumericFeature:
    name: str
    edges: Sequence[float]

    def __post_init__(self) -> None:
        if list(self.edges) != sorted(set(self.edges)) or not self.edges:
            raise ValueError(f"feature {self.name}: edges must be non-empty and strictly ascending")


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: Sequence[str]

    def __post_init__(self) -> None:
        if OTHER_CATEGORY in self.categories:
            raise ValueError(f"feature {self.name}: {OTHER_CATEGORY!r} is reserved for unseen categories")


Feature = NumericFeature | CategoricalFeature


@dataclass
class _Histogram:
    edges: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0.0] * (len(self.edges) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, running = [], 0.0
        for edge, count in zip([*map(_le, self.edges), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((edge, running))
        return cumulative


def _le(edge: float) -> str:
    return repr(float(edge))


class ModelMetrics(Collector):
    """The metric contract of one model version, registered on ``registry``."""

    def __init__(
        self, model: str, version: str, features: Sequence[Feature], registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in {names}")
        self.model, self.version = model, version
        self.features = {f.name: f for f in features}
        self._lock = threading.Lock()
        self._numeric = {f.name: _Histogram(tuple(f.edges)) for f in features if isinstance(f, NumericFeature)}
        self._categorical = {
            f.name: dict.fromkeys([*f.categories, OTHER_CATEGORY], 0.0)
            for f in features
            if isinstance(f, CategoricalFeature)
        }
        self._confidence = _Histogram(CONFIDENCE_BUCKETS)
        self._latency = _Histogram(LATENCY_BUCKETS)
        self._predictions = 0.0
        self._errors = 0.0
        self._feedback = {"correct": 0.0, "incorrect": 0.0}
        self._paired: dict[tuple[str, str, str], float] = {}  # (champion, champion_outcome, outcome) -> count
        if registry is not None:
            registry.register(self)

    # -- recording ------------------------------------------------------------------

    def observe(self, features: Mapping[str, Any], prediction: Any = None, confidence: float | None = None) -> None:
        """One served prediction: its input features and, if known, its confidence.
        Features not declared are ignored; a missing value is not counted."""
        with self._lock:
            self._predictions += 1
            if confidence is not None:
                self._confidence.observe(float(confidence))
            for name, value in features.items():
                if value is None:
                    continue
                if name in self._numeric:
                    self._numeric[name].observe(float(value))
                elif name in self._categorical:
                    counts = self._categorical[name]
                    key = str(value) if str(value) in counts else OTHER_CATEGORY
                    counts[key] += 1

    def feedback(self, correct: bool) -> None:
        """A human verdict on a served prediction (the A/B success metric and concept drift)."""
        with self._lock:
            self._feedback["correct" if correct else "incorrect"] += 1

    def pair_with(self, champion: str) -> None:
        """Create the paired series against ``champion`` at zero (a shadow
        that knows its champion before the first label), so the first pair is
        not lost to ``increase()``."""
        with self._lock:
            for key in _pair_keys(champion):
                self._paired.setdefault(key, 0.0)

    def paired_feedback(self, champion: str, champion_correct: bool, correct: bool) -> None:
        """A human verdict on a request both this version (as a shadow) and
        ``champion`` (whose answer the client got) answered: both outcomes,
        for the paired test of a shadow stage."""
        with self._lock:
            for key in _pair_keys(champion):
                self._paired.setdefault(key, 0.0)
            self._paired[(champion, _outcome(champion_correct), _outcome(correct))] += 1

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    @contextlib.contextmanager
    def time_request(self) -> Iterator[None]:
        """Times a request; an exception inside counts as an error and propagates."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.error()
            raise
        finally:
            with self._lock:
                self._latency.observe(time.perf_counter() - started)

    # -- exporting ------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        base = {"model": self.model, "version": self.version}
        with self._lock:
            values = HistogramMetricFamily(
                FEATURE_VALUE, "Served input values per numeric feature.", labels=[*base, "feature"]
            )
            for name, histogram in self._numeric.items():
                values.add_metric([*base.values(), name], histogram.buckets(), histogram.total)
            categories = CounterMetricFamily(
                FEATURE_CATEGORY,
                "Served inputs per category of a categorical feature.",
                labels=[*base, "feature", "category"],
            )
            for name, counts in self._categorical.items():
                for category, count in counts.items():
                    categories.add_metric([*base.values(), name, category], count)
            confidence = HistogramMetricFamily(CONFIDENCE, "Confidence of served predictions.", labels=list(base))
            confidence.add_metric(list(base.values()), self._confidence.buckets(), self._confidence.total)
            latency = HistogramMetricFamily(LATENCY, "Time to serve a request.", labels=list(base))
            latency.add_metric(list(base.values()), self._latency.buckets(), self._latency.total)
            predictions = CounterMetricFamily(PREDICTIONS, "Served predictions.", labels=list(base))
            predictions.add_metric(list(base.values()), self._predictions)
            errors = CounterMetricFamily(ERRORS, "Requests that failed.", labels=list(base))
            errors.add_metric(list(base.values()), self._errors)
            feedback = CounterMetricFamily(FEEDBACK, "Human feedback on served predictions.", labels=[*base, "outcome"])
            for outcome, count in self._feedback.items():
                feedback.add_metric([*base.values(), outcome], count)
            paired = CounterMetricFamily(
                SHADOW_FEEDBACK,
                "Human feedback on requests this version answered as a shadow, with the champion's outcome.",
                labels=[*base, "champion", "champion_outcome", "outcome"],
            )
            for (champion, champion_outcome, outcome), count in self._paired.items():
                paired.add_metric([*base.values(), champion, champion_outcome, outcome], count)
        yield from (values, categories, confidence, latency, predictions, errors, feedback, paired)


def _outcome(correct: bool) -> str:
    return "correct" if correct else "incorrect"


def _pair_keys(champion: str) -> list[tuple[str, str, str]]:
    return [(champion, a, b) for a in ("correct", "incorrect") for b in ("correct", "incorrect")]
