"""The sandbox kubelet runs Indexed Jobs as a cluster does: a pod per
completion index with ``JOB_COMPLETION_INDEX`` and the hostname
``<job>-<index>``, whose peers' names under the Job's subdomain reach them on
loopback (a rendezvous at worker 0 works); a failed index past the backoff
limit fails the Job and stops the others.

Sandbox-only: the pods run this machine's Python."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from kubernetes import client
from relearn_sandbox.cluster import Sandbox
from relearn_sandbox.testing import condition, wait_for

# Worker 0 listens at MASTER_ADDR:MASTER_PORT; every other worker sends it its index.
RENDEZVOUS = """
import json, os, socket, time
index = int(os.environ["JOB_COMPLETION_INDEX"])
address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
seen = []
if index == 0:
    server = socket.create_server((address, port))
    connection, _ = server.accept()
    seen.append(int(connection.recv(16)))
else:
    for _ in range(200):
        try:
            with socket.create_connection((address, port)) as connection:
                connection.sendall(str(index).encode())
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise SystemExit("worker 0 unreachable")
report = {"index": index, "hostname": os.environ["HOSTNAME"], "address": address, "seen": seen}
open(os.environ["RELEARN_TERMINATION_MESSAGE_PATH"], "w").write(json.dumps(report))
"""


def indexed_job(name: str, code: str, workers: int = 2, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "example/job:1.0",
        "command": [sys.executable, "-c", code],
        "env": [{"name": "MASTER_ADDR", "value": f"{name}-0.{name}"}, {"name": "MASTER_PORT", "value": "29500"}],
        "ports": [{"containerPort": 29500}],
    }
    return {
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "subdomain": name, "containers": [container]}},
        },
    }


@pytest.fixture
def batch(api_client: client.ApiClient, sandbox: Sandbox) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


def finished(batch: client.BatchV1Api, namespace: str, name: str, type_: str) -> dict[str, Any]:
    return wait_for(
        batch.list_namespaced_job, lambda j: j["metadata"]["name"] == name and condition(j, type_), namespace=namespace
    )


def test_indexed_workers_meet_at_worker_zero_by_its_name(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, indexed_job("ring", RENDEZVOUS))
    status = finished(batch, namespace, "ring", "Complete")["status"]
    assert (status["succeeded"], status["completedIndexes"]) == (2, "0,1")
    reports = {}
    for pod in core.list_namespaced_pod(namespace, label_selector="job-name=ring").items:
        report = json.loads(pod.status.container_statuses[0].state.terminated.message)
        assert pod.metadata.annotations["batch.kubernetes.io/job-completion-index"] == str(report["index"])
        reports[report["index"]] = report
    assert reports[0]["hostname"] == "ring-0"
    assert reports[0]["address"] == "127.0.0.1"  # the peer's DNS name, on loopback
    assert reports[0]["seen"] == [1]


def test_a_failed_index_past_the_backoff_limit_fails_the_job_and_stops_the_others(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    code = "import os, time\nif os.environ['JOB_COMPLETION_INDEX'] == '1': raise SystemExit(3)\ntime.sleep(60)"
    batch.create_namespaced_job(namespace, indexed_job("split", code, backoffLimit=0))
    failed = finished(batch, namespace, "split", "Failed")
    assert [c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed"] == ["BackoffLimitExceeded"]
    # The controller deletes the running workers as it fails the Job.
    workers = core.list_namespaced_pod(namespace, label_selector="job-name=split").items
    assert all(p.metadata.deletion_timestamp or p.status.phase == "Failed" for p in workers)
    assert failed["status"]["active"] == 0


def test_a_success_policy_on_worker_zero_completes_the_job_and_stops_the_others(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    code = "import os, time\nif os.environ['JOB_COMPLETION_INDEX'] == '1': time.sleep(60)"
    rules = {"rules": [{"succeededIndexes": "0", "succeededCount": 1}]}
    batch.create_namespaced_job(namespace, indexed_job("leader", code, successPolicy=rules))
    done = finished(batch, namespace, "leader", "Complete")
    assert condition(done, "SuccessCriteriaMet")
    workers = core.list_namespaced_pod(namespace, label_selector="job-name=leader").items
    assert all(p.metadata.deletion_timestamp or p.status.phase == "Succeeded" for p in workers)
