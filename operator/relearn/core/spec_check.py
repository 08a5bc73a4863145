"""The spec check every Relearn kind goes through on create, update and
operator restart: is the spec valid, and what do status and Events say.

Called by ``relearn.handlers.spec``; pure, so the operator's answer to any
spec can be tested without a cluster. The CRD schema rejects most bad input at
admission; this is the second line for what a schema cannot say (cross-field
rules) and for clusters whose CRDs are older than the operator.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from relearn.api import Kind
from relearn.api.base import SpecModel
from relearn.api.conditions import Condition, ConditionStatus, EventRecord, parse_conditions, set_condition
from relearn.api.names import EventType
from relearn.api.schema import field_path

READY = "Ready"
INVALID_SPEC = "InvalidSpec"
SPEC_ACCEPTED = "SpecAccepted"


@dataclass(frozen=True)
class SpecCheck:
    """Outcome of checking one object's spec."""

    spec: SpecModel | None
    errors: tuple[str, ...]
    status_patch: dict[str, Any]
    event: EventRecord | None

    @property
    def valid(self) -> bool:
        return self.spec is not None


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> tuple[str, ...]:
    """One ``field: message`` line per problem, fields named as in the YAML."""
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-after"))]
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{field_path([prefix, *loc])}: {message}")
    return tuple(lines)


def summarize(kind: Kind, spec: SpecModel) -> str:
    """A one-line, human description of what a valid object declares."""
    data = spec.model_dump(by_alias=True)
    if kind.kind == "ModelVersion":
        return f"model {data['model']} version {data['version']} registered"
    if kind.kind == "DriftPolicy":
        retrains = "retrains on drift" if data.get("retraining") else "reports drift only"
        return f"monitors model {data['model']}: {len(data['features'])} features every {data['interval']}, {retrains}"
    return (
        f"model {data['model']}: challenger {data['challenger']} vs "
        f"{data.get('champion') or 'the current champion'}, {data['analysis']['method']} test"
    )


def first_phase(body: Mapping[str, Any], versions: Sequence[Mapping[str, Any]]) -> str | None:
    """The phase a ModelVersion starts its life in, or None when it has one already.

    The version declared champion from Git (a fresh install) is ``Champion``
    while its model has no Champion yet; every other version is
    ``Registered``. ``versions`` are the model's ModelVersions as stored.
    """
    if (body.get("status") or {}).get("phase"):
        return None
    name = (body.get("metadata") or {}).get("name")
    spec = body.get("spec") or {}
    has_champion = any(
        (v.get("status") or {}).get("phase") == "Champion"
        for v in versions
        if (v.get("metadata") or {}).get("name") != name and (v.get("spec") or {}).get("model") == spec.get("model")
    )
    return "Champion" if spec.get("declaredChampion") is True and not has_champion else "Registered"


def check_spec(
    kind: Kind, body: Mapping[str, Any], now: datetime.datetime, versions: Sequence[Mapping[str, Any]] = ()
) -> SpecCheck:
    """Validate ``body['spec']`` and say what status and Events should show.

    An Event is posted once per generation: when the operator restarts and sees
    an object whose ``observedGeneration`` is current, it says nothing new. A
    valid ModelVersion without a phase gets its first one (:func:`first_phase`,
    from the model's ``versions``), so `kubectl get mv` shows it from the start.
    """
    generation = body.get("metadata", {}).get("generation")
    status = body.get("status") or {}
    conditions: list[Condition] = parse_conditions(status.get("conditions"))
    first_look = status.get("observedGeneration") != generation
    spec: SpecModel | None
    try:
        spec = kind.spec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        spec, errors = None, describe_validation_error(error)
    else:
        errors = ()
    ready: ConditionStatus
    event_type: EventType
    if spec is None:
        ready, reason, event_type, message = "False", INVALID_SPEC, "Warning", "; ".join(errors)
    else:
        ready, reason, event_type, message = "True", SPEC_ACCEPTED, "Normal", summarize(kind, spec)
    conditions = set_condition(
        conditions,
        type_=READY,
        status=ready,
        reason=reason,
        message=message,
        observed_generation=generation,
        now=now,
    )
    event = EventRecord(event_type, reason, message) if first_look else None
    status_patch: dict[str, Any] = {"observedGeneration": generation, "conditions": [c.to_wire() for c in conditions]}
    phase = first_phase(body, versions) if kind.kind == "ModelVersion" and spec is not None else None
    if phase is not None:
        status_patch["phase"] = phase
    return SpecCheck(spec, errors, status_patch, event)
