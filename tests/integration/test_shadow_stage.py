"""A shadow stage end to end in the sandbox, with real traffic: the gateway
mirrors every request to the challenger (its answers discarded), the model
servers count both versions' outcomes on the same labelled requests, the
real Prometheus scrapes them, and the operator decides on the paired test,
then moves on: to the live A/B test, or, shadow only, to promotion.

Sandbox-only: the servers are local processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ab_server import (
    MODEL,
    Served,
    experiment,
    experiments,
    feedback_counters,
    finish,
    paired_load,
    started,
    under_load,
)
from kubernetes import client

# champion right on u < 0.85, challenger on 0.02 <= u < 0.92: b = 0.02, c = 0.07 of labelled requests
PAIRED = {"1.0.0": 0.85, "1.1.0": 0.90, "env": {"PAIR_OFFSET": json.dumps({"1.1.0": 0.02})}}


def shadow_experiment(prometheus: str, **shadow: Any) -> dict[str, Any]:
    body = experiment(prometheus, minSamplesPerArm=150)
    body["spec"]["traffic"] = {"weight": 40, "shadow": {"weight": 100, "pairs": 5000, **shadow}}
    return body


@pytest.mark.parametrize("served", [PAIRED], indirect=True)
def test_a_shadow_stage_on_mirrored_requests_decides_then_the_live_test_starts(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    namespace = served.namespace
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    shadowing = started(custom, namespace, shadow_experiment(sandbox.prometheus_url), stage="Shadow")
    assert shadowing["status"]["weights"] == {"champion": 100, "challenger": 0}
    assert shadowing["status"]["shadow"]["mirror"] == 100
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    mirrors = [f for rule in route["spec"]["rules"] for f in rule.get("filters") or () if f["type"] == "RequestMirror"]
    assert mirrors == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": f"{MODEL}-1-1-0", "port": 80}, "percent": 100},
        }
    ]

    # Clients only ever get the champion's answers while the challenger answers copies of the same requests.
    # (100 labelled pairs: fewer than the gate of 150, so the stage cannot end under this load)
    clients = finish(paired_load(sandbox.gateway_url, f"{MODEL}.test", requests=100))
    assert clients["versions"] == {"1.0.0": 100}
    assert clients["backends"] == {MODEL: 100}
    generator = paired_load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        live = experiments(custom, namespace, lambda a: (a.get("status") or {}).get("stage") == "Live", timeout=180)
    finally:
        finish(generator, stop=True)
    status = live["status"]
    shadow = status["shadow"]
    assert shadow["outcome"] == "Live"
    assert shadow["pValue"] < 0.05
    assert shadow["pairs"] >= 150
    assert shadow["challengerOnly"] > shadow["championOnly"]
    assert 0.0 < shadow["lift"] < 0.15  # 0.05 in truth
    assert status["weights"] == {"champion": 60, "challenger": 40}  # on to the live test at its first weight
    assert status["phase"] == "Progressing"
    assert "sequential McNemar" in status["decision"]["message"]
    # the shadow answered (and was scored on) the requests the champion answered
    _, champion_labels = feedback_counters(core, namespace, "1.0.0")
    _, shadow_labels = feedback_counters(core, namespace, "1.1.0")
    assert shadow_labels >= 0.9 * champion_labels
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    assert not [f for rule in route["spec"]["rules"] for f in rule.get("filters") or ()]  # the mirror is off
    reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
    assert {"ShadowStarted", "ShadowPassed"} <= reasons


@pytest.mark.parametrize("served", [PAIRED], indirect=True)
def test_a_shadow_only_experiment_promotes_straight_after_its_shadow_stage(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    namespace = served.namespace
    custom = client.CustomObjectsApi(api_client)
    started(custom, namespace, shadow_experiment(sandbox.prometheus_url, live=False), stage="Shadow")
    promoted = under_load(
        paired_load(sandbox.gateway_url, f"{MODEL}.test", seconds=180), custom, namespace, "Promoted", 180
    )
    status = promoted["status"]
    assert status["decision"]["outcome"] == "Promote"
    assert status["decision"]["message"].startswith("shadow only")
    assert status["weights"] == {"champion": 0, "challenger": 100}
    assert status["stage"] == "Shadow"  # it never took live traffic before its promotion
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    assert not [f for rule in route["spec"]["rules"] for f in rule.get("filters") or ()]  # no copies to the champion
