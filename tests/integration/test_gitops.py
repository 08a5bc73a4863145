"""A GitOps tool (or a person) re-applying the unchanged example sees
`unchanged`: nothing the API server defaults or the operator writes makes
kubectl's client-side apply send a change, except the one object Relearn
shares with Git by design, the HTTPRoute whose backendRefs its experiments
own (docs/gitops.md: what GitOps tools must leave to Relearn)."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, Kubectl, condition, wait_for


def test_reapplying_the_unchanged_example_changes_nothing(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    repo: Path,
    tmp_path: Path,
) -> None:
    example = str(repo / "examples" / "invoice-classifier")
    first = kubectl("apply", "-n", namespace, "-k", example).stdout
    assert "created" in first
    log = tmp_path / "operator.log"
    operator = start_operator(control_plane.kubeconfig, [namespace], log)
    try:
        # the operator has judged every object (status, finalizers, its annotations written)
        custom = client.CustomObjectsApi(api_client)
        for plural in ("modelversions", "driftpolicies", "abexperiments"):
            for item in custom.list_namespaced_custom_object("relearn.dev", "v1alpha1", namespace, plural)["items"]:
                wait_for(
                    custom.list_namespaced_custom_object,
                    lambda o, name=item["metadata"]["name"]: o["metadata"]["name"] == name and condition(o, "Ready"),
                    what=f"{plural} {item['metadata']['name']} accepted",
                    group="relearn.dev",
                    version="v1alpha1",
                    namespace=namespace,
                    plural=plural,
                    timeout=60,
                )
        again = kubectl("apply", "-n", namespace, "-k", example).stdout.splitlines()
    finally:
        assert stop_operator(operator) == 0, log.read_text()
    assert again, "kubectl printed nothing"
    changed = [line for line in again if not line.endswith(" unchanged")]
    # The experiment added its challenger to the route: kubectl replaces the whole rules list.
    assert changed in ([], ["httproute.gateway.networking.k8s.io/invoice-classifier configured"]), changed
