"""The whole loop on a real cluster: drift -> LoRA retraining Job ->
ModelVersion -> ABExperiment on live traffic -> promotion -> a fault in the
new champion -> automatic rollback; and the examples applied and accepted.

Skipped with the reason unless a cluster is configured (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e_support import MANIFESTS, REPO, run
from kubernetes import client
from relearn_sandbox.waiting import condition, wait_for

GROUP, VERSION, NAMESPACE = "relearn.dev", "v1alpha1", "relearn-e2e"


def relearn_object(
    api: client.ApiClient, plural: str, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    return wait_for(
        client.CustomObjectsApi(api).list_namespaced_custom_object,
        lambda o: o["metadata"]["name"] == name and predicate(o.get("status") or {}),
        group=GROUP,
        version=VERSION,
        namespace=NAMESPACE,
        plural=plural,
        timeout=timeout,
    )


def test_the_examples_are_accepted(cluster: client.ApiClient) -> None:
    run("kubectl", "apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: relearn-examples\n")
    run("kubectl", "apply", "-n", "relearn-examples", "-k", str(REPO / "examples" / "invoice-classifier"))
    custom = client.CustomObjectsApi(cluster)
    for plural, name in (
        ("modelversions", "invoice-classifier-1.0.0"),
        ("driftpolicies", "invoice-classifier"),
        ("abexperiments", "invoice-classifier-1.1.0"),
    ):
        wait_for(
            custom.list_namespaced_custom_object,
            lambda o, n=name: o["metadata"]["name"] == n and condition(o, "Ready"),
            group=GROUP,
            version=VERSION,
            namespace="relearn-examples",
            plural=plural,
            timeout=120,
        )


def test_drift_retrain_experiment_promote_fault_rollback(cluster: client.ApiClient) -> None:
    apps, batch = client.AppsV1Api(cluster), client.BatchV1Api(cluster)
    run("kubectl", "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n")
    run("kubectl", "apply", "-f", str(MANIFESTS / "prometheus.yaml"))
    run("kubectl", "apply", "-f", str(MANIFESTS / "model.yaml"))
    wait_for(
        batch.list_namespaced_job,
        lambda j: j["metadata"]["name"] == "tiny-model" and (j.get("status") or {}).get("succeeded") == 1,
        namespace=NAMESPACE,
        timeout=600,
    )
    wait_for(
        apps.list_namespaced_deployment,
        lambda d: d["metadata"]["name"] == "documents" and (d.get("status") or {}).get("availableReplicas") == 2,
        namespace=NAMESPACE,
        timeout=600,
    )
    run("kubectl", "apply", "-f", str(MANIFESTS / "relearn.yaml"))

    drifted = relearn_object(cluster, "driftpolicies", "documents", lambda s: condition({"status": s}, "Drifted"), 600)
    assert "length: PSI" in next(c["message"] for c in drifted["status"]["conditions"] if c["type"] == "Drifted")
    done = relearn_object(
        cluster,
        "driftpolicies",
        "documents",
        lambda s: (s.get("lastRetraining") or {}).get("outcome") in ("Succeeded", "Failed"),
        1800,
    )
    assert done["status"]["lastRetraining"]["outcome"] == "Succeeded", done["status"]
    version = done["status"]["lastRetraining"]["modelVersion"]
    registered = relearn_object(cluster, "modelversions", f"documents-{version}", lambda s: bool(s.get("phase")), 120)
    assert registered["spec"]["metrics"]["accuracy"] > registered["spec"]["metrics"]["championAccuracy"]

    experiment = f"documents-{version}"
    promoted = relearn_object(
        cluster, "abexperiments", experiment, lambda s: s.get("phase") in ("Promoted", "Rejected", "Inconclusive"), 1800
    )
    assert promoted["status"]["phase"] == "Promoted", promoted["status"]
    assert promoted["status"]["statistic"]["ciLower"] > 0
    champion = relearn_object(cluster, "modelversions", experiment, lambda s: s.get("phase") == "Champion", 120)
    assert champion["status"]["history"][-1]["action"] == "Promoted"

    relearn_object(
        cluster, "abexperiments", experiment, lambda s: (s.get("health") or {}).get("lastCheckTime") is not None, 300
    )
    deployment = promoted["status"]["workloads"]["challenger"]
    run(
        "kubectl",
        "exec",
        "-n",
        NAMESPACE,
        f"deploy/{deployment}",
        "--",
        "python",
        "-c",
        "import urllib.request; urllib.request.urlopen(urllib.request.Request("
        "'http://127.0.0.1:8080/admin/fault', data=b'{\"failing\": true}', method='POST', "
        "headers={'Content-Type': 'application/json'}), timeout=10)",
    )
    rolled = relearn_object(cluster, "abexperiments", experiment, lambda s: s.get("phase") == "RolledBack", 600)
    assert rolled["status"]["decision"]["reason"] == "HealthCheckFailed"
    assert relearn_object(cluster, "modelversions", "documents-1.0.0", lambda s: s.get("phase") == "Champion", 120)
    # the failed version's workload was removed before RolledBack was written
    try:
        gone = apps.read_namespaced_deployment(deployment, NAMESPACE).metadata.deletion_timestamp is not None
    except client.ApiException as error:
        gone = error.status == 404
    assert gone
