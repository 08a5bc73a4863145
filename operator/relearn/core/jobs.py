"""The batch/v1 Job that runs the LoRA trainer for a retraining request.

Pure: from the policy, the champion and the request, the manifest the
operator creates. Its name is the request's (deterministic), so creating it
twice is a 409, never a second Job.

With ``spec.retraining.distributed`` the same trainer runs under ``torchrun``
on several workers: an Indexed Job (one pod per node rank, from
``JOB_COMPLETION_INDEX``) with a headless Service whose pod names give the
rendezvous address ``<job>-0.<service>`` (the pattern of JobSet and of
Kubeflow's trainer), or a Kubeflow PyTorchJob when the cluster serves that
CRD and the policy chooses it (:func:`training_kind`). Called by
``relearn.handlers.retraining``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from relearn.api.driftpolicy import DriftPolicySpec, Retraining
from relearn.core.durations import parse_duration
from relearn.core.labels import labelled
from relearn.errors import InvalidSetting

TERMINATION_PATH = "/dev/termination-log"
DISRUPTED = {"type": "DisruptionTarget", "status": "True"}
RENDEZVOUS_PORT = 29500  # torchrun's default master port
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # annotation (and label) of an Indexed Job's pods
PYTORCHJOB_API = ("kubeflow.org", "v1", "pytorchjobs")
TrainingKind = Literal["Job", "PyTorchJob"]


def trainer_args(
    spec: DriftPolicySpec, version: str, base_model_uri: str, champion: Mapping[str, Any] | None, checkpoint_dir: str
) -> list[str]:
    retraining = spec.retraining
    assert retraining is not None
    lora = retraining.lora
    args = [
        "train",
        f"--model={spec.model}",
        f"--model-version={version}",
        f"--dataset={retraining.dataset.uri}",
        f"--base-model={base_model_uri}",
        f"--output={retraining.output.uri}",
        f"--lookback={retraining.dataset.lookback}",
        f"--pseudo-label-confidence={retraining.dataset.pseudo_label_confidence}",
        f"--lora-r={lora.r}",
        f"--lora-alpha={lora.alpha}",
        f"--lora-dropout={lora.dropout}",
        f"--target-modules={','.join(lora.target_modules or [])}",
        f"--epochs={lora.epochs}",
        f"--learning-rate={lora.learning_rate}",
        f"--batch-size={lora.batch_size}",
        f"--gradient-accumulation-steps={lora.gradient_accumulation_steps}",
        f"--checkpoint-dir={checkpoint_dir}",
    ]
    champion_spec = (champion or {}).get("spec") or {}
    args.append(f"--task={(champion_spec.get('baseModel') or {}).get('task') or 'sequence-classification'}")
    if (champion_spec.get("adapter") or {}).get("uri"):
        args.append(f"--champion-adapter={champion_spec['adapter']['uri']}")
    edges = {
        f["name"]: f["edges"]
        for f in (champion_spec.get("baseline") or {}).get("features") or ()
        if f.get("type") == "numeric" and f.get("edges")
    }
    if edges:
        # Keep the metric contract's bucket edges for the new version's baseline.
        args.append(f"--baseline-edges={json.dumps(edges, separators=(',', ':'))}")
    if retraining.distributed is not None:
        args.append(f"--strategy={retraining.distributed.strategy}")
    return args


def name_limit(spec: DriftPolicySpec) -> int:
    """The longest request (Job) name for this policy: 63, less room for
    ``-<index>`` when its pods are named ``<job>-<index>`` (an Indexed Job's
    hostnames, which are DNS labels too)."""
    distributed = spec.retraining.distributed if spec.retraining is not None else None
    if distributed is None:
        return 63
    return 63 - 1 - len(str(distributed.workers - 1))


def training_kind(spec: DriftPolicySpec, kubeflow_served: bool | None) -> TrainingKind:
    """What runs a request: a batch/v1 Job (also for ``backend: job``), or a
    Kubeflow PyTorchJob (``kubeflow``, or ``auto`` where the cluster serves
    kubeflow.org/v1 pytorchjobs; ``kubeflow_served`` None: not asked).
    ``kubeflow`` on a cluster without that CRD is an InvalidSetting."""
    distributed = spec.retraining.distributed if spec.retraining is not None else None
    if distributed is None or distributed.backend == "job":
        return "Job"
    if kubeflow_served:
        return "PyTorchJob"
    if distributed.backend == "kubeflow":
        raise InvalidSetting(
            "distributed.backend is kubeflow but the cluster serves no kubeflow.org/v1 pytorchjobs "
            "(install Kubeflow's training operator, or choose backend job or auto)"
        )
    return "Job"


def rendezvous_service(job_name: str) -> str:
    """The headless Service of a distributed Job: the Job's own name."""
    return job_name


def torchrun_args(workers: int, gpus_per_worker: int, rendezvous: bool = True) -> list[str]:
    """torchrun's arguments: one node per worker, a process per GPU (one on
    CPU); static rendezvous at worker 0 (``--node-rank`` from the Job's
    completion index), fixed by the pod's environment. A PyTorchJob's
    operator sets them itself (``PET_*``), so there only the process count."""
    nproc = [f"--nproc-per-node={max(1, gpus_per_worker)}"]
    if not rendezvous:
        return nproc
    return [
        f"--nnodes={workers}",
        *nproc,
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--max-restarts=0",  # a failed worker fails its pod, so the whole attempt; backoffLimit retries it
    ]


def cpu_threads(limit: object) -> int | None:
    """Threads for a CPU limit (``"2"``, ``"1.5"``, ``"500m"``, 2): its ceiling,
    at least 1; None for anything that is not a CPU quantity. The trainer's
    torch otherwise starts one thread per core of the node, and more threads
    than the limit allows only wait on one another."""
    if isinstance(limit, bool):
        return None
    text = str(limit).strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(m?)", text)
    if match is None:
        return None
    cores = float(match.group(1)) / (1000 if match.group(2) else 1)
    if not math.isfinite(cores) or cores <= 0:
        return None
    return max(1, math.ceil(cores - 1e-9))


def checkpoint_dir(spec: DriftPolicySpec, job_name: str) -> str:
    """Beside the published versions when the output is a mounted path, so a
    retried pod resumes from the last checkpoint; else the pod's /tmp."""
    assert spec.retraining is not None
    output = spec.retraining.output.uri
    for mounted in ("file://", "pvc://"):
        if output.startswith(mounted):
            output = "/" + output.removeprefix(mounted).lstrip("/")
    if "://" in output:
        return f"/tmp/relearn-checkpoints/{job_name}"
    return f"{output.rstrip('/')}/.checkpoints/{job_name}"


def _labels(spec: DriftPolicySpec, policy_name: str, version: str) -> tuple[dict[str, str], dict[str, str]]:
    return labelled(
        {
            "app.kubernetes.io/name": "relearn-trainer",
            "app.kubernetes.io/managed-by": "relearn",
            "relearn.dev/model": spec.model,
            "relearn.dev/policy": policy_name,
            "relearn.dev/version": version,
        }
    )


def _metadata(
    name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str], owner: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        **({"annotations": annotations} if annotations else {}),
        "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
    }


def _policy_owner(policy_name: str, policy_uid: str) -> dict[str, str]:
    return {"apiVersion": "relearn.dev/v1alpha1", "kind": "DriftPolicy", "name": policy_name, "uid": policy_uid}


def _trainer_pod(
    *, name: str, spec: DriftPolicySpec, version: str, base_model_uri: str, champion: Mapping[str, Any] | None
) -> dict[str, Any]:
    retraining = spec.retraining
    assert retraining is not None
    resources: dict[str, Any] = {}
    if retraining.resources is not None:
        resources = retraining.resources.model_dump(exclude_none=True)
    distributed = retraining.distributed
    if distributed is not None and distributed.gpus_per_worker:
        resources["limits"] = {**(resources.get("limits") or {}), "nvidia.com/gpu": distributed.gpus_per_worker}
    env = [{"name": "RELEARN_TERMINATION_MESSAGE_PATH", "value": TERMINATION_PATH}]
    threads = cpu_threads((resources.get("limits") or {}).get("cpu"))
    if threads is not None:
        env.append({"name": "OMP_NUM_THREADS", "value": str(threads)})
    container: dict[str, Any] = {
        "name": "trainer",
        "image": retraining.image,
        "imagePullPolicy": retraining.image_pull_policy,
        "args": trainer_args(spec, version, base_model_uri, champion, checkpoint_dir(spec, name)),
        "env": env,
        "resources": resources,
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if retraining.volumes:
        pod["volumes"] = [
            {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": v.read_only}}
            for v in retraining.volumes
        ]
        container["volumeMounts"] = [
            {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in retraining.volumes
        ]
    if retraining.service_account_name:
        pod["serviceAccountName"] = retraining.service_account_name
    if retraining.node_selector:
        pod["nodeSelector"] = dict(retraining.node_selector)
    if retraining.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in retraining.tolerations]
    return pod


def _under_torchrun(container: dict[str, Any], torchrun: list[str]) -> None:
    """The trainer image's entrypoint (``python -m relearn_trainer``) as
    torchrun's module, launched by ``relearn_trainer.rendezvous`` (torchrun,
    once worker 0 is not still running an attempt that lost a worker)."""
    container["command"] = ["python", "-m", "relearn_trainer.rendezvous"]
    container["args"] = [*torchrun, "-m", "relearn_trainer", *container["args"]]


def training_job(
    kind: TrainingKind,
    *,
    name: str,
    namespace: str,
    policy_name: str,
    policy_uid: str,
    spec: DriftPolicySpec,
    version: str,
    base_model_uri: str,
    champion: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The request's manifest of ``kind`` (:func:`training_kind`): a batch/v1
    Job (:func:`_batch_job`) or a Kubeflow PyTorchJob (:func:`_pytorch_job`),
    with the same trainer pod, name, labels and owner."""
    retraining = spec.retraining
    assert retraining is not None
    labels, annotations = _labels(spec, policy_name, version)
    pod = _trainer_pod(name=name, spec=spec, version=version, base_model_uri=base_model_uri, champion=champion)
    template = {"metadata": {"labels": labels, **({"annotations": annotations} if annotations else {})}, "spec": pod}
    metadata = _metadata(name, namespace, labels, annotations, _policy_owner(policy_name, policy_uid))
    if kind == "PyTorchJob":
        return _pytorch_job(retraining, pod, template, metadata)
    return _batch_job(name, retraining, pod, template, metadata)


def _batch_job(
    name: str, retraining: Retraining, pod: dict[str, Any], template: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    """The request's batch/v1 Job: one trainer pod, or with ``distributed``
    an Indexed Job of ``workers`` pods under torchrun (its rendezvous
    Service is :func:`rendezvous_service_manifest`)."""
    job_spec: dict[str, Any] = {
        "backoffLimit": retraining.backoff_limit,
        "activeDeadlineSeconds": int(parse_duration(retraining.active_deadline).total_seconds()),
        # A node drain or preemption is not the trainer's failure: do not count it.
        "podFailurePolicy": {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
        },
    }
    distributed = retraining.distributed
    if distributed is not None:
        workers = distributed.workers
        container = pod["containers"][0]
        _under_torchrun(container, torchrun_args(workers, distributed.gpus_per_worker))
        container["env"] += [
            {"name": "MASTER_ADDR", "value": f"{name}-0.{rendezvous_service(name)}"},
            {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
        ]
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
        pod["subdomain"] = rendezvous_service(name)
        job_spec.update(
            completionMode="Indexed",
            completions=workers,
            parallelism=workers,
            # One failed worker fails the others' collectives, so an attempt
            # fails up to ``workers`` pods: backoffLimit counts attempts.
            backoffLimit=(retraining.backoff_limit + 1) * workers - 1,
            # Done once worker 0 (rank 0, which published) succeeded: a worker lost
            # after that is not retried alone, to wait for a rendezvous that never comes.
            successPolicy={"rules": [{"succeededIndexes": "0", "succeededCount": 1}]},
        )
    job_spec["template"] = template
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def rendezvous_service_manifest(*, job: Mapping[str, Any]) -> dict[str, Any]:
    """The headless Service of a distributed Job, owned by the Job (removed
    with it): it gives each worker pod the name ``<job>-<index>.<service>``,
    also before the pod is ready (``publishNotReadyAddresses``: workers
    rendezvous while starting)."""
    meta = job["metadata"]
    name = str(meta["name"])
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta.get("uid", "")}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            rendezvous_service(name), str(meta["namespace"]), dict(meta.get("labels") or {}), {}, owner
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }


def _pytorch_job(
    retraining: Retraining, pod: dict[str, Any], template: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    """The request as a Kubeflow PyTorchJob (kubeflow.org/v1): a Master and
    ``workers - 1`` Workers, whose rendezvous Kubeflow's training operator
    sets up (``PET_*`` variables torchrun reads). Same pod, name and labels
    as the Job; the Master is rank 0, which alone publishes."""
    assert retraining.distributed is not None
    distributed = retraining.distributed
    container = pod["containers"][0]
    container["name"] = "pytorch"  # the container Kubeflow's operator configures
    _under_torchrun(container, torchrun_args(distributed.workers, distributed.gpus_per_worker, rendezvous=False))
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if distributed.workers > 1:
        replicas["Worker"] = {"replicas": distributed.workers - 1, "restartPolicy": "Never", "template": template}
    group, api_version, _ = PYTORCHJOB_API
    return {
        "apiVersion": f"{group}/{api_version}",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {
            "nprocPerNode": str(max(1, distributed.gpus_per_worker)),
            "runPolicy": {
                "backoffLimit": retraining.backoff_limit,
                "activeDeadlineSeconds": int(parse_duration(retraining.active_deadline).total_seconds()),
                "cleanPodPolicy": "None",  # the pods keep the termination message the operator reads
            },
            "pytorchReplicaSpecs": replicas,
        },
    }


def result_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods whose termination message is the result: all of a
    one-pod Job's; of a distributed one, worker 0's (rank 0 alone publishes):
    completion index 0 of an Indexed Job, the Master of a PyTorchJob."""
    zero = [
        p
        for p in pods
        if str(((p.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX)) == "0"
        or ((p.get("metadata") or {}).get("labels") or {}).get("training.kubeflow.org/replica-type")
        in ("master", "Master")
    ]
    distributed = any(
        COMPLETION_INDEX in ((p.get("metadata") or {}).get("annotations") or {})
        or "training.kubeflow.org/replica-type" in ((p.get("metadata") or {}).get("labels") or {})
        for p in pods
    )
    return zero if distributed else list(pods)
