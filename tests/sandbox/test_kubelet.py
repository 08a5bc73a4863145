"""The sandbox kubelet: Deployments and Jobs run as local processes, with
readiness, restarts, rollouts, termination messages and Endpoints; the
gateway applies HTTPRoute weights; Prometheus scrapes the pods.

Sandbox-only: the pods run this machine's Python, not container images."""

from __future__ import annotations

import collections
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from relearn_sandbox.cluster import Sandbox
from relearn_sandbox.testing import condition, wait_for

SERVER = """
import os, http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            code, body = (503, b"not ready") if os.environ.get("NOT_READY") else (200, b"ok")
        elif self.path == "/metrics":
            code, body = 200, b"# TYPE served_total counter\\nserved_total 7\\n"
        else:
            code, body = 200, (os.environ.get("ANSWER", "") + " " + os.environ["HOSTNAME"]).encode()
        self.send_response(code); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def deployment(name: str, replicas: int = 1, env: dict[str, str] | None = None, **template_meta: Any) -> dict[str, Any]:
    labels = {"app": name, **template_meta.pop("labels", {})}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, **template_meta},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "example/server:1.0",
                            "command": [sys.executable, "-c", SERVER],
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                        }
                    ]
                },
            },
        },
    }


def service(name: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "example/job:1.0", "command": [sys.executable, "-c", code]}
                    ],
                }
            },
        },
    }


@pytest.fixture
def apps(api_client: client.ApiClient, sandbox: Sandbox) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def batch(api_client: client.ApiClient, sandbox: Sandbox) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


def available(apps: client.AppsV1Api, namespace: str, name: str, replicas: int = 1) -> dict[str, Any]:
    return wait_for(
        apps.list_namespaced_deployment,
        lambda d: (
            d["metadata"]["name"] == name
            and d.get("status", {}).get("readyReplicas", 0) == replicas
            and d["status"].get("replicas") == replicas
        ),
        namespace=namespace,
    )


def finished(batch: client.BatchV1Api, namespace: str, name: str, type_: str) -> dict[str, Any]:
    return wait_for(
        batch.list_namespaced_job, lambda j: j["metadata"]["name"] == name and condition(j, type_), namespace=namespace
    )


def test_deployment_pods_become_ready_and_fill_endpoints(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    core.create_namespaced_service(namespace, service("web", "web"))
    status = available(apps, namespace, "web", replicas=2)["status"]
    assert (status["availableReplicas"], status["updatedReplicas"]) == (2, 2)
    endpoints = wait_for(
        core.list_namespaced_endpoints,
        lambda e: (
            e["metadata"]["name"] == "web" and sum(len(s.get("addresses") or ()) for s in e.get("subsets") or ()) == 2
        ),
        namespace=namespace,
    )
    for subset in endpoints["subsets"]:
        (port,) = subset["ports"]
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port['port']}/", timeout=5).read().decode()
        assert answer.strip() == subset["addresses"][0]["targetRef"]["name"]


def test_unready_pod_stays_out_of_endpoints(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("shy", env={"NOT_READY": "1"}))
    core.create_namespaced_service(namespace, service("shy", "shy"))
    endpoints = wait_for(
        core.list_namespaced_endpoints,
        lambda e: e["metadata"]["name"] == "shy" and any(s.get("notReadyAddresses") for s in e.get("subsets") or ()),
        namespace=namespace,
    )
    assert all(not s.get("addresses") for s in endpoints["subsets"])
    pod = core.list_namespaced_pod(namespace, label_selector="app=shy").items[0]
    assert pod.status.phase == "Running"
    assert not pod.status.container_statuses[0].ready


def test_template_change_rolls_the_pods(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("roll", env={"ANSWER": "v1"}))
    available(apps, namespace, "roll")
    old = {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=roll").items}
    apps.patch_namespaced_deployment(
        "roll",
        namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "server", "env": [{"name": "ANSWER", "value": "v2"}]}]}}
            }
        },
    )
    wait_for(
        core.list_namespaced_pod,
        lambda p: p["metadata"]["name"] not in old and condition(p, "Ready"),
        namespace=namespace,
        label_selector="app=roll",
    )
    rolled = wait_for(
        apps.list_namespaced_deployment,
        lambda d: (
            d["metadata"]["name"] == "roll"
            and d["status"].get("replicas") == 1
            and d["status"].get("readyReplicas") == 1
            and d["status"].get("updatedReplicas") == 1
        ),
        namespace=namespace,
    )
    assert rolled["status"]["availableReplicas"] == 1
    pods = core.list_namespaced_pod(namespace, label_selector="app=roll").items
    assert len(pods) == 1
    assert pods[0].metadata.name not in old
    assert pods[0].spec.containers[0].env[0].value == "v2"


def test_crashing_container_restarts_with_backoff(core: client.CoreV1Api, namespace: str, sandbox: Sandbox) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "crash"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "example/crash:1.0",
                        "command": [sys.executable, "-c", "raise SystemExit(3)"],
                    }
                ]
            },
        },
    )
    pod = wait_for(
        core.list_namespaced_pod,
        lambda p: any(s.get("restartCount", 0) >= 1 for s in p.get("status", {}).get("containerStatuses") or ()),
        namespace=namespace,
    )
    status = pod["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 3


def test_job_termination_message_reaches_pod_status(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    code = (
        "import json, os; open(os.environ['RELEARN_TERMINATION_MESSAGE_PATH'], 'w')"
        ".write(json.dumps({'uri': 'file:///out/1.1.0', 'accuracy': 0.91}))"
    )
    batch.create_namespaced_job(namespace, job("train", code))
    status = finished(batch, namespace, "train", "Complete")["status"]
    assert status["succeeded"] == 1
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=train").items
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == {"uri": "file:///out/1.1.0", "accuracy": 0.91}


def test_failing_job_fails_after_backoff_limit(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, job("broken", "raise SystemExit(1)", backoffLimit=1))
    failed = finished(batch, namespace, "broken", "Failed")
    (reason,) = [c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed"]
    assert reason == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 2
    assert len(core.list_namespaced_pod(namespace, label_selector="job-name=broken").items) == 2


def test_job_past_its_deadline_fails(batch: client.BatchV1Api, namespace: str) -> None:
    batch.create_namespaced_job(namespace, job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1))
    failed = finished(batch, namespace, "slow", "Failed")
    assert [c["reason"] for c in failed["status"]["conditions"]] == ["DeadlineExceeded"]


def test_deleting_a_deployment_stops_its_processes(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("brief"))
    available(apps, namespace, "brief")
    pod = core.list_namespaced_pod(namespace, label_selector="app=brief").items[0]
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("sandbox://"))
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    apps.delete_namespaced_deployment("brief", namespace)
    from kubernetes import watch

    for event in watch.Watch().stream(core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=20):
        if event["type"] == "DELETED":
            break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the process exits within its grace period
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} of a deleted pod still runs")


def test_gateway_follows_httproute_weights(
    apps: client.AppsV1Api, core: client.CoreV1Api, api_client: Any, namespace: str, sandbox: Sandbox
) -> None:
    for arm in ("champion", "challenger"):
        apps.create_namespaced_deployment(namespace, deployment(arm, env={"ANSWER": arm}))
        core.create_namespaced_service(namespace, service(arm, arm))
    for arm in ("champion", "challenger"):
        available(apps, namespace, arm)
        wait_for(
            core.list_namespaced_endpoints,
            lambda e, a=arm: e["metadata"]["name"] == a and any(s.get("addresses") for s in e.get("subsets") or ()),
            namespace=namespace,
        )
    routes = client.CustomObjectsApi(api_client)
    host = f"model.{namespace}.test"

    def set_weights(champion: int, challenger: int) -> None:
        body = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "model"},
            "spec": {
                "hostnames": [host],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "champion", "port": 80, "weight": champion},
                            {"name": "challenger", "port": 80, "weight": challenger},
                        ]
                    }
                ],
            },
        }
        try:
            routes.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", body)
        except client.ApiException:
            routes.patch_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", namespace, "httproutes", "model", {"spec": body["spec"]}
            )

    def answers(count: int) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(count):
            request = urllib.request.Request(f"{sandbox.gateway_url}/predict", headers={"Host": host})
            seen[urllib.request.urlopen(request, timeout=5).read().decode().split()[0]] += 1
        return seen

    set_weights(100, 0)
    assert answers(20) == {"champion": 20}
    set_weights(0, 100)
    started = time.monotonic()
    assert answers(20) == {"challenger": 20}
    assert time.monotonic() - started < 5
    set_weights(50, 50)
    both = answers(200)
    assert both["champion"] > 50
    assert both["challenger"] > 50


def test_prometheus_scrapes_annotated_pods_with_their_labels(
    apps: client.AppsV1Api, namespace: str, prometheus_url: str
) -> None:
    apps.create_namespaced_deployment(
        namespace,
        deployment(
            "scraped",
            labels={"relearn.dev/model": "invoice-classifier"},
            annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
        ),
    )
    available(apps, namespace, "scraped")
    query = urllib.parse.quote(f'served_total{{namespace="{namespace}"}}')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Prometheus scrapes on its own clock (1 s here)
        result = json.loads(urllib.request.urlopen(f"{prometheus_url}/api/v1/query?query={query}", timeout=5).read())[
            "data"
        ]["result"]
        if result:
            metric = result[0]["metric"]
            assert metric["relearn_dev_model"] == "invoice-classifier"
            assert metric["pod"].startswith("scraped-")
            assert result[0]["value"][1] == "7"
            return
        time.sleep(0.5)
    raise AssertionError("prometheus never scraped the pod")
