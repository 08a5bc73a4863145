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
# Read back by `relearn report` (relearn.reporting) from Prometheus.
DRIFT_SCORE_METRIC = "relearn_drift_score"
EXPERIMENT_WEIGHT_METRIC = "relearn_experiment_challenger_weight"

DRIFT_SCORE = Gauge(
    DRIFT_SCORE_METRIC,
    "Last drift score of a feature (psi, jensenShannon, pValue after correction).",
    ["namespace", "policy", "feature", "score"],
)
RETRAININGS = Counter(
    "relearn_retrainings_total",
    "Retraining Jobs by outcome (started, succeeded, failed).",
    ["outcome"],
)
DECISIONS = Counter(
    "relearn_decisions_total",
    "Decisions the operator took, by kind (retraining, registration, experiment, rollback) and outcome.",
    ["kind", "outcome"],
)
EXPERIMENT_PHASE = Gauge(
    "relearn_experiment_phase",
    "1 for an ABExperiment's current phase, 0 for the others.",
    ["namespace", "experiment", "phase"],
)
EXPERIMENT_WEIGHT = Gauge(
    EXPERIMENT_WEIGHT_METRIC,
    "Challenger's share of traffic (%) as the router reports it.",
    ["namespace", "experiment"],
)
WEBHOOKS = Counter(
    "relearn_webhook_notifications_total",
    "Decision notifications by result (delivered, failed).",
    ["result"],
)
# One A/B look's statistic (relearn.handlers.experiments.analysis), so Grafana plots the confidence sequence.
EXPERIMENT_LIFT = Gauge(
    "relearn_experiment_lift",
    "Challenger rate minus champion rate at the last look.",
    ["namespace", "experiment"],
)
EXPERIMENT_LIFT_LOWER = Gauge(
    "relearn_experiment_lift_lower_bound",
    "Lower bound of the lift's confidence interval (always-valid with method sequential) at the last look.",
    ["namespace", "experiment"],
)
EXPERIMENT_LIFT_UPPER = Gauge(
    "relearn_experiment_lift_upper_bound",
    "Upper bound of the lift's confidence interval at the last look.",
    ["namespace", "experiment"],
)
EXPERIMENT_SAMPLES = Gauge(
    "relearn_experiment_samples",
    "Labelled samples (feedback) per arm (champion, challenger) since the challenger took traffic.",
    ["namespace", "experiment", "arm"],
)
EXPERIMENT_P_VALUE = Gauge(
    "relearn_experiment_p_value",
    "The test's p-value at the last look (always-valid with method sequential).",
    ["namespace", "experiment"],
)
EXPERIMENT_SAMPLE_RATIO_P_VALUE = Gauge(
    "relearn_experiment_sample_ratio_p_value",
    "The sample-ratio guard's chi-square p-value at the last judged look (requests per arm vs reported weights).",
    ["namespace", "experiment"],
)
EVENT_LOOP_LAG = Histogram(
    "relearn_event_loop_lag_seconds",
    "How late kopf's event loop ran a timer (every 0.5 s): time every handler and watch waited for the loop.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
