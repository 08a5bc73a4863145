"""Zero-downtime switches: may traffic move to a backend now, has the data
plane applied the route, and may a backend that left the route be deleted.

Pure functions of what the API server says (objects as dicts) and of time;
:mod:`relearn.handlers.experiments` (its traffic and rollback modules)
read the objects, call these and act. The order they enforce:

1. weight moves to a backend only once its Service has ready endpoints
   (:func:`ready_endpoints`), not when its Deployment says available;
2. a backend leaves the route first; it is deleted only once the data plane
   has applied that route (:func:`route_applied`, where the provider reports
   it) and the drain period has passed since (:func:`drain_step`), so
   requests the proxy had already sent it finish;
3. the drain's start and the moment the route was seen applied are kept in
   the experiment's status, so an operator restart neither deletes early nor
   starts the wait over.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relearn.errors import InvalidSetting

# How long to wait for the data plane to report the route applied before the
# backend is deleted anyway (with a Warning): a gateway that never reports
# must not keep a removed challenger's pods (and GPUs) forever.
ROUTE_TIMEOUT = datetime.timedelta(minutes=5)
UTC = datetime.UTC


def _generation(value: Any) -> int | None:
    """An integer generation from what an object says (Istio writes strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _condition(conditions: Any, type_: str) -> Mapping[str, Any] | None:
    if not isinstance(conditions, Sequence) or isinstance(conditions, str):
        return None
    return next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == type_), None)


def route_applied(route: Mapping[str, Any]) -> bool | None:
    """Whether the data plane has applied the route's current spec.

    Gateway API: every entry of ``status.parents`` has ``Accepted=True`` with
    ``observedGeneration`` at least the route's ``metadata.generation`` (and a
    ``ResolvedRefs`` condition, when present, observed at that generation
    too). Istio with config status on: ``Reconciled=True`` and
    ``status.observedGeneration`` at least the generation. None when the
    route carries no such status (the provider does not report: nothing to
    wait for) or says nothing usable about its generation."""
    if not isinstance(route, Mapping):
        return None
    metadata = route.get("metadata")
    generation = _generation(metadata.get("generation")) if isinstance(metadata, Mapping) else None
    status = route.get("status")
    if generation is None or not isinstance(status, Mapping):
        return None
    parents = status.get("parents")
    if isinstance(parents, Sequence) and not isinstance(parents, str) and parents:
        for parent in parents:
            if not isinstance(parent, Mapping):
                return False
            accepted = _condition(parent.get("conditions"), "Accepted")
            if accepted is None or accepted.get("status") != "True":
                return False
            seen = _generation(accepted.get("observedGeneration"))
            if seen is None or seen < generation:
                return False
            resolved = _condition(parent.get("conditions"), "ResolvedRefs")
            if resolved is not None:
                seen = _generation(resolved.get("observedGeneration"))
                if seen is None or seen < generation:
                    return False
        return True
    reconciled = _condition(status.get("conditions"), "Reconciled")
    if reconciled is not None:
        seen = _generation(status.get("observedGeneration"))
        return reconciled.get("status") == "True" and seen is not None and seen >= generation
    return None


def ready_endpoints(slices: Sequence[Mapping[str, Any]], endpoints: Mapping[str, Any] | None) -> int:
    """How many ready addresses a Service has: from its EndpointSlices
    (``discovery.k8s.io/v1``; an endpoint whose ``conditions.ready`` is
    absent counts as ready, as the API defines) when there are any, else from
    its ``Endpoints`` (``subsets[].addresses``, ports present). Anything
    malformed counts as not ready."""
    count = 0
    found_slice = False
    for piece in slices if isinstance(slices, Sequence) else ():
        if not isinstance(piece, Mapping):
            continue
        found_slice = True
        ports = piece.get("ports")
        if isinstance(ports, Sequence) and not ports:
            continue  # a slice without ports serves nothing
        for endpoint in piece.get("endpoints") or ():
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions")
            ready = conditions.get("ready", True) if isinstance(conditions, Mapping) else True
            addresses = endpoint.get("addresses")
            if ready is not False and isinstance(addresses, Sequence) and not isinstance(addresses, str):
                count += len(addresses)
    if found_slice or not isinstance(endpoints, Mapping):
        return count
    for subset in endpoints.get("subsets") or ():
        if not isinstance(subset, Mapping) or not subset.get("ports"):
            continue
        addresses = subset.get("addresses")
        if isinstance(addresses, Sequence) and not isinstance(addresses, str):
            count += sum(1 for a in addresses if isinstance(a, Mapping))
    return count


@dataclass(frozen=True)
class Drain:
    """A backend that left the route and waits to be deleted: when it left,
    and when the data plane was first seen to have applied that route."""

    since: datetime.datetime
    applied: datetime.datetime | None = None


@dataclass(frozen=True)
class Removal:
    """The verdict of one look at a draining backend."""

    remove: bool
    wait: float  # seconds until the next look (0 when it may go now)
    reason: str  # Draining | RouteNotApplied | Drained | RouteTimedOut
    message: str


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def drain_step(
    drain: Drain,
    now: datetime.datetime,
    period: datetime.timedelta,
    applied: bool | None,
    timeout: datetime.timedelta = ROUTE_TIMEOUT,
) -> tuple[Drain, Removal]:
    """The drain as it stands after this look, and whether the backend may go.

    The drain period counts from the moment the route was first seen applied
    (``applied`` True now), or from when the backend left the route when the
    provider reports nothing (``applied`` None). A route never reported
    applied within ``timeout`` of leaving lets the backend go anyway
    (reason RouteTimedOut). A clock that went backwards counts as no time
    passed. Raises :class:`InvalidSetting` for a negative or non-finite period."""
    if not isinstance(period, datetime.timedelta) or period < datetime.timedelta(0):
        raise InvalidSetting(f"rollback.drain must not be negative (got {period})")
    if not isinstance(timeout, datetime.timedelta) or timeout < datetime.timedelta(0):
        raise InvalidSetting(f"the route timeout must not be negative (got {timeout})")
    now, since = _aware(now), _aware(drain.since)
    seen = _aware(drain.applied) if drain.applied is not None else None
    if seen is None and applied is not False:
        seen = min(now, since) if applied is None else max(now, since)
    state = Drain(since, seen)
    if seen is None:
        waited = max(datetime.timedelta(0), now - since)
        if waited >= timeout:
            return state, Removal(
                True,
                0.0,
                "RouteTimedOut",
                f"the data plane has not reported the route applied {timeout.total_seconds():.0f}s after "
                "the backend left it: removing it anyway",
            )
        left = min(1.0, (timeout - waited).total_seconds())
        return state, Removal(False, max(0.1, left), "RouteNotApplied", "waiting for the data plane to apply the route")
    drained = max(datetime.timedelta(0), now - seen)
    if drained >= period:
        return state, Removal(True, 0.0, "Drained", f"drained for {drained.total_seconds():.1f}s")
    left = (period - drained).total_seconds()
    return state, Removal(
        False, max(0.1, left), "Draining", f"the route is applied; draining in-flight requests for {left:.1f}s more"
    )


def route_drift(expected: int | None, challenger_present: bool, actual: int) -> str | None:
    """Why the route differs from what the operator set during an experiment
    (None when it does not): the challenger's backend missing, or its weight
    other than ``expected`` percent. ``expected`` None: nothing set yet."""
    if expected is None:
        return None
    if not challenger_present:
        return f"the challenger's backend is missing from the route (expected at {expected}%)"
    if actual != expected:
        return f"the challenger's weight is {actual}%, not the {expected}% the experiment set"
    return None
