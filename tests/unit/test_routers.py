"""Each router's manifests, checked without a cluster: what the operator
writes into an HTTPRoute, a VirtualService, or replica counts."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from relearn.adapters.kube import DEPLOYMENTS, SERVICES, Resource
from relearn.adapters.routers import Backend, RouterError, Split, Weights, router_for
from relearn.adapters.routers.gateway_api import GatewayAPIRouter
from relearn.adapters.routers.istio import IstioRouter
from relearn.adapters.routers.replicas import ReplicasRouter, replica_split

SPLIT = Split(Backend("1.0.0", "docs", "docs"), Backend("1.1.0", "docs-1-1-0", "docs-1-1-0"))


class FakeKube:
    """Objects by (plural, name); ``modify`` edits in place like the API would."""

    def __init__(self, *objects: tuple[Resource, dict[str, Any]]) -> None:
        self.objects = {(r.plural, o["metadata"]["name"]): o for r, o in objects}
        self.writes = 0

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((resource.plural, name))
        return copy.deepcopy(found) if found else None

    async def modify(self, resource: Resource, namespace: str, name: str, change: Any) -> dict[str, Any]:
        obj = self.objects[(resource.plural, name)]
        before = copy.deepcopy(obj)
        change(obj)
        self.writes += obj != before
        return obj


def http_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "docs", "namespace": "ml"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                    "backendRefs": [{"name": "docs", "port": 80}],
                },
                {"backendRefs": [{"name": "legacy", "port": 80}]},
            ],
        },
    }


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "docs", "namespace": "ml"},
        "spec": {
            "hosts": ["docs.example.com"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "docs.ml.svc.cluster.local", "port": {"number": 80}, "subset": "v1"}}
                    ]
                },
                {"route": [{"destination": {"host": "other"}}]},
            ],
        },
    }


def test_gateway_api_router_adds_the_challenger_beside_the_champion_and_sets_weights() -> None:
    kube = FakeKube((Resource("gateway.networking.k8s.io", "v1", "httproutes"), http_route()))
    router = router_for("gateway-api", kube, "ml", "docs")  # type: ignore[arg-type]
    assert isinstance(router, GatewayAPIRouter)
    asyncio.run(router.reconcile(SPLIT))
    route = kube.objects[("httproutes", "docs")]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "docs", "port": 80},
        {"name": "docs-1-1-0", "weight": 0, "port": 80},
    ]
    assert route["spec"]["rules"][1]["backendRefs"] == [{"name": "legacy", "port": 80}]  # other rules untouched
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(100, 0)  # a ref without weight weighs 1
    asyncio.run(router.set_weights(SPLIT, 25))
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "docs", "port": 80, "weight": 75},
        {"name": "docs-1-1-0", "weight": 25, "port": 80},
    ]
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(75, 25)
    writes = kube.writes
    asyncio.run(router.set_weights(SPLIT, 25))
    assert kube.writes == writes  # nothing changed, nothing written
    asyncio.run(router.finalize(SPLIT, "champion"))
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "docs", "port": 80, "weight": 100}]
    assert asyncio.run(router.services()) == {"docs": 100, "legacy": 1}


def test_gateway_api_router_refuses_a_route_without_the_champion() -> None:
    route = http_route()
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "someone-else"}]
    kube = FakeKube((Resource("gateway.networking.k8s.io", "v1", "httproutes"), route))
    with pytest.raises(RouterError, match="routes nothing to the champion's Service docs"):
        asyncio.run(router_for("gateway-api", kube, "ml", "docs").reconcile(SPLIT))  # type: ignore[arg-type]
    with pytest.raises(RouterError, match="does not exist"):
        asyncio.run(router_for("gateway-api", FakeKube(), "ml", "docs").reconcile(SPLIT))  # type: ignore[arg-type]


def test_istio_router_keeps_the_host_form_and_port() -> None:
    kube = FakeKube((Resource("networking.istio.io", "v1", "virtualservices"), virtual_service()))
    router = router_for("istio", kube, "ml", "docs")  # type: ignore[arg-type]
    assert isinstance(router, IstioRouter)
    asyncio.run(router.set_weights(SPLIT, 10))
    vs = kube.objects[("virtualservices", "docs")]
    assert vs["spec"]["http"][0]["route"] == [
        {"destination": {"host": "docs.ml.svc.cluster.local", "port": {"number": 80}, "subset": "v1"}, "weight": 90},
        {"destination": {"host": "docs-1-1-0.ml.svc.cluster.local", "port": {"number": 80}}, "weight": 10},
    ]
    assert vs["spec"]["http"][1]["route"] == [{"destination": {"host": "other"}}]
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(90, 10)
    asyncio.run(router.set_weights(SPLIT, 100))  # promotion: the champion stays routable at 0
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(0, 100)
    asyncio.run(router.finalize(SPLIT, "challenger"))
    assert [d["destination"]["host"] for d in vs["spec"]["http"][0]["route"]] == ["docs-1-1-0.ml.svc.cluster.local"]
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(0, 100)


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (10, 0, (10, 0)),
        (10, 10, (9, 1)),
        (10, 25, (7, 3)),
        (10, 100, (0, 10)),
        (4, 1, (3, 1)),
        (4, 99, (1, 3)),
        (1, 50, (1, 1)),
    ],
)
def test_replica_split_granularity(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert replica_split(total, weight) == expected


def test_replicas_router_scales_both_deployments_and_reports_ready_pods() -> None:
    champion = {"metadata": {"name": "docs"}, "spec": {"replicas": 4}, "status": {"readyReplicas": 4}}
    challenger = {"metadata": {"name": "docs-1-1-0"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    service = {"metadata": {"name": "docs"}, "spec": {"selector": {"app": "docs", "relearn.dev/version": "1.0.0"}}}
    kube = FakeKube((DEPLOYMENTS, champion), (DEPLOYMENTS, challenger), (SERVICES, service))
    split = Split(Backend("1.0.0", "docs", "docs"), Backend("1.1.0", "docs-1-1-0", "docs"))
    router = router_for("replicas", kube, "ml", "docs")  # type: ignore[arg-type]
    assert isinstance(router, ReplicasRouter)
    asyncio.run(router.reconcile(split))
    assert service["spec"]["selector"] == {"app": "docs"}  # one Service over both arms
    assert challenger["metadata"]["annotations"]["relearn.dev/total-replicas"] == "4"
    asyncio.run(router.set_weights(split, 50))
    assert (champion["spec"]["replicas"], challenger["spec"]["replicas"]) == (2, 2)
    assert asyncio.run(router.get_weights(split)) == Weights(80, 20)  # what is ready, not what was asked
    champion["status"]["readyReplicas"], challenger["status"]["readyReplicas"] = 2, 2
    assert asyncio.run(router.get_weights(split)) == Weights(50, 50)
    asyncio.run(router.finalize(split, "challenger"))
    assert (champion["spec"]["replicas"], challenger["spec"]["replicas"]) == (0, 4)


def test_a_rollback_brings_back_a_champion_whose_route_entry_was_removed() -> None:
    kube = FakeKube((Resource("gateway.networking.k8s.io", "v1", "httproutes"), http_route()))
    router = router_for("gateway-api", kube, "ml", "docs")  # type: ignore[arg-type]
    asyncio.run(router.set_weights(SPLIT, 100))  # promoted
    asyncio.run(router.finalize(SPLIT, "challenger"))  # bake time over: the old champion's entry goes
    route = kube.objects[("httproutes", "docs")]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "docs-1-1-0", "weight": 100, "port": 80}]
    asyncio.run(router.set_weights(SPLIT, 0))  # rollback: the champion comes back beside it, same port
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "docs-1-1-0", "weight": 0, "port": 80},
        {"name": "docs", "weight": 100, "port": 80},
    ]
    assert asyncio.run(router.get_weights(SPLIT)) == Weights(100, 0)


@pytest.mark.parametrize("provider", ["gateway-api", "istio"])
def test_a_router_with_a_service_per_arm_gives_the_challenger_its_own_service(provider: str) -> None:
    router = router_for(provider, None, "ml", "docs")  # type: ignore[arg-type]
    assert router.owns_services
    assert not router.routes_by_ready_pods
    assert router.arm_service("docs-1-1-0") == "docs-1-1-0"
    assert router.initial_replicas(4, 10) == 4  # the challenger runs at full size, weight 0 until ready


def test_the_replicas_router_shares_one_service_and_sizes_the_challenger_by_weight() -> None:
    router = router_for("replicas", None, "ml", "docs")  # type: ignore[arg-type]
    assert not router.owns_services
    assert router.routes_by_ready_pods
    assert router.arm_service("docs-1-1-0") == "docs"
    assert router.initial_replicas(10, 20) == replica_split(10, 20)[1] == 2
    assert router.initial_replicas(1, 0) == 1  # never fewer than one pod to become ready
