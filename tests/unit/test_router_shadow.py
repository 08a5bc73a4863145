"""What each router writes for a shadow stage (mirrored requests) and for
sticky assignment, checked on the manifests without a cluster."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.adapters.kube import HTTPROUTES, SERVICES, VIRTUALSERVICES
from relearn.adapters.routers import RouterError, Weights, router_for
from relearn.api.abexperiment import Stickiness
from test_routers import SPLIT, FakeKube, http_route, virtual_service

COOKIE = Stickiness(cookie="relearn-arm", max_age="1h")
HEADER = Stickiness(header="X-Relearn-Arm")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_gateway_api_mirrors_the_champions_rule_to_the_challenger_with_its_percent() -> None:
    kube = FakeKube((HTTPROUTES, http_route()))
    router = router_for("gateway-api", kube, "ml", "docs")  # type: ignore[arg-type]
    run(router.reconcile(SPLIT))
    run(router.set_mirror(SPLIT, 40))
    rule, legacy = kube.objects[("httproutes", "docs")]["spec"]["rules"]
    assert rule["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "docs-1-1-0", "port": 80}, "percent": 40}}
    ]
    assert "filters" not in legacy
    assert run(router.get_mirror(SPLIT)) == 40
    assert run(router.get_weights(SPLIT)) == Weights(100, 0)  # mirrored, not routed
    run(router.set_mirror(SPLIT, 0))
    assert "filters" not in kube.objects[("httproutes", "docs")]["spec"]["rules"][0]


@pytest.mark.parametrize("provider", ["gateway-api", "istio"])
def test_a_challenger_that_takes_live_traffic_is_no_longer_mirrored_to(provider: str) -> None:
    resource, body = (HTTPROUTES, http_route()) if provider == "gateway-api" else (VIRTUALSERVICES, virtual_service())
    router = router_for(provider, FakeKube((resource, body)), "ml", "docs")  # type: ignore[arg-type]
    run(router.set_mirror(SPLIT, 100))
    run(router.set_weights(SPLIT, 0))
    assert run(router.get_mirror(SPLIT)) == 100  # weight 0 keeps the shadow stage
    run(router.set_weights(SPLIT, 10))
    assert run(router.get_mirror(SPLIT)) == 0


def test_gateway_api_reads_a_mirror_fraction_as_percent() -> None:
    route = http_route()
    route["spec"]["rules"][0]["filters"] = [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "docs-1-1-0"}, "fraction": {"numerator": 1, "denominator": 4}},
        }
    ]
    router = router_for("gateway-api", FakeKube((HTTPROUTES, route)), "ml", "docs")  # type: ignore[arg-type]
    assert run(router.get_mirror(SPLIT)) == 25


def test_istio_mirrors_with_mirror_percentage_and_finalize_removes_it() -> None:
    kube = FakeKube((VIRTUALSERVICES, virtual_service()))
    router = router_for("istio", kube, "ml", "docs")  # type: ignore[arg-type]
    run(router.reconcile(SPLIT))
    run(router.set_mirror(SPLIT, 100))
    http = kube.objects[("virtualservices", "docs")]["spec"]["http"][0]
    assert http["mirror"] == {"host": "docs-1-1-0.ml.svc.cluster.local", "port": {"number": 80}}
    assert http["mirrorPercentage"] == {"value": 100.0}
    assert run(router.get_mirror(SPLIT)) == 100
    run(router.finalize(SPLIT, "champion"))
    assert "mirror" not in kube.objects[("virtualservices", "docs")]["spec"]["http"][0]


def test_replicas_router_says_it_cannot_mirror() -> None:
    router = router_for("replicas", FakeKube(), "ml", "docs")  # type: ignore[arg-type]
    assert not router.can_mirror
    with pytest.raises(RouterError, match="cannot mirror") as refused:
        run(router.set_mirror(SPLIT, 50))
    assert refused.value.reason == "MirrorUnsupported"


def test_gateway_api_cookie_stickiness_sends_marked_requests_to_their_arm_before_the_weighted_rule() -> None:
    kube = FakeKube((HTTPROUTES, http_route()))
    router = router_for("gateway-api", kube, "ml", "docs", COOKIE)  # type: ignore[arg-type]
    run(router.reconcile(SPLIT))
    run(router.set_weights(SPLIT, 30))
    rules = kube.objects[("httproutes", "docs")]["spec"]["rules"]
    assert [[r["name"] for r in rule["backendRefs"]] for rule in rules] == [
        ["docs"],
        ["docs-1-1-0"],
        ["docs", "docs-1-1-0"],
        ["legacy"],
    ]
    champion_only, challenger_only, weighted = rules[0], rules[1], rules[2]
    assert challenger_only["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/v1"},
            "headers": [
                {"type": "RegularExpression", "name": "Cookie", "value": r"(.*;\s*)?relearn\-arm=1\.1\.0(;.*)?"}
            ],
        }
    ]
    assert champion_only["matches"][0]["headers"][0]["value"] == r"(.*;\s*)?relearn\-arm=1\.0\.0(;.*)?"
    set_cookie = weighted["backendRefs"][1]["filters"][0]["responseHeaderModifier"]["add"][0]
    assert set_cookie == {"name": "Set-Cookie", "value": "relearn-arm=1.1.0; Max-Age=3600; Path=/"}
    assert run(router.get_weights(SPLIT)) == Weights(70, 30)  # the weighted rule, not a sticky one
    before = copy.deepcopy(kube.objects[("httproutes", "docs")])
    run(router.set_weights(SPLIT, 30))
    assert kube.objects[("httproutes", "docs")] == before  # rebuilt the same: idempotent


def test_a_promoted_challenger_keeps_every_client_and_the_old_champion_none() -> None:
    kube = FakeKube((HTTPROUTES, http_route()))
    router = router_for("gateway-api", kube, "ml", "docs", COOKIE)  # type: ignore[arg-type]
    run(router.set_weights(SPLIT, 50))
    run(router.set_weights(SPLIT, 100))  # promotion: the old champion stays warm at weight 0
    rules = kube.objects[("httproutes", "docs")]["spec"]["rules"]
    assert [[r["name"] for r in rule["backendRefs"]] for rule in rules] == [
        ["docs-1-1-0"],
        ["docs", "docs-1-1-0"],
        ["legacy"],
    ]


def test_finalize_removes_the_sticky_rules_and_marks() -> None:
    kube = FakeKube((HTTPROUTES, http_route()))
    router = router_for("gateway-api", kube, "ml", "docs", COOKIE)  # type: ignore[arg-type]
    run(router.set_weights(SPLIT, 50))
    run(router.finalize(SPLIT, "challenger"))
    assert kube.objects[("httproutes", "docs")]["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
            "backendRefs": [{"name": "docs-1-1-0", "port": 80, "weight": 100}],
        },
        {"backendRefs": [{"name": "legacy", "port": 80}]},
    ]


def test_istio_header_stickiness_puts_one_route_per_arm_first() -> None:
    kube = FakeKube((VIRTUALSERVICES, virtual_service()))
    router = router_for("istio", kube, "ml", "docs", HEADER)  # type: ignore[arg-type]
    run(router.set_weights(SPLIT, 20))
    http = kube.objects[("virtualservices", "docs")]["spec"]["http"]
    assert [h["match"] for h in http[:2]] == [
        [{"headers": {"x-relearn-arm": {"exact": "1.0.0"}}}],
        [{"headers": {"x-relearn-arm": {"exact": "1.1.0"}}}],
    ]
    assert [d["weight"] for d in http[2]["route"]] == [80, 20]
    assert http[2]["route"][1]["headers"] == {"response": {"set": {"x-relearn-arm": "1.1.0"}}}
    assert run(router.get_weights(SPLIT)) == Weights(80, 20)


def test_replicas_stickiness_is_the_services_client_ip_affinity_undone_at_the_end() -> None:
    from relearn.adapters.kube import DEPLOYMENTS

    service = {"metadata": {"name": "docs"}, "spec": {"selector": {"app": "docs"}}}
    deployments = [
        (DEPLOYMENTS, {"metadata": {"name": name}, "spec": {"replicas": 2}, "status": {"readyReplicas": 2}})
        for name in ("docs", "docs-1-1-0")
    ]
    kube = FakeKube((SERVICES, service), *deployments)
    router = router_for("replicas", kube, "ml", "docs", COOKIE)  # type: ignore[arg-type]
    run(router.reconcile(SPLIT))
    spec = kube.objects[("services", "docs")]["spec"]
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 3600}}
    run(router.finalize(SPLIT, "champion"))
    assert "sessionAffinity" not in kube.objects[("services", "docs")]["spec"]


@settings(max_examples=150, deadline=None)
@given(
    provider=st.sampled_from(["gateway-api", "istio"]),
    sticky=st.sampled_from([COOKIE, HEADER, None]),
    history=st.lists(st.integers(0, 100), min_size=1, max_size=5),
    mirror=st.integers(0, 100),
)
def test_the_route_depends_only_on_the_last_weight_and_finalize_leaves_nothing_behind(
    provider: str, sticky: Stickiness | None, history: list[int], mirror: int
) -> None:
    def fresh() -> tuple[Any, FakeKube, tuple[str, str]]:
        resource, body = (
            (HTTPROUTES, http_route()) if provider == "gateway-api" else (VIRTUALSERVICES, virtual_service())
        )
        kube = FakeKube((resource, body))
        return router_for(provider, kube, "ml", "docs", sticky), kube, (resource.plural, "docs")  # type: ignore[arg-type]

    router, kube, key = fresh()
    run(router.set_mirror(SPLIT, mirror))
    for weight in history:
        run(router.set_weights(SPLIT, weight))
    direct, direct_kube, _ = fresh()
    if not any(history):  # any live weight ended the mirror for good
        run(direct.set_mirror(SPLIT, mirror))
    run(direct.set_weights(SPLIT, history[-1]))
    assert kube.objects[key] == direct_kube.objects[key]
    assert run(router.get_weights(SPLIT)) == Weights(100 - history[-1], history[-1])
    run(router.finalize(SPLIT, "champion"))
    plain, plain_kube, _ = fresh()
    run(plain.finalize(SPLIT, "champion"))
    assert kube.objects[key] == plain_kube.objects[key]  # no mirror, mark or sticky rule left
