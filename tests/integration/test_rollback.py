"""Health checks and rollback after promotion, in the sandbox: an experiment
promotes the better challenger on live traffic, then the new champion's
server starts failing (its fault switch) and the operator reverts traffic to
the previous champion; a manual rollback by CLI and by annotation, with an
operator restart in the middle of it.

Sandbox-only: the servers are local processes with a fault switch."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from ab_server import (
    GROUP,
    MODEL,
    VERSION,
    Served,
    experiment,
    experiments,
    finish,
    load,
    phase_of,
    recorded_champion,
    relearn,
)
from kubernetes import client
from relearn_sandbox.ports import pod_url
from relearn_sandbox.testing import ControlPlane, condition, wait_for


def promoted(custom: client.CustomObjectsApi, namespace: str, sandbox: Any, **rollback: Any) -> dict[str, Any]:
    """Run an experiment to promotion (1.1.0 much better) under live traffic."""
    body = experiment(sandbox.prometheus_url, minSamplesPerArm=200)
    body["spec"]["rollback"] = {"interval": "2s", "failureThreshold": 2, "checkWindow": "10s", **rollback}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    return experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Promoted", timeout=150)


def route(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    obj = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    return list(obj["spec"]["rules"][0]["backendRefs"])


def history(custom: client.CustomObjectsApi, namespace: str, version: str) -> list[dict[str, Any]]:
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-{version}")
    return list((mv.get("status") or {}).get("history") or [])


def events(api_client: client.ApiClient, namespace: str, reason: str) -> list[Any]:
    return [e for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items if e.reason == reason]


@pytest.mark.parametrize("served", [{"1.0.0": 0.8, "1.1.0": 0.97}], indirect=True)
def test_a_failing_new_champion_is_rolled_back_automatically(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served.namespace
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=240)
    try:
        promoted(custom, namespace, sandbox)
        healthy = experiments(custom, namespace, lambda a: condition(a, "Healthy"), timeout=60)
        checks = {c["name"]: c for c in healthy["status"]["health"]["checks"]}
        assert checks["error-rate"]["result"] == "Healthy"
        assert checks["availability"]["result"] == "Healthy"
        assert healthy["status"]["health"]["previousChampionWarm"] is True
        assert route(custom, namespace) == [
            {"name": MODEL, "port": 80, "weight": 0},  # the previous champion, warm
            {"name": f"{MODEL}-1-1-0", "weight": 100, "port": 80},
        ]

        # The new champion's server starts failing every request.
        pod = core.list_namespaced_pod(namespace, label_selector="relearn.dev/version=1.1.0").items[0]
        url = pod_url(pod.metadata.annotations)
        urllib.request.urlopen(urllib.request.Request(f"{url}/fault", method="POST"), timeout=5)

        rolled = experiments(custom, namespace, lambda a: a["status"].get("phase") == "RolledBack", timeout=90)
    finally:
        finish(generator, stop=True)
    status = rolled["status"]
    assert status["decision"]["outcome"] == "RollBack"
    assert status["decision"]["reason"] == "HealthCheckFailed"
    assert "error-rate" in status["decision"]["message"]
    assert status["rollbackTarget"] == "1.0.0"
    assert status["weights"] == {"champion": 100, "challenger": 0}
    assert route(custom, namespace) == [{"name": MODEL, "port": 80, "weight": 100}]
    assert phase_of(custom, namespace, "1.1.0") == "RolledBack"
    assert phase_of(custom, namespace, "1.0.0") == "Champion"
    assert recorded_champion(custom, namespace) == ("1.0.0", 1)  # handed to 1.1.0, then back once
    actions = [(h["action"], h["triggeredBy"]) for h in history(custom, namespace, "1.1.0")]
    assert actions == [
        ("Promoted", f"abexperiment/{MODEL}-1.1.0"),
        ("RolledBack", f"abexperiment/{MODEL}-1.1.0 health checks"),
    ]
    rolled_back_event = events(api_client, namespace, "RolledBack")
    assert len(rolled_back_event) == 1
    assert rolled_back_event[0].type == "Warning"
    assert "1.0.0 serves 100% of traffic again" in rolled_back_event[0].message
    assert len(events(api_client, namespace, "RollbackStarted")) == 1
    # The rolled-back version is not promoted again: the experiment is final,
    # and asking again is the same rollback, not a new one.
    again = relearn(control_plane, "rollback", MODEL, "-n", namespace)
    assert again.returncode == 0, again.stderr
    assert "done" in again.stdout
    assert phase_of(custom, namespace, "1.1.0") == "RolledBack"


@pytest.mark.parametrize("served", [{"1.0.0": 0.8, "1.1.0": 0.97, "env": {"STARTUP_DELAY": "2"}}], indirect=True)
def test_manual_rollback_by_annotation_scales_the_released_champion_up_and_survives_a_restart(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served.namespace
    custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
    refused = relearn(control_plane, "rollback", MODEL, "-n", namespace)
    assert refused.returncode == 1
    assert "nothing to roll back to: champion ranker 1.0.0 was not promoted by an ABExperiment" in refused.stderr
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=240)
    try:
        promoted(custom, namespace, sandbox, bakeTime="2s")
    finally:
        finish(generator, stop=True)
    released = experiments(
        custom, namespace, lambda a: (a["status"].get("health") or {}).get("previousChampionWarm") is False
    )
    assert released["status"]["phase"] == "Promoted"
    wait_for(
        apps.list_namespaced_deployment,
        lambda d: d["metadata"]["name"] == MODEL and d["spec"]["replicas"] == 0,
        namespace=namespace,
    )
    assert route(custom, namespace) == [{"name": f"{MODEL}-1-1-0", "weight": 100, "port": 80}]
    bad_target = relearn(control_plane, "rollback", MODEL, "--to", "9.9.9", "-n", namespace)
    assert bad_target.returncode == 1
    assert "no ModelVersion of ranker has version 9.9.9" in bad_target.stderr

    # The GitOps way: the annotation, committed and applied (relearn rollback sets the same).
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "abexperiments",
        f"{MODEL}-1.1.0",
        {"metadata": {"annotations": {"relearn.dev/rollback": "previous"}}},
    )
    # The operator restarts in the middle: the decision is written, the released
    # champion (2 s to start) is not serving yet.
    experiments(custom, namespace, lambda a: (a["status"].get("decision") or {}).get("outcome") == "RollBack")
    served.restart_operator()
    rolled = experiments(custom, namespace, lambda a: a["status"].get("phase") == "RolledBack", timeout=60)
    assert rolled["status"]["decision"]["reason"] == "ManualRollback"
    assert route(custom, namespace) == [{"name": MODEL, "port": 80, "weight": 100}]
    assert apps.read_namespaced_deployment(MODEL, namespace).spec.replicas == 1
    rolled_back = [h for h in history(custom, namespace, "1.1.0") if h["action"] == "RolledBack"]
    assert len(rolled_back) == 1
    assert rolled_back[0]["triggeredBy"] == f"relearn.dev/rollback on abexperiment/{MODEL}-1.1.0"
    assert len(events(api_client, namespace, "RolledBack")) == 1
    for _ in range(2):  # the CLI asked again: the same rollback, not a new one
        again = relearn(control_plane, "rollback", MODEL, "-n", namespace)
        assert again.returncode == 0, again.stderr
        assert "to 1.0.0 done" in again.stdout
    assert len([h for h in history(custom, namespace, "1.1.0") if h["action"] == "RolledBack"]) == 1
