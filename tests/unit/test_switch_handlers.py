"""How the experiment handlers sequence a switch, against an in-memory API:
the champion's Service is pinned before a challenger exists, a withdrawn
challenger is deleted only after the route is applied and drained (and a
restart keeps the drain), and a route re-applied from Git during an
experiment is restored with a Warning Event; a challenger whose adapter has
no sha256 never gets a Deployment (so is never promoted)."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from fake_kube import FakeKube
from relearn.adapters.kube import Resource
from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus
from relearn.handlers.experiments import arms, traffic
from relearn.handlers.experiments.context import Context, Wait
from relearn.handlers.outcome import Outcome

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)


def adapter_of(version: str) -> dict[str, Any]:
    """The challenger's adapter and its sha256 (the operator tests no challenger without one)."""
    return {} if version == "1.0.0" else {"adapter": {"uri": f"/adapters/{version}", "sha256": "a" * 64}}


def ranker(kube: FakeKube, deployment_status: dict[str, Any] | None = None) -> None:
    """ModelVersions ranker 1.0.0 (Champion) and 1.1.0 (Registered, with its
    adapter), and the champion's Deployment ``ranker``."""
    for version, phase in (("1.0.0", "Champion"), ("1.1.0", "Registered")):
        kube.add(
            "modelversions",
            {
                "metadata": {"name": f"ranker-{version}"},
                "spec": {"model": "ranker", "version": version, "baseModel": {"uri": "/m"}, **adapter_of(version)},
                "status": {"phase": phase},
            },
        )
    labels = {"app": "ranker", "relearn.dev/model": "ranker", "relearn.dev/version": "1.0.0"}
    container = {"name": "server", "image": "ranker:1"}
    deployment: dict[str, Any] = {
        "metadata": {"name": "ranker", "labels": {"relearn.dev/model": "ranker"}},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
    }
    if deployment_status is not None:
        deployment["status"] = deployment_status
    kube.add("deployments", deployment)


def world(kube: FakeKube, refs: list[dict[str, Any]]) -> dict[str, Any]:
    """Champion 1.0.0 (Deployment, version-less Service, ready endpoints) and an HTTPRoute with ``refs``."""
    ranker(kube, {"availableReplicas": 1})
    kube.add("services", {"metadata": {"name": "ranker"}, "spec": {"selector": {"app": "ranker"}, "ports": []}})
    kube.add("httproutes", {"metadata": {"name": "ranker"}, "spec": {"rules": [{"backendRefs": refs}]}})
    return kube.add(
        "abexperiments",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "metadata": {"name": "ranker-1.1.0", "uid": "uid-x"},
            "spec": {"model": "ranker", "challenger": "1.1.0", "workload": {"name": "ranker"}},
        },
    )


def endpoints(kube: FakeKube, service: str, ready: bool) -> None:
    kube.add(
        "endpointslices",
        {
            "metadata": {"name": f"{service}-abc", "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
            "ports": [{"port": 8080}],
        },
    )


def context(kube: FakeKube, body: dict[str, Any], now: datetime.datetime, **status: Any) -> Context:
    return Context(
        kube,  # type: ignore[arg-type]
        body,
        ABExperimentSpec.model_validate(body["spec"]),
        ABExperimentStatus.model_validate(status),
        now,
        logging.getLogger("test"),  # type: ignore[arg-type]
        None,
    )


def accept(kube: FakeKube, generation: int) -> None:
    """The data plane reports the route applied at ``generation``."""
    route = kube.objects[("httproutes", "default", "ranker")]
    route["metadata"]["generation"] = generation
    condition = {"type": "Accepted", "status": "True", "observedGeneration": generation}
    route["status"] = {"parents": [{"parentRef": {"name": "gw"}, "conditions": [condition]}]}


async def test_the_champions_service_is_pinned_before_the_challenger_deployment_exists() -> None:
    kube = FakeKube()
    body = world(kube, [{"name": "ranker", "port": 80, "weight": 100}])
    order: list[str] = []
    modify, create = kube.modify, kube.create

    async def recording_modify(resource: Resource, namespace: str, name: str, change: Any, attempts: int = 5) -> Any:
        order.append(f"modify {resource.plural}/{name}")
        return await modify(resource, namespace, name, change, attempts)

    async def recording_create(resource: Resource, namespace: str, obj: dict[str, Any]) -> bool:
        order.append(f"create {resource.plural}/{obj['metadata']['name']}")
        return await create(resource, namespace, obj)

    kube.modify, kube.create = recording_modify, recording_create  # type: ignore[method-assign]
    ctx = context(kube, body, NOW)
    split, champion, version = await arms.resolve(ctx)
    await arms.ensure_challenger(ctx, split, champion, version, 10)
    assert order.index("modify services/ranker") < order.index("create deployments/ranker-1-1-0")
    assert kube.objects[("services", "default", "ranker")]["spec"]["selector"]["relearn.dev/version"] == "1.0.0"


async def test_the_challenger_takes_no_traffic_until_its_service_has_ready_endpoints() -> None:
    kube = FakeKube()
    body = world(kube, [{"name": "ranker", "port": 80, "weight": 100}])
    ctx = context(kube, body, NOW)
    split, champion, version = await arms.resolve(ctx)
    await arms.ensure_challenger(ctx, split, champion, version, 10)
    assert await arms.not_serving(ctx, split.challenger) is not None
    endpoints(kube, split.challenger.service, ready=False)
    assert await arms.not_serving(ctx, split.challenger) is not None
    kube.objects.pop(("endpointslices", "default", f"{split.challenger.service}-abc"))
    endpoints(kube, split.challenger.service, ready=True)
    assert await arms.not_serving(ctx, split.challenger) is None


async def test_a_withdrawn_challenger_is_deleted_only_after_the_route_is_applied_and_drained() -> None:
    kube = FakeKube()
    refs = [{"name": "ranker", "port": 80, "weight": 90}, {"name": "ranker-1-1-0", "port": 80, "weight": 10}]
    body = world(kube, refs)
    ctx = context(kube, body, NOW, startTime="2026-01-01T00:00:00Z")
    split, champion, version = await arms.resolve(ctx)
    await arms.ensure_challenger(ctx, split, champion, version, 10)
    accept(kube, 1)  # the data plane has the route as it was, with the challenger
    kube.objects[("httproutes", "default", "ranker")]["metadata"]["generation"] = 2  # after the withdrawal's edit

    outcome = Outcome()
    wait = await traffic.withdraw(ctx, outcome, split)
    assert wait is not None
    assert kube.objects[("httproutes", "default", "ranker")]["spec"]["rules"][0]["backendRefs"] == [
        {"name": "ranker", "port": 80, "weight": 100}
    ]
    assert ("deployments", "default", "ranker-1-1-0") in kube.objects  # the proxy may still send to it
    drain = outcome.status["drain"]
    assert drain["backend"] == "ranker-1-1-0"
    assert "appliedTime" not in drain

    # Long after, the data plane still has not applied it: still there (until the route timeout).
    ctx = context(kube, body, NOW + 60 * SECOND, startTime="2026-01-01T00:00:00Z", drain=drain)
    assert await traffic.withdraw(ctx, Outcome(), split) is not None
    assert ("deployments", "default", "ranker-1-1-0") in kube.objects

    # Applied at +61 s; an operator restarted at +63 s reads the drain from status and waits the rest only.
    accept(kube, 2)
    outcome = Outcome()
    ctx = context(kube, body, NOW + 61 * SECOND, startTime="2026-01-01T00:00:00Z", drain=drain)
    assert await traffic.withdraw(ctx, outcome, split) is not None
    drain = outcome.status["drain"]
    assert drain["appliedTime"] == "2026-01-01T00:01:01Z"
    ctx = context(kube, body, NOW + 63 * SECOND, startTime="2026-01-01T00:00:00Z", drain=drain)
    wait = await traffic.withdraw(ctx, Outcome(), split)
    assert wait is not None
    assert abs(wait - 3.0) < 1e-6  # 5 s drain from +61 s, not from the restart
    assert ("deployments", "default", "ranker-1-1-0") in kube.objects
    outcome = Outcome()
    ctx = context(kube, body, NOW + 66 * SECOND, startTime="2026-01-01T00:00:00Z", drain=drain)
    assert await traffic.withdraw(ctx, outcome, split) is None
    assert ("deployments", "default", "ranker-1-1-0") not in kube.objects
    assert ("services", "default", "ranker-1-1-0") not in kube.objects
    assert outcome.status["drain"] is None


async def test_a_route_reapplied_from_git_during_an_experiment_is_restored_with_a_warning() -> None:
    kube = FakeKube()
    refs = [{"name": "ranker", "port": 80, "weight": 90}, {"name": "ranker-1-1-0", "port": 80, "weight": 10}]
    body = world(kube, refs)
    weights = {"champion": 90, "challenger": 10}
    ctx = context(kube, body, NOW, phase="Progressing", weights=weights)
    split, _, _ = await arms.resolve(ctx)
    route = kube.objects[("httproutes", "default", "ranker")]

    outcome = Outcome()
    await traffic.restore_route(ctx, split, outcome)
    assert outcome.events == []  # as the experiment set it: nothing to do

    route["spec"]["rules"][0]["backendRefs"] = [{"name": "ranker", "port": 80, "weight": 100}]  # kubectl apply
    await traffic.restore_route(ctx, split, outcome)
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "ranker", "port": 80, "weight": 90},
        {"name": "ranker-1-1-0", "weight": 10, "port": 80},
    ]
    [event] = outcome.events
    assert (event.type, event.reason) == ("Warning", "RouteRestored")
    assert "missing" in event.message

    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 50  # someone changed the weight by hand
    outcome = Outcome()
    await traffic.restore_route(ctx, split, outcome)
    assert route["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10
    assert "36%" in outcome.events[0].message  # its share: 50 of 140


@pytest.mark.parametrize(
    "adapter",
    [None, {"uri": "/adapters/1.1.0"}, {"uri": "/adapters/1.1.0", "sha256": "0" * 63}, {"sha256": "a" * 64}],
)
async def test_a_challenger_without_an_adapter_sha256_never_takes_traffic(adapter: dict[str, Any] | None) -> None:
    kube = FakeKube()
    body = world(kube, [{"name": "ranker", "port": 80, "weight": 100}])
    spec = kube.objects[("modelversions", "default", "ranker-1.1.0")]["spec"]
    spec.pop("adapter")
    if adapter is not None:
        spec["adapter"] = adapter
    with pytest.raises(Wait) as waiting:
        await arms.resolve(context(kube, body, NOW))
    assert waiting.value.reason == "UnverifiedChallenger"
    assert "1.1.0" in str(waiting.value.message)
    assert ("deployments", "default", "ranker-1-1-0") not in kube.objects
