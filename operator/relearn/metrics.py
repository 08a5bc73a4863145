"""The operator's own Prometheus metrics (not the model servers' metric
contract, which lives in ``relearn.serving``). Served on ``--metrics-port``
and scraped through the chart's metrics Service.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SPEC_CHECKS = Counter(
    "relearn_spec_checks_total",
    "Spec checks by kind and result (valid or invalid).",
    ["kind", "result"],
)
HANDLER_SECONDS = Histogram(
    "relearn_handler_duration_seconds",
    "Time spent in a reconcile handler.",
    ["kind", "handler"],
)
DRIFT_CHECKS = Counter(
    "relearn_drift_checks_total",
    "DriftPolicy checks by result (drifted, no-drift, not-enough-data, no-decision).",
    ["result"],
)
DRIFT_SCORE = Gauge(
    "relearn_drift_score",
    "Last drift score of a feature (psi, jensenShannon, pValue after correction).",
    ["namespace", "policy", "feature", "score"],
)
RETRAININGS = Counter(
    "relearn_retrainings_total",
    "Retraining Jobs by outcome (started, succeeded, failed).",
    ["outcome"],
)
