"""Drift detection end to end in the sandbox: a model server exports the
metric contract, the sandbox's real Prometheus scrapes it, and the operator's
DriftPolicy reports no drift, then drift in the one feature that shifted,
requests a retraining, and survives Prometheus going away.

Sandbox-only: the model server is a local process, and the test stops and
starts the sandbox's Prometheus."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from model_server import baseline_features, model_server
from relearn_sandbox.ports import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, condition, wait_for

GROUP, VERSION = "relearn.dev", "v1alpha1"
INTERVAL = 2  # seconds between checks
WINDOW_SECONDS = 15


def resources(prometheus_url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": "fraud-1.0.0"},
            "spec": {
                "model": "fraud",
                "version": "1.0.0",
                "declaredChampion": True,
                "baseModel": {"uri": "/m"},
                "metrics": {"accuracy": 0.9, "samples": 100_000},
                "baseline": {"features": baseline_features()},
            },
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DriftPolicy",
            "metadata": {"name": "fraud"},
            "spec": {
                "model": "fraud",
                "prometheus": {"url": prometheus_url, "timeout": "2s"},
                "interval": f"{INTERVAL}s",
                "window": f"{WINDOW_SECONDS}s",
                "features": [{"name": "amount"}, {"name": "channel", "type": "categorical"}],
                "thresholds": {"pValue": 0.001, "minSamples": 500},
                "trigger": {"consecutiveChecks": 2, "cooldown": "1h"},
                "retraining": {
                    "image": "ghcr.io/relearn-dev/relearn-trainer:0.1.0",
                    "dataset": {"uri": "/data/fraud"},
                    "output": {"uri": "/models/fraud"},
                },
            },
        },
    ]


@pytest.fixture
def monitored(
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> Iterator[str]:
    apps, custom = client.AppsV1Api(api_client), client.CustomObjectsApi(api_client)
    apps.create_namespaced_deployment(namespace, model_server("fraud"))
    for body in resources(prometheus_url):
        plural = {"ModelVersion": "modelversions", "DriftPolicy": "driftpolicies"}[body["kind"]]
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    operator = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "operator.log")
    yield namespace
    assert stop_operator(operator) == 0, (tmp_path / "operator.log").read_text()


def checks(custom: client.CustomObjectsApi, namespace: str, timeout: float) -> Iterator[dict[str, Any]]:
    """The policy after each completed check (each new lastCheckTime), as it happens."""
    seen = None
    stream = watch.Watch()
    for event in stream.stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "driftpolicies", timeout_seconds=int(timeout)
    ):
        policy = event["raw_object"]
        stamp = (policy.get("status") or {}).get("lastCheckTime")
        if stamp and stamp != seen and (policy.get("status") or {}).get("conditions"):
            seen = stamp
            yield policy
    raise TimeoutError(f"no further check within {timeout}s")


def conditions(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in policy["status"]["conditions"]}


def test_drift_is_detected_in_the_shifted_feature_and_outages_are_survived(
    monitored: str, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)

    # Enough scraped data for a decision, then ten clean checks in a row.
    clean = 0
    for policy in checks(custom, monitored, timeout=120):
        states = conditions(policy)
        if states.get("Drifted", {}).get("status") == "False":
            clean += 1
            assert states["MetricsAvailable"]["status"] == "True"
        elif clean:
            pytest.fail(f"a clean run broke at check {clean + 1}: {states.get('Drifted')}")
        if clean == 10:
            break
    assert policy["status"]["monitoredVersion"] == "1.0.0"
    assert policy["status"]["reference"] == "baseline of fraud-1.0.0"

    pod = core.list_namespaced_pod(monitored, label_selector="app=fraud").items[0]
    url = pod_url(pod.metadata.annotations)
    urllib.request.urlopen(urllib.request.Request(f"{url}/shift", method="POST"), timeout=5)

    after_shift = 0
    for policy in checks(custom, monitored, timeout=60):
        after_shift += 1
        if conditions(policy)["Drifted"]["status"] == "True":
            break
    assert after_shift <= 2, f"drift found only at check {after_shift} after the shift"
    drifted = conditions(policy)["Drifted"]
    assert drifted["reason"] == "DataDrift"
    assert drifted["message"].startswith("amount: PSI")
    assert "channel" not in drifted["message"]
    scores = {f["name"]: f for f in policy["status"]["features"]}
    assert scores["amount"]["drifted"] is True
    assert scores["amount"]["pValue"] < 0.001
    assert scores["channel"]["drifted"] is False
    assert scores["amount"]["currentSamples"] >= 500
    detected = wait_for(core.list_namespaced_event, lambda e: e["reason"] == "DriftDetected", namespace=monitored)
    assert detected["type"] == "Warning"

    requested = wait_for(
        custom.list_namespaced_custom_object,
        lambda p: bool((p["status"].get("lastRetraining") or {}).get("requestedAt")),
        group=GROUP,
        version=VERSION,
        namespace=monitored,
        plural="driftpolicies",
    )
    assert requested["status"]["lastRetraining"]["job"].startswith("fraud-rt-")
    assert requested["status"]["lastRetraining"]["reasons"][0].startswith("amount: PSI")
    assert requested["status"]["consecutiveDriftedChecks"] >= 2  # trigger.consecutiveChecks
    request = wait_for(core.list_namespaced_event, lambda e: e["reason"] == "RetrainingRequested", namespace=monitored)
    assert request["message"].startswith(requested["status"]["lastRetraining"]["job"])

    # Prometheus goes away: no decision, no crash; it comes back: so do the metrics.
    assert control_plane.thread is not None
    control_plane.thread.run(sandbox.prometheus.stop())
    try:
        down = wait_for(
            custom.list_namespaced_custom_object,
            lambda p: condition(p, "MetricsAvailable", "False"),
            group=GROUP,
            version=VERSION,
            namespace=monitored,
            plural="driftpolicies",
            timeout=60,
        )
        assert conditions(down)["MetricsAvailable"]["reason"] == "PrometheusUnreachable"
        assert conditions(down)["Drifted"]["status"] == "True"  # no new decision either way
    finally:
        control_plane.thread.run(sandbox.prometheus.start())
    wait_for(
        custom.list_namespaced_custom_object,
        lambda p: condition(p, "MetricsAvailable", "True"),
        group=GROUP,
        version=VERSION,
        namespace=monitored,
        plural="driftpolicies",
        timeout=60,
    )
    reasons = [e.reason for e in core.list_namespaced_event(monitored).items]
    assert "MetricsUnavailable" in reasons
    assert "MetricsRestored" in reasons
