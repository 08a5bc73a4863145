"""The end-to-end suite: the whole loop on a real cluster (kind in CI).

Runs only when ``RELEARN_E2E_KUBECONFIG`` names a cluster's kubeconfig, and
``docker``, ``kind``, ``helm`` and ``kubectl`` are on PATH; otherwise every
test here is skipped with the reason. ``.github/workflows/e2e-kind.yaml``
runs it; locally:

    kind create cluster --name relearn-e2e
    RELEARN_E2E_KUBECONFIG=$HOME/.kube/config KIND_CLUSTER=relearn-e2e pytest tests/e2e
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from e2e_support import KUBECONFIG_ENV, REPO, TAG, missing, run
from kubernetes import client, config


@pytest.fixture(scope="session")
def cluster() -> Iterator[client.ApiClient]:
    """Images built and loaded into kind, the chart installed, CRDs established."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    kind_cluster = os.environ.get("KIND_CLUSTER", "relearn-e2e")
    for image, dockerfile in (("relearn-operator", "Dockerfile.operator"), ("relearn-trainer", "Dockerfile.trainer")):
        run("docker", "build", "-f", str(REPO / dockerfile), "-t", f"{image}:{TAG}", str(REPO))
        run("kind", "load", "docker-image", f"{image}:{TAG}", "--name", kind_cluster)
    run(
        "helm",
        "upgrade",
        "--install",
        "relearn",
        str(REPO / "charts" / "relearn"),
        "--namespace",
        "relearn-system",
        "--create-namespace",
        "--set",
        "image.repository=relearn-operator",
        "--set",
        f"image.tag={TAG}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "operator.prometheusUrl=http://prometheus.relearn-e2e.svc:9090",
        "--wait",
        "--timeout",
        "5m",
    )
    api = config.new_client_from_config(config_file=os.environ[KUBECONFIG_ENV])
    yield api
    api.close()
