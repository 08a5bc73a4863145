"""Drift detection end to end in the sandbox: a model server exports the
metric contract, the sandbox's real Prometheus scrapes it, and the operator's
DriftPolicy reports no drift, then drift in the one feature that shifted,
requests a retraining, and survives Prometheus going away.

Sandbox-only: the model server is a local process, and the test stops and
starts the sandbox's Prometheus."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client, watch
from relearn.sandbox.processes import start_operator, stop_operator
from relearn.sandbox.testing import ControlPlane, condition, wait_for
from relearn.serving import histogram_counts
from scipy import stats

GROUP, VERSION = "relearn.dev", "v1alpha1"
EDGES = [float(e) for e in stats.norm.ppf(np.linspace(0.1, 0.9, 9))]
CATEGORIES = ["a", "b", "c"]
SHARES = [0.5, 0.3, 0.2]
INTERVAL = 2  # seconds between checks

SERVER = f"""
import http.server, os, random, threading, time
from prometheus_client import generate_latest
from relearn.serving import CategoricalFeature, ModelMetrics, NumericFeature

metrics = ModelMetrics("fraud", "1.0.0", [NumericFeature("amount", {EDGES!r}),
                                          CategoricalFeature("channel", {CATEGORIES!r})])
shift = 0.0
rng = random.Random(11)

def traffic():
    while True:
        for _ in range(40):
            channel = rng.choices({CATEGORIES!r}, weights={SHARES!r})[0]
            metrics.observe({{"amount": rng.gauss(shift, 1.0), "channel": channel}}, confidence=0.9)
            metrics.feedback(correct=rng.random() < 0.9)
        time.sleep(0.2)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = generate_latest() if self.path == "/metrics" else b"ok"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        global shift
        shift = 3.0
        self.send_response(200); self.end_headers(); self.wfile.write(b"shifted")
    def log_message(self, *args): pass

threading.Thread(target=traffic, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def resources(prometheus_url: str) -> list[dict[str, Any]]:
    baseline_draws = stats.norm.ppf((np.arange(100_000) + 0.5) / 100_000)  # the reference distribution
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
                "baseline": {
                    "features": [
                        {
                            "name": "amount",
                            "type": "numeric",
                            "edges": EDGES,
                            "counts": histogram_counts(EDGES, baseline_draws),
                        },
                        {
                            "name": "channel",
                            "type": "categorical",
                            "categories": CATEGORIES,
                            "counts": [100_000 * s for s in SHARES],
                        },
                    ]
                },
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
                "window": "15s",
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
    sandbox: Any,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> Iterator[str]:
    if sandbox.prometheus_url is None:
        pytest.skip("prometheus is not installed (make test installs it with apt)")
    apps, custom = client.AppsV1Api(api_client), client.CustomObjectsApi(api_client)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "fraud"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "fraud"}},
                "template": {
                    "metadata": {
                        "labels": {"app": "fraud"},
                        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                    },
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "example/fraud:1.0.0",
                                "command": [sys.executable, "-c", SERVER],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
    )
    for body in resources(sandbox.prometheus_url):
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
    port = json.loads(pod.metadata.annotations["sandbox.relearn.dev/ports"])["8080"]
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/shift", method="POST"), timeout=5)

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
        lambda p: (p["status"].get("lastRetraining") or {}).get("outcome") == "Requested",
        group=GROUP,
        version=VERSION,
        namespace=monitored,
        plural="driftpolicies",
    )
    assert requested["status"]["lastRetraining"]["job"].startswith("fraud-rt-")
    assert requested["status"]["lastRetraining"]["reasons"][0].startswith("amount: PSI")
    assert condition(requested, "Retraining")

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
