"""Shared building blocks of the CRD models: the pydantic base classes and the
string types (names, versions, durations) every CRD uses.

The patterns here are the same strings as in ``crds/*.yaml``; the schema
parity test (tests/unit/test_crd_parity.py) fails when they differ.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Sequence
from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MODEL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SEMVER_PATTERN = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
# At most 7 digits a number and 32 characters: no duration a CR can hold overflows.
DURATION_PATTERN = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h|d))+$"
DURATION_MAX_LENGTH = 32
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
YEAR_SECONDS = 365 * 86400.0
NAMESPACE_LABEL = "namespace"
LABEL_NAME_PATTERN = r"^([a-zA-Z_][a-zA-Z0-9_]*)?$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
FEATURE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

ModelName = Annotated[str, Field(min_length=1, max_length=63, pattern=MODEL_NAME_PATTERN)]
Semver = Annotated[str, Field(max_length=63, pattern=SEMVER_PATTERN)]


def duration_seconds(text: str) -> float:
    """``"1h30m"`` -> 5400.0 (the text already matched :data:`DURATION_PATTERN`)."""
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def _within_a_year(text: str) -> str:
    if duration_seconds(text) > YEAR_SECONDS:
        raise ValueError(f"duration {text} is longer than a year (365d)")
    return text


def _at_least_a_second(text: str) -> str:
    if duration_seconds(text) < 1.0:
        raise ValueError(f"duration {text} is shorter than 1s")
    return text


def _positive(text: str) -> str:
    if duration_seconds(text) <= 0:
        raise ValueError(f"duration {text} must be longer than 0")
    return text


# Every duration: at most a year. Intervals and windows: at least 1s (a 0s
# interval would hot-loop; a 0s window is no PromQL range). Timeouts and
# deadlines: more than 0. The CRDs say the same with maxLength, the pattern
# and CEL rules for the floors; the ceiling is checked here (spec check).
Duration = Annotated[
    str, Field(max_length=DURATION_MAX_LENGTH, pattern=DURATION_PATTERN), AfterValidator(_within_a_year)
]
Interval = Annotated[Duration, AfterValidator(_at_least_a_second)]
Timeout = Annotated[Duration, AfterValidator(_positive)]
LabelName = Annotated[str, Field(max_length=128, pattern=LABEL_NAME_PATTERN)]
FeatureName = Annotated[str, Field(max_length=128, pattern=FEATURE_NAME_PATTERN)]
CheckName = Annotated[str, Field(max_length=63, pattern=MODEL_NAME_PATTERN)]
ObjectName = Annotated[str, Field(max_length=253)]
Uri = Annotated[str, Field(min_length=1, max_length=2048)]
PromQL = Annotated[str, Field(max_length=4096)]
Probability = Annotated[float, Field(gt=0, lt=1)]
# Timestamps arrive as RFC 3339 strings; everything else is strict.
Timestamp = Annotated[datetime.datetime, Field(strict=False)]

FeatureType = Literal["numeric", "categorical"]


def rfc3339(moment: datetime.datetime) -> str:
    """A timestamp as Kubernetes writes it (UTC, ``Z``)."""
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Sequence[_Named])


def _names_are_unique(items: N) -> N:
    names = [item.name for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate names {duplicates}")
    return items


# For the lists the CRDs declare as list-maps keyed by name.
UniqueNames = AfterValidator(_names_are_unique)


def strictly_ascending(values: Sequence[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, strict types (a string
    where a number belongs is an error, as at admission), unknown fields are
    errors (a typo in a GitOps repo must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        strict=True,
        extra="forbid",
        frozen=True,
    )


class StatusModel(BaseModel):
    """Base of every status model: camelCase on the wire; a field this version
    does not know (written by a newer operator) is ignored, not an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        strict=True,
        extra="ignore",
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON-ready dict to patch into ``.status``."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretRef(SpecModel):
    name: ObjectName


class PrometheusSource(SpecModel):
    url: str = Field(max_length=2048, pattern=r"^https?://[^\s]+$")
    auth_secret_ref: SecretRef | None = None
    insecure_skip_verify: bool = False
    ca_secret_ref: SecretRef | None = None
    timeout: Timeout = "10s"
    namespace_label: LabelName = NAMESPACE_LABEL
