"""ModelVersion (``mv``): one immutable trained artifact and its lifecycle.

Mirrors ``crds/modelversion.yaml``; used by the handlers to validate specs and
by later stages (registry, promotion, rollback) to read and write status.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from relearn.api.base import (
    FeatureName,
    FeatureType,
    ModelName,
    ObjectName,
    Semver,
    SpecModel,
    StatusModel,
    Timestamp,
    Uri,
    strictly_ascending,
)
from relearn.api.conditions import Condition

ModelVersionPhase = Literal["Registered", "Challenger", "Champion", "Archived", "RolledBack", "Rejected"]
HistoryAction = Literal["Registered", "Promoted", "Demoted", "RolledBack", "Rejected", "Archived"]
Unit = Annotated[float, Field(ge=0, le=1)]


class BaseModelRef(SpecModel):
    uri: Uri
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"


class Adapter(SpecModel):
    uri: Uri
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")


class PseudoLabelMetrics(SpecModel):
    """The comparison on held-out pseudo-labels: reported, never gated on."""

    accuracy: Unit | None = None
    champion_accuracy: Unit | None = None
    samples: Annotated[int, Field(ge=0)] | None = None


class OfflineMetrics(SpecModel):
    """The gate's figures, on ``samples`` held-out human corrections; pseudo-labels apart."""

    accuracy: Unit | None = None
    macro_f1: Unit | None = None
    loss: Annotated[float, Field(ge=0)] | None = None
    samples: Annotated[int, Field(ge=0)] | None = None
    champion_accuracy: Unit | None = None
    pseudo_labels: PseudoLabelMetrics | None = None


class FeatureBaseline(SpecModel):
    name: FeatureName
    type: FeatureType
    edges: Annotated[list[float], Field(max_length=128)] | None = None
    categories: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=128)] | None = None
    counts: Annotated[list[Annotated[float, Field(ge=0)]], Field(max_length=129)]

    @field_validator("edges")
    @classmethod
    def _edges_ascend(cls, edges: list[float] | None) -> list[float] | None:
        if edges and not strictly_ascending(edges):
            raise ValueError(f"edges must be strictly ascending, got {edges}")
        return edges

    @field_validator("counts")
    @classmethod
    def _one_count_per_bucket(cls, counts: list[float], info: ValidationInfo) -> list[float]:
        if info.data.get("type") == "numeric":
            buckets, what = len(info.data.get("edges") or []) + 1, "edge plus +Inf"
        else:
            buckets, what = len(info.data.get("categories") or []), "category"
        if len(counts) != buckets:
            raise ValueError(f"expected one count per {what} ({buckets}), got {len(counts)}")
        return counts


class ConfigMapKeyRef(SpecModel):
    name: ObjectName
    key: Annotated[str, Field(max_length=253)] = "baseline.json"


class Baseline(SpecModel):
    features: Annotated[list[FeatureBaseline], Field(max_length=256)] | None = None
    config_map_ref: ConfigMapKeyRef | None = None


class Lineage(SpecModel):
    drift_policy: ObjectName | None = None
    job: ObjectName | None = None
    dataset_uri: Annotated[str, Field(max_length=2048)] | None = None
    window_start: Timestamp | None = None
    window_end: Timestamp | None = None
    parent_version: Annotated[str, Field(max_length=63)] | None = None
    trigger_reasons: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=32)] | None = None


class ModelVersionSpec(SpecModel):
    model: ModelName
    version: Semver
    base_model: BaseModelRef
    adapter: Adapter | None = None
    metrics: OfflineMetrics | None = None
    baseline: Baseline | None = None
    source: Lineage | None = None
    declared_champion: bool = False


class HistoryEntry(StatusModel):
    time: Timestamp
    action: HistoryAction
    from_version: str | None = None
    to_version: str | None = None
    reason: str | None = None
    message: str | None = None
    triggered_by: str | None = None


class ModelVersionStatus(StatusModel):
    observed_generation: int | None = None
    phase: ModelVersionPhase | None = None
    champion_since: Timestamp | None = None
    conditions: list[Condition] | None = None
    history: Annotated[list[HistoryEntry], Field(max_length=50)] | None = None
