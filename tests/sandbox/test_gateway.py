"""The sandbox gateway as a data plane that learns of changes late: with a
propagation lag it routes by the HTTPRoutes and endpoints of ``lag``
seconds ago, and it reports each route it has applied in ``status.parents``
(Accepted, ResolvedRefs, observedGeneration) as a real implementation does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from relearn.core.switching import route_applied
from relearn_sandbox.gateway import Gateway
from relearn_sandbox.store import Store

GROUP = "gateway.networking.k8s.io"


def route(*refs: tuple[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "model", "namespace": "ns"},
        "spec": {"rules": [{"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in refs]}]},
    }


def services(store: Store, *names: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
    store.create(store.type_for("", "namespaces"), None, namespace)
    for name in names:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}, "spec": {}}
        store.create(store.type_for("", "services"), "ns", body)


async def until(predicate: Any, timeout: float = 5.0) -> float:
    """Seconds until ``predicate`` holds (polling the in-process store)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_lagging_gateway_routes_by_the_old_route_until_the_lag_passed_then_reports_it() -> None:
    store = Store()
    services(store, "champion", "challenger")
    routes = store.type_for(GROUP, "httproutes")
    store.create(routes, "ns", route(("champion", 100)))
    gateway = Gateway(store, lag=0.5)
    gateway.start()
    try:
        current = lambda: store.try_get(GROUP, "httproutes", "ns", "model") or {}  # noqa: E731
        await until(lambda: route_applied(current()) is True)  # the route present at start is reported at once
        body = current()
        body["spec"] = route(("champion", 0), ("challenger", 100))["spec"]
        store.update(routes, "ns", "model", body)
        assert current()["metadata"]["generation"] == 2
        assert route_applied(current()) is False  # generation 2 not applied yet
        choice = gateway.choose("any", "/")
        assert choice is not None
        assert choice[1]["name"] == "champion"  # the data plane still has the old route
        waited = await until(lambda: route_applied(current()) is True)
        assert 0.3 < waited < 2.0
        choice = gateway.choose("any", "/")
        assert choice is not None
        assert choice[1]["name"] == "challenger"
        [parent] = current()["status"]["parents"]
        conditions = {c["type"]: c for c in parent["conditions"]}
        assert conditions["Accepted"]["status"] == "True"
        assert conditions["Accepted"]["observedGeneration"] == 2
        assert conditions["ResolvedRefs"]["status"] == "True"
    finally:
        gateway.close()


async def test_a_route_to_a_missing_service_is_reported_unresolved() -> None:
    store = Store()
    services(store, "champion")
    store.create(store.type_for(GROUP, "httproutes"), "ns", route(("champion", 50), ("gone", 50)))
    gateway = Gateway(store)
    gateway.start()
    try:
        current = lambda: store.try_get(GROUP, "httproutes", "ns", "model") or {}  # noqa: E731
        await until(lambda: bool((current().get("status") or {}).get("parents")))
        [parent] = current()["status"]["parents"]
        resolved = next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")
        assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
        assert "gone" in resolved["message"]
    finally:
        gateway.close()
