"""The metric contract: what a model server exports so Relearn can watch it.

A few lines in any Python model server (prometheus-client only)::

    from relearn.serving import CategoricalFeature, ModelMetrics, NumericFeature

    metrics = ModelMetrics(
        model="invoice-classifier", version="1.0.0",
        features=[NumericFeature("amount", edges=[10, 50, 100, 500]),
                  CategoricalFeature("currency", ["EUR", "USD", "GBP"])],
    )
    with metrics.time_request():
        label, confidence = predict(x)
        metrics.observe({"amount": x.amount, "currency": x.currency}, prediction=label, confidence=confidence)
    metrics.feedback(correct=True)  # when a human confirms or corrects a prediction
    # as a shadow (mirrored requests), when the label also says whether the champion's answer was right:
    metrics.paired_feedback(champion="1.0.0", champion_correct=False, correct=True)

docs/metrics.md lists every series and how to map existing metrics instead.
"""

from relearn.core.promql import METRIC_PREFIX
from relearn.serving.contract import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS,
    OTHER_CATEGORY,
    CategoricalFeature,
    ModelMetrics,
    NumericFeature,
    histogram_counts,
    quantile_edges,
)

__all__ = [
    "CONFIDENCE_BUCKETS",
    "LATENCY_BUCKETS",
    "METRIC_PREFIX",
    "OTHER_CATEGORY",
    "CategoricalFeature",
    "ModelMetrics",
    "NumericFeature",
    "histogram_counts",
    "quantile_edges",
]
