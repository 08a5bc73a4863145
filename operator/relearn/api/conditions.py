"""Status conditions: the model and the helpers that set them.

Conditions follow the Kubernetes convention (``metav1.Condition``): keyed by
``type``, ``lastTransitionTime`` moves only when ``status`` changes, and each
carries the ``observedGeneration`` it was computed from. Handlers in every
kind use :func:`set_condition`; nothing else edits the list.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from relearn.api.base import StatusModel, Timestamp
from relearn.api.names import ConditionType, EventType

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    """One condition a turn sets (by type, on the freshest status)."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class EventRecord:
    """One Event a turn posts (before its status write)."""

    type: EventType
    reason: str
    message: str


class Condition(StatusModel):
    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str | None = Field(default=None, max_length=1024)
    message: str | None = Field(default=None, max_length=32768)
    last_transition_time: Timestamp | None = None
    observed_generation: int | None = None


def parse_conditions(raw: Iterable[Mapping[str, Any]] | None) -> list[Condition]:
    """Conditions as found in an object's status (absent = none)."""
    return [Condition.model_validate(item) for item in raw or ()]


def get_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Iterable[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime.datetime,
) -> list[Condition]:
    """Return the conditions with ``type_`` set, others untouched and in order.

    The transition time is kept when the status does not change, so users see
    since when a condition has held, not when it was last recomputed.
    """
    previous = get_condition(conditions, type_)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status and previous.last_transition_time
        else now
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    result = [updated if c.type == type_ else c for c in conditions]
    if previous is None:
        result.append(updated)
    return result
