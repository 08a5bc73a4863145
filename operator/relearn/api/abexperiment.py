"""ABExperiment (``abx``): champion vs challenger on live traffic.

Mirrors ``crds/abexperiment.yaml``. :class:`ExperimentTemplate` is the part a
DriftPolicy carries to start experiments for the versions it trains, so both
kinds share one definition of workload, routing, traffic, analysis, promotion
and rollback.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from relearn.api.base import (
    CheckName,
    Duration,
    Interval,
    ModelName,
    ObjectName,
    Probability,
    PrometheusSource,
    PromQL,
    Semver,
    SpecModel,
    StatusModel,
    Timeout,
    Timestamp,
    UniqueNames,
    strictly_ascending,
)
from relearn.api.conditions import Condition

RoutingProvider = Literal["gateway-api", "istio", "replicas"]
TestMethod = Literal["sequential", "fixed"]
PromotionRule = Literal["Better", "BetterByMinImprovement", "BetterAndObservedMinImprovement"]
PromotionMode = Literal["Automatic", "Manual"]
ExperimentPhase = Literal[
    "Pending", "Progressing", "Promoting", "Promoted", "Rejected", "Inconclusive", "Aborted", "RolledBack", "Failed"
]
TERMINAL_PHASES: tuple[ExperimentPhase, ...] = (
    "Promoted",
    "Rejected",
    "Inconclusive",
    "Aborted",
    "RolledBack",
    "Failed",
)
DecisionOutcome = Literal["Continue", "Promote", "Reject", "Inconclusive", "Abort", "RollBack"]
WebhookFormat = Literal["json", "slack"]
HealthMethod = Literal["sequential", "threshold"]
MAX_MEASUREMENTS = 20  # looks kept in status.measurements, newest last
Percent = Annotated[int, Field(ge=0, le=100)]


class Workload(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    version_env: Annotated[str, Field(max_length=253)] = "RELEARN_MODEL_VERSION"


COOKIE_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an HTTP token (RFC 9110)
HEADER_NAME_PATTERN = r"^[A-Za-z0-9-]+$"


class Stickiness(SpecModel):
    """Each client stays on the version it was first sent to: the route marks
    each arm's responses (a cookie, or a response header the client sends
    back) and sends requests that carry a mark to that arm."""

    cookie: Annotated[str, Field(max_length=64, pattern=COOKIE_NAME_PATTERN)] | None = None
    header: Annotated[str, Field(max_length=128, pattern=HEADER_NAME_PATTERN)] | None = None
    max_age: Duration = "24h"

    @model_validator(mode="after")
    def _one_mark(self) -> Stickiness:
        if (self.cookie is None) == (self.header is None):
            raise ValueError("set exactly one of cookie or header")
        return self


class Routing(SpecModel):
    provider: RoutingProvider = "gateway-api"
    target: ObjectName | None = None
    stickiness: Stickiness | None = None


class Shadow(SpecModel):
    """A first stage in which the challenger answers mirrored copies of
    requests (its answers discarded) and is judged on the same labelled
    requests as the champion (a paired test)."""

    weight: Annotated[int, Field(ge=1, le=100)] = 100
    duration: Duration | None = None
    pairs: Annotated[int, Field(ge=1)] | None = None
    live: bool = True

    @model_validator(mode="after")
    def _ends(self) -> Shadow:
        if self.duration is None and self.pairs is None:
            raise ValueError("a shadow stage needs duration or pairs (or both)")
        return self


class Traffic(SpecModel):
    weight: Percent = 10
    steps: Annotated[list[Percent], Field(max_length=20)] | None = None
    shadow: Shadow | None = None

    @field_validator("steps")
    @classmethod
    def _steps_ascend_to_weight(cls, steps: list[int] | None, info: ValidationInfo) -> list[int] | None:
        weight = info.data.get("weight")
        if steps and not strictly_ascending(steps):
            raise ValueError(f"steps must be strictly ascending, got {steps}")
        if steps and weight is not None and steps[-1] > weight:
            raise ValueError(f"steps must not exceed weight {weight}, got {steps}")
        return steps


class MetricCheck(SpecModel):
    """A PromQL query whose value must stay at or below ``max``."""

    name: CheckName
    query: PromQL
    max: float


class SampleRatio(SpecModel):
    p_value: Probability = 0.001


class Analysis(SpecModel):
    interval: Interval = "1m"
    success_query: PromQL | None = None
    total_query: PromQL | None = None
    method: TestMethod = "sequential"
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05  # the decision core refuses 0.5 and above
    min_samples_per_arm: Annotated[int, Field(ge=1)] = 1000
    min_improvement: Probability = 0.02
    promote_when: PromotionRule = "Better"
    max_duration: Duration = "7d"
    guardrails: Annotated[list[MetricCheck], Field(max_length=16), UniqueNames] | None = None
    sample_ratio: SampleRatio = Field(default_factory=SampleRatio)


class Rollback(SpecModel):
    enabled: bool = True
    interval: Interval = "10s"
    failure_threshold: Annotated[int, Field(ge=1)] = 2
    check_window: Interval = "1m"
    fail_on_no_data: bool = False
    bake_time: Duration = "10m"
    drain: Duration = "5s"
    window: Duration = "24h"
    checks: Annotated[list[MetricCheck], Field(max_length=16), UniqueNames] | None = None
    method: HealthMethod = "sequential"
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.0001
    bake_interval: Interval = "2s"


class SecretKeyRef(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(max_length=253)] = "url"


class Webhook(SpecModel):
    name: CheckName
    format: WebhookFormat = "json"
    url_secret_ref: SecretKeyRef
    timeout: Timeout = "5s"


class Notifications(SpecModel):
    webhooks: Annotated[list[Webhook], Field(max_length=8), UniqueNames] | None = None


class ExperimentSettings(SpecModel):
    """Everything about how an experiment runs, whoever starts it."""

    workload: Workload
    routing: Routing = Field(default_factory=Routing)
    traffic: Traffic = Field(default_factory=Traffic)
    analysis: Analysis = Field(default_factory=Analysis)
    promotion: PromotionMode = "Automatic"
    notifications: Notifications | None = None
    rollback: Rollback = Field(default_factory=Rollback)

    @model_validator(mode="after")
    def _shadow_is_possible(self) -> ExperimentSettings:
        if self.traffic.shadow is None:
            return self
        if self.routing.provider == "replicas":
            raise ValueError(
                "routing provider replicas cannot mirror requests: traffic.shadow needs gateway-api or istio"
            )
        if self.analysis.promote_when == "BetterByMinImprovement":
            raise ValueError("traffic.shadow's paired test cannot use analysis.promoteWhen BetterByMinImprovement")
        if self.analysis.method == "fixed" and self.traffic.shadow.pairs is None:
            raise ValueError("traffic.shadow with analysis.method fixed needs pairs (the exact test's planned sample)")
        return self


class ABExperimentSpec(ExperimentSettings):
    model: ModelName
    champion: Semver | None = None
    challenger: Semver
    prometheus: PrometheusSource | None = None

    @field_validator("challenger")
    @classmethod
    def _challenger_is_not_champion(cls, challenger: str, info: ValidationInfo) -> str:
        if challenger == info.data.get("champion"):
            raise ValueError(f"challenger must differ from champion (both {challenger})")
        return challenger


class ExperimentTemplate(ExperimentSettings):
    enabled: bool = True


class ArmWeights(StatusModel):
    champion: int | None = None
    challenger: int | None = None


class ArmMeasurement(StatusModel):
    samples: float | None = None
    successes: float | None = None
    rate: float | None = None


class Arms(StatusModel):
    champion: ArmMeasurement | None = None
    challenger: ArmMeasurement | None = None


class Statistic(StatusModel):
    method: TestMethod | None = None
    lift: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    p_value: float | None = None
    samples_needed: int | None = None
    samples_needed_p90: int | None = None
    expected_time_to_decision: str | None = None
    expected_time_to_decision_p90: str | None = None


Stage = Literal["Shadow", "Live"]


class ShadowStatus(StatusModel):
    """The shadow stage's paired counts and test, as of the last look."""

    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    mirror: int | None = None
    pairs: float | None = None
    champion_only: float | None = None
    challenger_only: float | None = None
    lift: float | None = None
    p_value: float | None = None
    outcome: str | None = None


class Decision(StatusModel):
    outcome: DecisionOutcome | None = None
    reason: str | None = None
    message: str | None = None
    time: Timestamp | None = None


class Workloads(StatusModel):
    champion: str | None = None
    challenger: str | None = None


HealthResult = Literal["Healthy", "Failing", "NoData", "NotEnoughData"]


class CheckStatus(StatusModel):
    name: str
    value: float | None = None
    max: float | None = None
    samples: float | None = None
    result: HealthResult
    errors_total: float | None = None
    samples_total: float | None = None
    log_evidence: float | None = None


class Health(StatusModel):
    last_check_time: Timestamp | None = None
    consecutive_failures: int | None = None
    previous_champion_warm: bool | None = None
    checks: Annotated[list[CheckStatus], Field(max_length=20)] | None = None


class GuardrailReading(StatusModel):
    name: str
    value: float | None = None


class Measurement(StatusModel):
    time: Timestamp
    champion_samples: float | None = None
    challenger_samples: float | None = None
    champion_requests: float | None = None
    challenger_requests: float | None = None
    lift: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    p_value: float | None = None
    srm_p_value: float | None = None
    guardrails: Annotated[list[GuardrailReading], Field(max_length=16)] | None = None


class DrainStatus(StatusModel):
    backend: str | None = None
    since: Timestamp | None = None
    applied_time: Timestamp | None = None


class ABExperimentStatus(StatusModel):
    observed_generation: int | None = None
    phase: ExperimentPhase | None = None
    stage: Stage | None = None
    champion: str | None = None
    start_time: Timestamp | None = None
    promotion_time: Timestamp | None = None
    rollback_target: str | None = None
    drain: DrainStatus | None = None
    health: Health | None = None
    workloads: Workloads | None = None
    weights: ArmWeights | None = None
    shadow: ShadowStatus | None = None
    weights_since: Timestamp | None = None
    arms: Arms | None = None
    statistic: Statistic | None = None
    decision: Decision | None = None
    conditions: list[Condition] | None = None
    measurements: Annotated[list[Measurement], Field(max_length=MAX_MEASUREMENTS)] | None = None
