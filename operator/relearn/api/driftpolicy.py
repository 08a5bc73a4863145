"""DriftPolicy (``dp``): drift monitoring of one served model, and the
retraining Job and experiment it triggers.

Mirrors ``crds/driftpolicy.yaml``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from relearn.api.abexperiment import ExperimentTemplate
from relearn.api.base import (
    CheckName,
    Duration,
    FeatureName,
    FeatureType,
    Interval,
    ModelName,
    ObjectName,
    Probability,
    PrometheusSource,
    PromQL,
    SpecModel,
    StatusModel,
    Timeout,
    Timestamp,
    UniqueNames,
    Uri,
)
from relearn.api.conditions import Condition

ReferenceSource = Literal["Baseline", "Window"]
Correction = Literal["benjamini-hochberg", "bonferroni", "none"]
RetrainingOutcome = Literal["Requested", "Running", "Succeeded", "Failed"]
Quantity = int | str
DistributedBackend = Literal["auto", "job", "kubeflow"]
DistributedStrategy = Literal["ddp", "fsdp"]


class Reference(SpecModel):
    source: ReferenceSource = "Baseline"
    offset: Duration = "7d"


class Feature(SpecModel):
    name: FeatureName
    type: FeatureType = "numeric"
    query: PromQL | None = None


class Thresholds(SpecModel):
    psi: Annotated[float, Field(gt=0)] = 0.2
    jensen_shannon: Annotated[float, Field(gt=0, le=1)] = 0.1
    p_value: Probability = 0.01
    correction: Correction = "benjamini-hochberg"
    accuracy_drop: Probability = 0.05
    min_samples: Annotated[int, Field(ge=1)] = 500


class AccuracySource(SpecModel):
    enabled: bool = True
    correct_query: PromQL | None = None
    total_query: PromQL | None = None


class Trigger(SpecModel):
    consecutive_checks: Annotated[int, Field(ge=1)] = 3
    cooldown: Duration = "6h"
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=10)] = 1


class ResourceRequirements(SpecModel):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class Toleration(SpecModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Dataset(SpecModel):
    uri: Uri
    lookback: Duration = "30d"
    pseudo_label_confidence: Probability = 0.9


class LoraSettings(SpecModel):
    r: Annotated[int, Field(ge=1, le=512)] = 8
    alpha: Annotated[int, Field(ge=1)] = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=64)] | None = None
    epochs: Annotated[int, Field(ge=1, le=1000)] = 3
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.0002
    batch_size: Annotated[int, Field(ge=1)] = 16
    gradient_accumulation_steps: Annotated[int, Field(ge=1)] = 1


class Output(SpecModel):
    uri: Uri


class BaseModelUri(SpecModel):
    uri: Uri


class ClaimMount(SpecModel):
    name: CheckName
    claim_name: Annotated[str, Field(min_length=1, max_length=253)]
    mount_path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")]
    read_only: bool = False


class Distributed(SpecModel):
    """A retraining over several workers: an Indexed Job behind a headless
    Service with torchrun (``backend: job``), or a Kubeflow PyTorchJob
    (``kubeflow``; ``auto``: when the cluster serves that CRD)."""

    workers: Annotated[int, Field(ge=1, le=64)] = 2
    gpus_per_worker: Annotated[int, Field(ge=0, le=16)] = 0
    backend: DistributedBackend = "job"
    strategy: DistributedStrategy = "ddp"


class Retraining(SpecModel):
    enabled: bool = True
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account_name: ObjectName | None = None
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] | None = None
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    dataset: Dataset
    lora: LoraSettings = Field(default_factory=LoraSettings)
    output: Output
    active_deadline: Timeout = "8h"
    backoff_limit: Annotated[int, Field(ge=0, le=20)] = 2
    gate_tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.01
    base_model: BaseModelUri | None = None
    volumes: Annotated[list[ClaimMount], Field(max_length=8), UniqueNames] | None = None
    distributed: Distributed | None = None


class DriftPolicySpec(SpecModel):
    model: ModelName
    prometheus: PrometheusSource
    interval: Interval = "5m"
    window: Interval = "1h"
    reference: Reference = Field(default_factory=Reference)
    features: Annotated[list[Feature], Field(min_length=1, max_length=256), UniqueNames]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    accuracy: AccuracySource = Field(default_factory=AccuracySource)
    trigger: Trigger = Field(default_factory=Trigger)
    retraining: Retraining | None = None
    experiment: ExperimentTemplate | None = None


class FeatureScore(StatusModel):
    name: str
    psi: float | None = None
    psi_threshold: float | None = None
    jensen_shannon: float | None = None
    jensen_shannon_threshold: float | None = None
    p_value: float | None = None
    test: Literal["ks", "chi-square"] | None = None
    wasserstein: float | None = None
    reference_samples: float | None = None
    current_samples: float | None = None
    drifted: bool | None = None
    note: str | None = None


class ConceptDrift(StatusModel):
    reference_accuracy: float | None = None
    current_accuracy: float | None = None
    drop: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    reference_samples: float | None = None
    current_samples: float | None = None
    drifted: bool | None = None


class RetrainingRecord(StatusModel):
    job: str | None = None
    sequence: int | None = None
    requested_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    reasons: list[str] | None = None
    outcome: RetrainingOutcome | None = None
    model_version: str | None = None


class DriftPolicyStatus(StatusModel):
    observed_generation: int | None = None
    last_check_time: Timestamp | None = None
    consecutive_drifted_checks: int | None = None
    monitored_version: str | None = None
    reference: str | None = None
    features: list[FeatureScore] | None = None
    concept: ConceptDrift | None = None
    last_retraining: RetrainingRecord | None = None
    conditions: list[Condition] | None = None
