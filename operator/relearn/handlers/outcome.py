"""What one turn of a daemon (drift check, experiment analysis) writes:
condition updates, the rest of status and Events, applied the same way by
every handler (Events first, then one read-modify-write of status)."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from relearn.adapters.kube import KubeClient
from relearn.api.conditions import (
    Condition,
    ConditionStatus,
    ConditionUpdate,
    EventRecord,
    parse_conditions,
    set_condition,
)
from relearn.api.names import STALLED, ConditionType, EventType
from relearn.errors import APIError


@dataclass(frozen=True)
class Notification:
    """The decision a turn announces to webhooks, after its status write."""

    decision: str
    message: str


@dataclass
class Outcome:
    """What one check writes: condition updates, the rest of status, Events
    and the webhook notification."""

    conditions: list[ConditionUpdate] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # camelCase, built from the api models' to_wire()
    events: list[EventRecord] = field(default_factory=list)
    notification: Notification | None = None

    def condition(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str) -> None:
        """Set a condition (as given: set_condition applies the CRD's message limit)."""
        self.conditions.append(ConditionUpdate(type_, status, reason, message))

    def event(self, type_: EventType, reason: str, message: str) -> None:
        """Post an Event."""
        self.events.append(EventRecord(type_, reason, message))

    def notify(self, decision: str, message: str) -> None:
        """Announce a decision to the webhooks."""
        self.notification = Notification(decision, message)

    def state(self, type_: ConditionType) -> ConditionStatus | None:
        """The status this turn sets for a condition type (the last one set), if any."""
        return next((c.status for c in reversed(self.conditions) if c.type == type_), None)


def apply(
    outcome: Outcome, generation: int | None, now: datetime.datetime
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The status change for :meth:`KubeClient.update_status`: conditions set
    by type on the freshest status (others, such as Ready, untouched)."""

    def change(status: dict[str, Any]) -> dict[str, Any]:
        conditions: list[Condition] = parse_conditions(status.get("conditions"))
        for update in outcome.conditions:
            conditions = set_condition(
                conditions,
                type_=update.type,
                status=update.status,
                reason=update.reason,
                message=update.message,
                observed_generation=generation,
                now=now,
            )
        return {**outcome.status, "conditions": [c.to_wire() for c in conditions]}

    return change


def event_basis(status: Mapping[str, Any] | None) -> str:
    """What a turn's Events are about: the status it started from. A turn
    redone from the same status (its write was lost, or the operator was
    killed before it) posts Events of the same names, which the API refuses
    as duplicates: Events are neither lost (they go before the status
    write) nor doubled."""
    # The guard's own Stalled condition is written while a turn fails: not part of what it was about.
    kept = {**(status or {})}
    kept["conditions"] = [c for c in kept.get("conditions") or () if (c or {}).get("type") != STALLED]
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


async def post_event(
    kube: KubeClient,
    body: Mapping[str, Any],
    type_: EventType,
    reason: str,
    message: str,
    logger: kopf.Logger,
    basis: str | None = None,
) -> None:
    """Post an Event (named from ``basis`` and the reason when given); an API
    refusal is logged, an unreachable API fails the turn (it is redone)."""
    try:
        await kube.post_event(body, type_, reason, message, key=basis)
    except APIError as error:
        logger.warning("event %s not posted: %s", reason, error.http_reason)


async def post_events(
    kube: KubeClient, body: Mapping[str, Any], outcome: Outcome, logger: kopf.Logger, basis: str
) -> None:
    """A turn's Events, in order, named from ``basis`` (:func:`event_basis`):
    posted before its status write, so a turn cut short is redone with the
    same Events, which the API refuses as duplicates."""
    for event in outcome.events:
        await post_event(kube, body, event.type, event.reason, event.message, logger, basis)
