"""A distributed retraining: the Indexed Job, its rendezvous Service and the
Kubeflow PyTorchJob the operator builds from ``spec.retraining.distributed``,
which of them it chooses, and whose result it reads (rank 0's)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import kubernetes_validate
import pytest
from fake_kube import FakeKube
from hypothesis import given
from hypothesis import strategies as st
from invoice_example import CHAMPION, EXAMPLE, example_job
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.core import retraining
from relearn.core.jobs import (
    TrainingKind,
    name_limit,
    rendezvous_service_manifest,
    result_pods,
    training_kind,
)
from relearn.errors import InvalidSetting
from relearn.handlers import retraining as retraining_handler

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def spec_with(**distributed: Any) -> DriftPolicySpec:
    body = copy.deepcopy(EXAMPLE["spec"])
    body["retraining"]["distributed"] = distributed
    return DriftPolicySpec.model_validate(body)


def build(spec: DriftPolicySpec, kind: TrainingKind = "Job", name: str = "invoice-classifier-rt-1-abcdef") -> Any:
    return example_job(spec, kind, name=name)


@pytest.mark.parametrize("k8s", ["1.31.0", "1.33.0"])  # successPolicy: 1.31 and later
def test_the_indexed_job_and_its_service_pass_kubernetes_validation(k8s: str) -> None:
    job = build(spec_with(workers=4, gpusPerWorker=8))
    kubernetes_validate.validate(job, k8s, strict=True)
    kubernetes_validate.validate(rendezvous_service_manifest(job={**job, "metadata": {**job["metadata"]}}), k8s)


def test_workers_run_torchrun_from_an_indexed_job_meeting_at_worker_zero() -> None:
    job = build(spec_with(workers=3, gpusPerWorker=2))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 3, 3)
    assert container["command"] == ["python", "-m", "relearn_trainer.rendezvous"]  # torchrun, after a stale attempt
    torchrun = container["args"][: container["args"].index("-m")]
    assert "--nnodes=3" in torchrun
    assert "--nproc-per-node=2" in torchrun
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in torchrun
    assert container["args"][len(torchrun) : len(torchrun) + 3] == ["-m", "relearn_trainer", "train"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MASTER_ADDR"] == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert env["MASTER_PORT"] == "29500"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--strategy=ddp" in container["args"]
    # the example's backoffLimit 2: three attempts, each failing up to all three workers' pods
    assert job["spec"]["backoffLimit"] == 3 * 3 - 1
    # done when worker 0 (which publishes) is
    assert job["spec"]["successPolicy"] == {"rules": [{"succeededIndexes": "0", "succeededCount": 1}]}


def test_the_rendezvous_service_is_headless_owned_by_the_job_and_names_not_ready_workers() -> None:
    job = build(spec_with(workers=2))
    job["metadata"]["uid"] = "job-uid"
    service = rendezvous_service_manifest(job=job)
    assert service["metadata"]["name"] == job["spec"]["template"]["spec"]["subdomain"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    (owner,) = service["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Job", "job-uid")


def test_one_pod_jobs_are_unchanged_by_the_distributed_builders() -> None:
    job = build(DriftPolicySpec.model_validate(EXAMPLE["spec"]))
    assert "completionMode" not in job["spec"]
    assert "command" not in job["spec"]["template"]["spec"]["containers"][0]
    assert job["spec"]["backoffLimit"] == 2


@given(policy=st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True), workers=st.integers(1, 64))
def test_every_worker_hostname_is_a_dns_label(policy: str, workers: int) -> None:
    spec = spec_with(workers=workers)
    name = retraining.request_name(policy, "uid", 12345, name_limit(spec))
    assert len(f"{name}-{workers - 1}") <= 63


@given(
    backend=st.sampled_from(["auto", "job", "kubeflow"]),
    served=st.sampled_from([True, False, None]),
)
def test_kubeflow_runs_a_training_only_when_served_and_chosen(backend: str, served: bool | None) -> None:
    spec = spec_with(workers=2, backend=backend)
    try:
        kind = training_kind(spec, served)
    except InvalidSetting:
        assert (backend, bool(served)) == ("kubeflow", False)
        return
    assert kind == ("PyTorchJob" if backend != "job" and served else "Job")


def test_a_pytorchjob_has_a_master_and_the_other_workers() -> None:
    job = build(spec_with(workers=4, gpusPerWorker=1, backend="kubeflow", strategy="fsdp"), "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 3)
    container = replicas["Master"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["command"] == ["python", "-m", "relearn_trainer.rendezvous"]  # torchrun, after a stale attempt
    assert "--strategy=fsdp" in container["args"]
    assert job["spec"]["runPolicy"]["backoffLimit"] == 2


def _pod(index: int, finished: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "status": {"containerStatuses": [{"state": {"terminated": {"finishedAt": finished, "message": message}}}]},
    }


def test_the_result_is_rank_zeros_even_when_another_worker_finishes_later() -> None:
    pods = [_pod(0, "2026-01-01T00:00:01Z", '{"uri": "/out"}'), _pod(1, "2026-01-01T00:00:09Z", "")]
    assert retraining.termination_message(pods) == '{"uri": "/out"}'
    assert result_pods([{"metadata": {}}]) == [{"metadata": {}}]


def with_champion(kube: FakeKube) -> FakeKube:
    kube.add("modelversions", copy.deepcopy(CHAMPION) | {"status": {"phase": "Champion"}})
    return kube


def requested() -> RetrainingRecord:
    return RetrainingRecord(job="invoice-classifier-rt-1-abcdef", sequence=1, outcome="Requested")


async def advance(
    kube: FakeKube, spec: DriftPolicySpec, record: RetrainingRecord
) -> retraining_handler.Progress | None:
    """The example policy's request ``record`` one step on."""
    return await retraining_handler.advance(
        kube, name="invoice-classifier", namespace="default", uid="uid-1", spec=spec, record=record, now=NOW
    )


async def test_a_distributed_request_creates_one_indexed_job_and_its_service() -> None:
    kube = with_champion(FakeKube())
    spec = spec_with(workers=2)
    record = requested()
    for _ in range(2):
        progress = await advance(kube, spec, record)
        assert progress is not None
        record = progress.record
    assert record.outcome == "Running"
    (job,) = kube.of("jobs")
    (service,) = kube.of("services")
    assert job["spec"]["completionMode"] == "Indexed"
    assert service["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


@pytest.mark.parametrize(("backend", "served", "kind"), [("auto", True, "pytorchjobs"), ("auto", False, "jobs")])
async def test_auto_chooses_kubeflow_where_the_cluster_serves_it(backend: str, served: bool, kind: str) -> None:
    kube = with_champion(FakeKube())
    if served:
        kube.served.add("pytorchjobs")
    record = requested()
    progress = await advance(kube, spec_with(workers=2, backend=backend), record)
    assert progress is not None
    assert progress.record.outcome == "Running"
    assert [o["metadata"]["name"] for o in kube.of(kind)] == [record.job]


async def test_kubeflow_chosen_on_a_cluster_without_it_fails_the_request_saying_so() -> None:
    kube = with_champion(FakeKube())
    progress = await advance(kube, spec_with(backend="kubeflow"), requested())
    assert progress is not None
    assert progress.record.outcome == "Failed"
    assert progress.condition is not None
    assert "pytorchjobs" in progress.condition.message
    assert kube.of("jobs") == []
    assert kube.of("pytorchjobs") == []
    assert [event.reason for event in progress.events] == ["RetrainingFailed"]
