"""The operator needs exactly the rights the Helm chart grants: a whole loop
(drift -> retraining Job -> ModelVersion -> experiment -> promotion -> fault
-> rollback) runs in the sandbox with the operator held to the chart's
namespaced Role (403 for anything else, as on a cluster; that install has no
cluster-wide right), and the calls it made, from the sandbox's call log, are
compared with the chart's rules in both install modes and both directions:
every call permitted, every granted right used. A right the loop cannot
reach is listed below with the code path that uses it. The cluster-wide
mode's ClusterRoles are then enforced on an operator serving every namespace
while it starts and resumes the loop's objects (and observes CRDs).

Sandbox-only: the call log and RBAC enforcement are the sandbox's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes import client
from relearn_sandbox import demo_loop
from relearn_sandbox.audit import OPERATOR, ApiCall, Grant
from relearn_sandbox.ports import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.servers import fail_requests
from relearn_sandbox.testing import ControlPlane, wait_for

GROUP, VERSION, MODEL = "relearn.dev", "v1alpha1", demo_loop.MODEL
CHART = Path(__file__).resolve().parents[2] / "charts" / "relearn"
Right = tuple[str, str, str]  # (API group, resource[/subresource], verb)

# Granted, and used by a code path this loop (gateway-api router, baseline
# inline, no credentials, nothing rejected) does not take.
NOT_REACHED: dict[Right, str] = {
    ("networking.istio.io", "virtualservices", "get"): "adapters/routers/istio.py: the istio router reads the route",
    ("networking.istio.io", "virtualservices", "update"): "adapters/routers/istio.py: and writes its weights",
    ("", "configmaps", "get"): "handlers/drift.py: a ModelVersion's baseline in a ConfigMap (large baselines)",
    ("", "secrets", "get"): "KubeClient.read_secret: authSecretRef/caSecretRef (adapters/prometheus.py), "
    "a webhook's urlSecretRef (adapters/webhooks.py), each only with the Secret's consent",
    ("", "endpoints", "get"): "adapters/routers/__init__.py: ready Endpoints where a cluster serves no EndpointSlices",
    ("kubeflow.org", "pytorchjobs", "create"): "handlers/retraining.py: a distributed retraining on Kubeflow",
    ("kubeflow.org", "pytorchjobs", "get"): "handlers/retraining.py: and read back by its name",
}


def chart_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's rendered RBAC objects (Roles, ClusterRoles) for ``values``."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        files = chart.render(values, name="relearn", namespace="relearn-system", is_install=True)
    finally:
        chart.close()
    docs = [d for name, text in files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    return [d for d in docs if d["kind"] in ("Role", "ClusterRole")]


def rights(rules: list[dict[str, Any]]) -> set[Right]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def used(calls: list[ApiCall]) -> set[Right]:
    return {(c.group, c.rbac_resource, c.verb) for c in calls}


def observer(roles: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = (r for r in roles if r["metadata"]["name"].endswith("crd-observer"))
    return role


def calls_until(sandbox: Any, predicate: Callable[[list[ApiCall]], bool], timeout: float = 60) -> None:
    """Poll the call log (it has no watch) until the operator's calls satisfy ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate(sandbox.api_calls(OPERATOR)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator's calls did not get there in {timeout:.0f}s")
        time.sleep(0.2)


def the_loop(api: client.ApiClient, kubeconfig: Path, namespace: str, workdir: Path, sandbox: Any) -> None:
    """The demo's loop, made short: drift, a retraining Job, its ModelVersion and
    experiment, promotion on live traffic, a fault, the rollback."""
    from relearn_sandbox.demo import kubectl
    from relearn_trainer import synthetic

    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    champion = demo_loop.build_champion(workdir)
    kube_objects, relearn_objects = demo_loop.objects(workdir, sandbox.prometheus_url, champion)
    relearn_objects[1]["spec"]["trigger"]["consecutiveChecks"] = 1
    for body in kube_objects + relearn_objects:
        kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))

    def policy(predicate: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict[str, Any]:
        return wait_for(
            custom.list_namespaced_custom_object,
            lambda p: predicate(p.get("status") or {}),
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="driftpolicies",
            timeout=timeout,
        )

    def experiment(predicate: Callable[[dict[str, Any]], bool], timeout: float = 240) -> dict[str, Any]:
        return wait_for(
            custom.list_namespaced_custom_object,
            lambda a: predicate(a.get("status") or {}),
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="abexperiments",
            timeout=timeout,
        )

    with synthetic.Traffic(sandbox.gateway_url, host=demo_loop.HOST) as traffic:
        policy(lambda s: any(c["type"] == "Drifted" and c["status"] == "False" for c in s.get("conditions") or ()))
        traffic.drifted = True
        done = policy(lambda s: (s.get("lastRetraining") or {}).get("outcome") in ("Succeeded", "Failed"), 300)
        assert done["status"]["lastRetraining"]["outcome"] == "Succeeded", done["status"]
        version = done["status"]["lastRetraining"]["modelVersion"]
        experiment(lambda s: (s.get("health") or {}).get("lastCheckTime") is not None)
        pod = core.list_namespaced_pod(namespace, label_selector=f"relearn.dev/version={version}").items[0]
        fail_requests(pod_url(pod.metadata.annotations))
        experiment(lambda s: s.get("phase") == "RolledBack", 120)


def test_the_operator_calls_exactly_what_the_chart_grants_in_both_install_modes(
    control_plane: ControlPlane,
    sandbox: Any,
    prometheus_url: str,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_loop, "HOST", f"{namespace}.rbac.local")  # a route of its own on the shared gateway
    namespaced = chart_rules({"rbac": {"clusterWide": False}, "watchNamespaces": [namespace]})
    (role,) = namespaced  # a Role in the served namespace, and no cluster-wide right at all
    assert role["kind"] == "Role"
    sandbox.audit.clear()
    sandbox.enforce_rbac(OPERATOR, [Grant(role["rules"], namespace=namespace)])
    log = tmp_path / "operator.log"
    try:
        operator = start_operator(sandbox.operator_kubeconfig, [namespace], log)
        try:
            the_loop(api_client, control_plane.kubeconfig, namespace, tmp_path, sandbox)
        finally:
            assert stop_operator(operator) == 0, log.read_text()
        loop_calls = sandbox.api_calls(OPERATOR)

        # Cluster-wide mode: the ClusterRole, for an operator serving every namespace.
        cluster_wide = chart_rules({})
        (cluster_role,) = (r for r in cluster_wide if r["kind"] == "ClusterRole" and r is not observer(cluster_wide))
        sandbox.audit.clear()
        sandbox.enforce_rbac(OPERATOR, [Grant(cluster_role["rules"]), Grant(observer(cluster_wide)["rules"])])
        operator = start_operator(sandbox.operator_kubeconfig, [], log)
        try:
            resumed = {"modelversions", "driftpolicies", "abexperiments"}
            # It watches every namespace, then takes the loop's objects up again (reads them in their namespace).
            calls_until(sandbox, lambda calls: resumed <= {c.resource for c in calls if c.verb == "watch"})
            calls_until(sandbox, lambda calls: any(c.namespace == namespace and c.verb == "get" for c in calls))
        finally:
            assert stop_operator(operator) == 0, log.read_text()
        cluster_calls = sandbox.api_calls(OPERATOR)
    finally:
        sandbox.enforce_rbac(OPERATOR, None)

    refused = sorted(
        {(c.verb, c.group, c.rbac_resource, c.namespace) for c in loop_calls + cluster_calls if c.code == 403}
    )
    assert refused == [], f"calls the chart does not allow: {refused}"
    assert {c.namespace for c in loop_calls} == {namespace}
    assert {c.resource for c in cluster_calls if c.verb == "watch" and c.namespace is None} >= resumed
    granted = rights(role["rules"])
    assert rights(cluster_role["rules"]) == granted, "both install modes grant the same rights"
    crd_rights = rights(observer(cluster_wide)["rules"])
    assert used([c for c in cluster_calls if c.resource == "customresourcedefinitions"]) == crd_rights
    calls = used([c for c in loop_calls + cluster_calls if c.resource != "customresourcedefinitions"])
    assert calls - granted == set()
    unused = granted - calls
    assert unused == set(NOT_REACHED), (
        f"granted and never used: {sorted(unused - set(NOT_REACHED))}; "
        f"listed as not reached but used: {sorted(set(NOT_REACHED) - unused)}"
    )
