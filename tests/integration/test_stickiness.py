"""Sticky assignment end to end in the sandbox: the operator writes the
sticky rules into the HTTPRoute, the gateway honours them, and clients that
keep their cookies stay on one version while the split holds for new ones.

Sandbox-only: the servers are local processes."""

from __future__ import annotations

from typing import Any

import pytest
from ab_server import GROUP, MODEL, VERSION, Served, experiment, experiments, sticky_load
from kubernetes import client


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.85}], indirect=True)
def test_sticky_cookies_keep_at_least_99_percent_of_a_clients_requests_on_one_version(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    namespace = served.namespace
    custom = client.CustomObjectsApi(api_client)
    body = experiment(sandbox.prometheus_url)
    body["spec"]["traffic"] = {"weight": 50}
    body["spec"]["routing"] = {"stickiness": {"cookie": "relearn-arm", "maxAge": "1h"}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    running = experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    assert running["status"]["weights"] == {"champion": 50, "challenger": 50}
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    assert len(route["spec"]["rules"]) == 3  # one sticky rule per arm before the weighted one

    clients = sticky_load(sandbox.gateway_url, f"{MODEL}.test", clients=40, requests=25)
    stays = [versions.count(versions[0]) / len(versions) for versions in clients]
    assert sum(stays) / len(stays) >= 0.99
    assert min(stays) == 1.0  # no client ever switched
    first = [versions[0] for versions in clients]
    assert 8 <= first.count("1.1.0") <= 32  # new clients still split 50/50 (binomial 40, sd 3.2)
