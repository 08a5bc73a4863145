"""Fixtures of the integration tests that run experiments on served models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ab_server import GROUP, MODEL, VERSION, Served, serving, versions
from kubernetes import client
from relearn.sandbox.processes import start_operator, stop_operator
from relearn.sandbox.testing import ControlPlane


@pytest.fixture
def served(
    control_plane: ControlPlane,
    sandbox: Any,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Served]:
    if sandbox.prometheus_url is None:
        pytest.skip("prometheus is not installed (make test installs it with apt)")
    accuracy = request.param
    accuracy = dict(accuracy)
    extra_env = accuracy.pop("env", {})
    replicas = int(accuracy.pop("replicas", 1))
    apps, core, custom = client.AppsV1Api(api_client), client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    deployment, service, route = serving(MODEL, accuracy, replicas=replicas, env=extra_env)
    apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    for body in versions(namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    log = tmp_path / "operator.log"
    running = Served(
        namespace, control_plane.kubeconfig, log, start_operator(control_plane.kubeconfig, [namespace], log)
    )
    yield running
    assert stop_operator(running.operator) == 0, log.read_text()
