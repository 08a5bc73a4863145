"""Waiting for the API to reach a state, by watching rather than sleeping.
Used by the tests (through :mod:`.testing`) and by ``relearn demo``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import watch


def condition(obj: dict[str, Any], type_: str, status: str = "True") -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == status for c in (obj.get("status") or {}).get("conditions") or ()
    )


def established(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda crd: crd["metadata"]["name"] == name and condition(crd, "Established")


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30,
    what: str = "",
    **kwargs: Any,
) -> dict[str, Any]:
    """The first object (as a dict) from ``list_fn``'s list or watch that satisfies ``predicate``.

    Lists once, then watches from that list's resourceVersion: an awaited
    event, not a sleep. Raises TimeoutError naming what it waited for
    (``what``, else the list call and its arguments).
    """
    listing = list_fn(_preload_content=False, **kwargs)
    data = yaml.safe_load(listing.data)
    for item in data.get("items") or ():
        if predicate(item):
            return dict(item)
    stream = watch.Watch()
    try:
        for event in stream.stream(
            list_fn,
            resource_version=data["metadata"]["resourceVersion"],
            timeout_seconds=max(1, int(timeout)),
            _request_timeout=timeout + 5,
            **kwargs,
        ):
            obj = event["raw_object"]
            if event["type"] in ("ADDED", "MODIFIED") and predicate(obj):
                return dict(obj)
    finally:
        stream.stop()
    where = ", ".join(f"{key}={value}" for key, value in kwargs.items() if not key.startswith("_"))
    awaited = what or f"an object of {getattr(list_fn, '__name__', 'the list')}({where}) satisfying the condition"
    raise TimeoutError(f"waited {timeout:.0f}s for {awaited}; it did not happen")
