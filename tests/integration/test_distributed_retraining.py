"""A distributed retraining end to end in the sandbox: a DriftPolicy with
``distributed: {workers: 2}`` gets one Indexed Job whose two CPU workers
(torchrun, gloo) train one adapter, registered as one ModelVersion; a worker
killed mid-run fails the attempt, and the retry resumes from the checkpoint
and still registers one version.

Sandbox-only: the workers are local processes meeting on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from relearn_sandbox.cluster import Sandbox
from test_retraining_loop import GROUP, VERSION, policy, retraining_of, world  # noqa: F401 (world: a fixture)

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def first_checkpoint(folder: Path, timeout: float = 300) -> None:
    """Training is under way once rank 0 wrote its first checkpoint (a file: no event to await)."""
    deadline = time.monotonic() + timeout
    while not (folder / "state.pt").exists():
        assert time.monotonic() < deadline, f"no checkpoint in {folder} within {timeout:.0f}s"
        time.sleep(0.2)


def finished(
    custom: client.CustomObjectsApi, batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str, job: str
) -> str:
    """Succeeded once the retraining did; else what it ended with (or that it
    did not end), the Job's status and its pods' last lines, to show why."""
    try:
        policy = retraining_of(custom, namespace, "documents", ("Succeeded", "Failed"), timeout=600)
        last = policy["status"]["lastRetraining"]
    except TimeoutError as error:
        last = str(error)
    if isinstance(last, dict) and last["outcome"] == "Succeeded":
        return "Succeeded"
    lines = [f"{last}", f"Job status: {batch.read_namespaced_job_status(job, namespace).status}"]
    for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items:
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=15)
        lines.append(f"--- {pod.metadata.name} ({pod.status.phase}):\n{log}")
    return "\n".join(lines)


def test_two_workers_train_one_version_and_a_killed_worker_is_retried_cleanly(
    world: dict[str, Any],  # noqa: F811
    api_client: client.ApiClient,
    sandbox: Sandbox,
) -> None:
    custom, batch, core = (
        client.CustomObjectsApi(api_client),
        client.BatchV1Api(api_client),
        client.CoreV1Api(api_client),
    )
    namespace, tmp = world["namespace"], world["tmp"]
    body = policy("documents", world["prometheus"], tmp / "data", tmp / "out")
    retraining = body["spec"]["retraining"]
    retraining.update(distributed={"workers": 2}, backoffLimit=1, resources={"limits": {"cpu": "1"}})
    # Long enough (800 steps) for the kill after the first checkpoint (step 50) to land mid-training.
    retraining["lora"]["epochs"] = 40
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", body)
    job_name = retraining_of(custom, namespace, "documents", "Running")["status"]["lastRetraining"]["job"]

    first_checkpoint(tmp / "out" / ".checkpoints" / job_name)
    (worker,) = [
        p
        for p in core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
        if p.metadata.annotations.get(COMPLETION_INDEX) == "1" and p.status.phase == "Running"
    ]
    assert sandbox.kill_pod(namespace, worker.metadata.name)

    outcome = finished(custom, batch, core, namespace, job_name)
    assert outcome == "Succeeded", outcome
    (job,) = batch.list_namespaced_job(namespace, label_selector="relearn.dev/policy=documents").items
    assert job.metadata.name == job_name
    assert job.spec.completion_mode == "Indexed"
    assert job.status.failed >= 1  # the killed worker (and rank 0, whose collective broke with it)
    assert "0" in job.status.completed_indexes.split(",")  # worker 0 published: the Job's success policy
    service = core.read_namespaced_service(job_name, namespace)
    assert service.spec.cluster_ip == "None"

    versions = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")["items"]
    assert sorted(v["metadata"]["name"] for v in versions) == ["documents-1.0.0", "documents-1.1.0"]
    spec = next(v for v in versions if v["metadata"]["name"] == "documents-1.1.0")["spec"]
    assert spec["metrics"]["accuracy"] >= spec["metrics"]["championAccuracy"] + 0.2
    assert spec["source"]["job"] == job_name
    assert sorted(p.name for p in (tmp / "out").iterdir() if not p.name.startswith(".")) == ["1.1.0"]
    training = json.loads((tmp / "out" / "1.1.0" / "metrics.json").read_text())["training"]
    assert training["resumed"] is True  # the retry went on from the checkpoint
    assert training["workers"] == 2
