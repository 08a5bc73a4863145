"""The metric contract's series names and the PromQL Relearn writes over
them: one home, imported by the serving SDK (:mod:`relearn.serving.contract`,
which exports the series), the core (:mod:`relearn.core.health`'s default
checks) and the adapters and handlers that query them. Plain strings, no
imports, so the SDK stays light and the core pure.

Templates use the placeholders :func:`relearn.adapters.prometheus.render`
fills in: ``{{selector}}`` (model, version and namespace) and ``{{window}}``.
The window-query parts use ``str.format`` fields ``selector`` and ``range``
instead (:func:`relearn.adapters.prometheus.window_query`).
"""

from __future__ import annotations

from typing import Final

METRIC_PREFIX: Final = "relearn_model"
FEATURE_VALUE: Final = f"{METRIC_PREFIX}_feature_value"
FEATURE_CATEGORY: Final = f"{METRIC_PREFIX}_feature_category"
CONFIDENCE: Final = f"{METRIC_PREFIX}_confidence"
PREDICTIONS: Final = f"{METRIC_PREFIX}_predictions"
ERRORS: Final = f"{METRIC_PREFIX}_errors"
LATENCY: Final = f"{METRIC_PREFIX}_request_duration_seconds"
FEEDBACK: Final = f"{METRIC_PREFIX}_feedback"
# Labelled requests a shadow answered: its own outcome and that of the champion
# whose answer the client got (labels champion, champion_outcome, outcome).
SHADOW_FEEDBACK: Final = f"{METRIC_PREFIX}_shadow_feedback"

_SEL = "{{selector}}"
_W = "{{window}}"

# An arm's feedback (the A/B success metric) and the feedback health check read the same counters.
FEEDBACK_CORRECT: Final = f'sum(increase({FEEDBACK}_total{{{_SEL},outcome="correct"}}[{_W}]))'
FEEDBACK_TOTAL: Final = f"sum(increase({FEEDBACK}_total{{{_SEL}}}[{_W}]))"
# A shadow stage's paired counts; the selector carries the challenger's version and ``champion``.
SHADOW_PAIRS: Final = f"sum(increase({SHADOW_FEEDBACK}_total{{{_SEL}}}[{_W}]))"
SHADOW_CHAMPION_ONLY: Final = (
    f'sum(increase({SHADOW_FEEDBACK}_total{{{_SEL},champion_outcome="correct",outcome="incorrect"}}[{_W}]))'
)
SHADOW_CHALLENGER_ONLY: Final = (
    f'sum(increase({SHADOW_FEEDBACK}_total{{{_SEL},champion_outcome="incorrect",outcome="correct"}}[{_W}]))'
)
# The default health checks that are one query each.
ERROR_RATE: Final = (
    f"sum(rate({ERRORS}_total{{{_SEL}}}[{_W}])) / (sum(rate({PREDICTIONS}_total{{{_SEL}}}[{_W}]))"
    f" + sum(rate({ERRORS}_total{{{_SEL}}}[{_W}])))"
)
# Requests one version served (answered or failed) over the window: the sample-ratio guard's count.
REQUESTS: Final = f"sum(increase({PREDICTIONS}_total{{{_SEL}}}[{_W}])) + sum(increase({ERRORS}_total{{{_SEL}}}[{_W}]))"
# Cumulative counters as they stand (no window): the sequential health checks take differences between looks.
ERRORS_NOW: Final = f"sum({ERRORS}_total{{{_SEL}}})"
REQUESTS_NOW: Final = f"sum({PREDICTIONS}_total{{{_SEL}}}) + sum({ERRORS}_total{{{_SEL}}})"
FEEDBACK_CORRECT_NOW: Final = f'sum({FEEDBACK}_total{{{_SEL},outcome="correct"}})'
FEEDBACK_TOTAL_NOW: Final = f"sum({FEEDBACK}_total{{{_SEL}}})"
P99_LATENCY: Final = f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}_bucket{{{_SEL}}}[{_W}])))"

# One window of a DriftPolicy's counts, in one query: these parts joined by ``or``.
WINDOW_FEATURE_BUCKETS: Final = f"sum by (feature, le) (increase({FEATURE_VALUE}_bucket{{selector}}{{range}}))"
WINDOW_FEATURE_CATEGORIES: Final = (
    f"sum by (feature, category) (increase({FEATURE_CATEGORY}_total{{selector}}{{range}}))"
)
WINDOW_FEEDBACK: Final = f"sum by (outcome) (increase({FEEDBACK}_total{{selector}}{{range}}))"
