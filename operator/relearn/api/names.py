"""The names users see on Relearn's objects besides the CRD fields: the
annotations people (or the ``relearn`` CLI) set and the operator reads, and
the status condition types. One home each, imported by the handlers, the
core and the CLI alike, so a name cannot differ between who writes it and
who reads it.
"""

from __future__ import annotations

from typing import Final, Literal

# -- annotations on an ABExperiment (set by relearn abort|promote|rollback) ---------------
ABORT_ANNOTATION: Final = "relearn.dev/abort"
APPROVE_ANNOTATION: Final = "relearn.dev/approve"
ROLLBACK_ANNOTATION: Final = "relearn.dev/rollback"
REQUESTED_BY_ANNOTATION: Final = "relearn.dev/requested-by"  # who asked, set by the relearn CLI
# -- annotations the operator keeps on workloads --------------------------------------------
WARM_REPLICAS_ANNOTATION: Final = "relearn.dev/warm-replicas"  # a released champion's replicas

# -- Event types ------------------------------------------------------------------------------
EventType = Literal["Normal", "Warning"]

# -- condition types --------------------------------------------------------------------------
ConditionType = Literal[
    "Ready",
    "Stalled",
    "MetricsAvailable",
    "Drifted",
    "Retraining",
    "ChallengerReady",
    "Inconclusive",
    "AwaitingApproval",
    "NotificationsAllowed",
    "Healthy",
    "RollingBack",
    "SampleRatioMismatch",
]
STALLED: Final = "Stalled"  # a turn that did not finish (relearn.handlers.guard)
METRICS_AVAILABLE: Final = "MetricsAvailable"
DRIFTED: Final = "Drifted"
RETRAINING: Final = "Retraining"
CHALLENGER_READY: Final = "ChallengerReady"
INCONCLUSIVE: Final = "Inconclusive"
AWAITING_APPROVAL: Final = "AwaitingApproval"
NOTIFICATIONS_ALLOWED: Final = "NotificationsAllowed"
HEALTHY: Final = "Healthy"
ROLLING_BACK: Final = "RollingBack"
SAMPLE_RATIO_MISMATCH: Final = "SampleRatioMismatch"
