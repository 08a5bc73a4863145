"""Tenant isolation in the sandbox with its real Prometheus: two namespaces
serve a model of the same name and version, one of them with drifted
traffic; each namespace's DriftPolicy sees only its own series, so the
clean one never drifts while the other does.

Sandbox-only: the model servers are local processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from model_server import model_server
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.servers.drifting import OBSERVATIONS_PER_SECOND
from relearn_sandbox.testing import ControlPlane
from test_drift_detection import GROUP, VERSION, WINDOW_SECONDS, checks, conditions, resources


@pytest.fixture
def two_tenants(
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> Iterator[tuple[str, str]]:
    core, apps, custom = client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.CustomObjectsApi(api_client)
    other = f"other-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": other}})
    for ns, env in ((namespace, {}), (other, {"SHIFT": "3"})):
        apps.create_namespaced_deployment(ns, model_server("fraud", env))
        for body in resources(prometheus_url):
            body["spec"].pop("retraining", None)  # detection only
            plural = {"ModelVersion": "modelversions", "DriftPolicy": "driftpolicies"}[body["kind"]]
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)
    log = tmp_path / "operator.log"
    operator = start_operator(control_plane.kubeconfig, [namespace, other], log)
    try:
        yield namespace, other
    finally:
        assert stop_operator(operator) == 0, log.read_text()
        core.delete_namespace(other)


def test_a_model_of_the_same_name_in_another_namespace_is_never_counted(
    two_tenants: tuple[str, str], api_client: client.ApiClient
) -> None:
    clean, drifted = two_tenants
    custom = client.CustomObjectsApi(api_client)

    for policy in checks(custom, drifted, timeout=120):
        if conditions(policy).get("Drifted", {}).get("status") == "True":
            break
    # Meanwhile, and from now on, the clean namespace's checks count its own server only.
    decided = 0
    for policy in checks(custom, clean, timeout=120):
        states = conditions(policy)
        assert states.get("Drifted", {}).get("status") != "True", states["Drifted"]
        if states.get("Drifted", {}).get("status") == "False":
            decided += 1
            samples = {f["name"]: f.get("currentSamples") for f in policy["status"]["features"]}
            # Its window holds what one server sends, never both namespaces' (whatever each one's
            # start and pace: Prometheus extrapolates increase() by up to a tenth).
            assert samples["channel"] <= 1.25 * OBSERVATIONS_PER_SECOND * WINDOW_SECONDS, samples
        if decided == 5:
            break
