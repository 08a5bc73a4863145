"""A/B experiments end to end in the sandbox, with real HTTP traffic through
the gateway: two servers whose true accuracy differs, a load generator
sending labelled feedback, the sandbox's real Prometheus, and the operator
deciding.

Sandbox-only: the servers are local processes, and one test stops and
starts the sandbox's Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ab_server import finish, load, serving
from kubernetes import client, watch
from relearn.sandbox.processes import start_operator, stop_operator
from relearn.sandbox.testing import ControlPlane, condition, wait_for

GROUP, VERSION = "relearn.dev", "v1alpha1"
MODEL = "ranker"


def versions(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": f"{MODEL}-{v}", "namespace": namespace},
            "spec": {
                "model": MODEL,
                "version": v,
                "baseModel": {"uri": "/m"},
                **({"declaredChampion": True} if v == "1.0.0" else {}),
            },
        }
        for v in ("1.0.0", "1.1.0")
    ]


def experiment(prometheus: str, **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ABExperiment",
        "metadata": {"name": f"{MODEL}-1.1.0"},
        "spec": {
            "model": MODEL,
            "challenger": "1.1.0",
            "workload": {"name": MODEL},
            "prometheus": {"url": prometheus, "timeout": "2s"},
            "traffic": {"weight": 40},
            "analysis": {"interval": "2s", "minSamplesPerArm": 1000, **analysis},
        },
    }


@pytest.fixture
def served(
    control_plane: ControlPlane,
    sandbox: Any,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    if sandbox.prometheus_url is None:
        pytest.skip("prometheus is not installed (make test installs it with apt)")
    accuracy = request.param
    apps, core, custom = client.AppsV1Api(api_client), client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    deployment, service, route = serving(MODEL, accuracy)
    apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    for body in versions(namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    operator = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "operator.log")
    yield namespace
    assert stop_operator(operator) == 0, (tmp_path / "operator.log").read_text()


def experiments(
    custom: client.CustomObjectsApi, namespace: str, predicate: Any, timeout: float = 120
) -> dict[str, Any]:
    """The experiment once ``predicate`` holds; on a timeout, the error shows its last status."""
    try:
        return wait_for(
            custom.list_namespaced_custom_object,
            lambda a: a["metadata"]["name"] == f"{MODEL}-1.1.0" and predicate(a),
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="abexperiments",
            timeout=timeout,
        )
    except TimeoutError:
        last = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", f"{MODEL}-1.1.0")
        raise TimeoutError(f"experiment status after {timeout}s: {json.dumps(last.get('status'), indent=1)}") from None


def phase_of(custom: client.CustomObjectsApi, namespace: str, version: str) -> str:
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-{version}")
    return str((mv.get("status") or {}).get("phase"))


def feedback_counters(core: client.CoreV1Api, namespace: str, version: str) -> tuple[float, float]:
    """(correct, total) feedback as the version's server counts it."""
    pod = core.list_namespaced_pod(namespace, label_selector=f"relearn.dev/version={version}").items[0]
    port = json.loads(pod.metadata.annotations["sandbox.relearn.dev/ports"])["8080"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts = {"correct": 0.0, "incorrect": 0.0}
    for line in text.splitlines():
        if line.startswith("relearn_model_feedback_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts["correct"], counts["correct"] + counts["incorrect"]


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.90}], indirect=True)
def test_better_challenger_is_promoted_on_live_traffic(served: str, api_client: client.ApiClient, sandbox: Any) -> None:
    namespace = served
    custom, core, apps = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url)
    )
    running = experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    assert running["status"]["weights"] == {"champion": 60, "challenger": 40}
    assert condition(running, "ChallengerReady")
    challenger = apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace)
    assert challenger.spec.template.metadata.labels["relearn.dev/version"] == "1.1.0"
    assert {e.name: e.value for e in challenger.spec.template.spec.containers[0].env}[
        "RELEARN_MODEL_VERSION"
    ] == "1.1.0"
    assert challenger.metadata.owner_references[0].kind == "ABExperiment"
    # the champion's Service now selects the champion's pods only
    assert core.read_namespaced_service(MODEL, namespace).spec.selector["relearn.dev/version"] == "1.0.0"

    # The gateway moves real traffic in the reported proportion (2 000 requests; fewer than a decision needs).
    share = finish(load(sandbox.gateway_url, f"{MODEL}.test", requests=2000))
    backends = share["backends"]
    assert sum(backends.values()) == 2000
    measured = 100 * backends.get(f"{MODEL}-1-1-0", 0) / 2000
    assert abs(measured - 40) <= 3, f"challenger got {measured:.1f}% of requests at weight 40"

    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        promoted = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Promoted", timeout=180)
    finally:
        finish(generator, stop=True)
    status = promoted["status"]
    assert status["decision"]["outcome"] == "Promote"
    assert status["weights"] == {"champion": 0, "challenger": 100}
    assert status["statistic"]["method"] == "sequential"
    assert status["statistic"]["pValue"] < 0.05
    assert status["statistic"]["ciLower"] > 0
    assert status["statistic"]["lift"] >= 0.02
    assert "p=" in status["decision"]["message"]
    # status numbers are the servers' own counters (Prometheus extrapolates the window edges a little)
    for arm, version in (("champion", "1.0.0"), ("challenger", "1.1.0")):
        correct, total = feedback_counters(core, namespace, version)
        measured_arm = status["arms"][arm]
        assert measured_arm["samples"] >= 1000
        assert measured_arm["samples"] <= total * 1.05
        assert abs(measured_arm["rate"] - correct / total) < 0.03
    assert phase_of(custom, namespace, "1.1.0") == "Champion"
    assert phase_of(custom, namespace, "1.0.0") == "Archived"
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-1.1.0")
    (entry,) = mv["status"]["history"]
    assert entry["action"] == "Promoted"
    assert entry["triggeredBy"] == f"abexperiment/{MODEL}-1.1.0"
    # the new champion's workload no longer belongs to the experiment; the old one stays warm
    assert not apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace).metadata.owner_references
    assert apps.read_namespaced_deployment(MODEL, namespace).status.ready_replicas == 1
    reasons = [e.reason for e in core.list_namespaced_event(namespace).items]
    assert {"ChallengerCreated", "ExperimentStarted", "PromotionStarted", "Promoted"} <= set(reasons)


@pytest.mark.parametrize("served", [{"1.0.0": 0.90, "1.1.0": 0.85}], indirect=True)
def test_worse_challenger_is_rejected_and_missing_data_decides_nothing(
    served: str, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served
    custom, core, apps = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url, minSamplesPerArm=300)
    )
    experiments(custom, namespace, lambda a: condition(a, "MetricsAvailable"))
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        # Prometheus goes away mid-experiment: Inconclusive, weights unchanged, no decision.
        assert control_plane.thread is not None
        control_plane.thread.run(sandbox.prometheus.stop())
        try:
            held = experiments(custom, namespace, lambda a: condition(a, "Inconclusive"), timeout=60)
            assert condition(held, "MetricsAvailable", "False")
            assert held["status"]["phase"] == "Progressing"
            assert held["status"]["weights"] == {"champion": 60, "challenger": 40}
            assert held["status"]["decision"]["outcome"] == "Continue"
        finally:
            control_plane.thread.run(sandbox.prometheus.start())
        rejected = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Rejected", timeout=180)
    finally:
        finish(generator, stop=True)
    status = rejected["status"]
    assert status["decision"]["outcome"] == "Reject"
    assert status["decision"]["reason"] == "ChallengerNotBetter"
    assert status["statistic"]["ciUpper"] < 0.02
    assert status["weights"] == {"champion": 100, "challenger": 0}
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": MODEL, "port": 80, "weight": 100}]
    wait_for(apps.list_namespaced_deployment, lambda d: d["metadata"]["name"] == MODEL, namespace=namespace)
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]
    assert phase_of(custom, namespace, "1.1.0") == "Rejected"
    reasons = [e.reason for e in core.list_namespaced_event(namespace).items]
    assert {"MetricsUnavailable", "MetricsRestored", "ChallengerRejected"} <= set(reasons)


def relearn(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relearn", *args, f"--kubeconfig={control_plane.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.95}], indirect=True)
def test_manual_promotion_waits_for_relearn_promote(
    served: str, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served
    custom = client.CustomObjectsApi(api_client)
    body = experiment(sandbox.prometheus_url, minSamplesPerArm=300)
    body["spec"]["promotion"] = "Manual"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        waiting = experiments(custom, namespace, lambda a: condition(a, "AwaitingApproval"), timeout=120)
        assert waiting["status"]["phase"] == "Progressing"
        assert waiting["status"]["weights"] == {"champion": 60, "challenger": 40}
        assert waiting["status"]["decision"]["reason"] == "AwaitingApproval"
        approved = relearn(control_plane, "promote", f"{MODEL}-1.1.0", "-n", namespace)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.startswith("approved")
        promoted = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Promoted", timeout=60)
    finally:
        finish(generator, stop=True)
    assert promoted["status"]["decision"]["message"].endswith("(approved)")
    assert promoted["metadata"]["annotations"]["relearn.dev/approve"] == "1.1.0"
    again = relearn(control_plane, "promote", f"{MODEL}-1.1.0", "-n", namespace)  # twice = once
    assert again.returncode == 0, again.stderr
    assert "promoted already" in again.stdout
    refused = relearn(control_plane, "abort", f"{MODEL}-1.1.0", "-n", namespace)
    assert refused.returncode == 1
    assert "is Promoted: nothing to abort" in refused.stderr


@pytest.mark.parametrize("served", [{"1.0.0": 0.9, "1.1.0": 0.9}], indirect=True)
def test_abort_and_deletion_send_all_traffic_back_to_the_champion(
    served: str, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served
    custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
    route_of = lambda: custom.get_namespaced_custom_object(  # noqa: E731
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL
    )["spec"]["rules"][0]["backendRefs"]
    original = [{"name": MODEL, "port": 80, "weight": 100}]
    name = f"{MODEL}-1.1.0"

    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url)
    )
    experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    assert len(route_of()) == 2
    for _ in range(2):  # idempotent
        aborted = relearn(control_plane, "abort", name, "-n", namespace)
        assert aborted.returncode == 0, aborted.stderr
    done = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Aborted", timeout=60)
    assert done["status"]["decision"]["outcome"] == "Abort"
    assert "relearn CLI" in done["status"]["decision"]["message"]
    assert done["status"]["weights"] == {"champion": 100, "challenger": 0}
    assert route_of() == original
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]
    assert phase_of(custom, namespace, "1.1.0") == "Rejected"
    assert "aborted already" in relearn(control_plane, "abort", name, "-n", namespace).stdout

    # Deleting a running experiment aborts it too: the finalizer restores routing.
    deleted(custom, namespace, name)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url)
    )
    experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    assert len(route_of()) == 2
    deleted(custom, namespace, name)
    assert route_of() == original
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]


def deleted(custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 60) -> None:
    """Delete an experiment and return once it is gone (its finalizer done)."""
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", name)
    stream = watch.Watch()
    try:
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "abexperiments",
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=int(timeout),
        ):
            if event["type"] == "DELETED" and event["raw_object"]["metadata"]["name"] == name:
                return
    finally:
        stream.stop()
    raise TimeoutError(f"ABExperiment {name} still exists after {timeout}s")
