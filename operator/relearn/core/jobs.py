"""The batch/v1 Job that runs the LoRA trainer for a retraining request.

Pure: from the policy, the champion and the request, the manifest the
operator creates. Its name is the request's (deterministic), so creating it
twice is a 409, never a second Job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core.durations import parse_duration
from relearn.core.labels import labelled

TERMINATION_PATH = "/dev/termination-log"
DISRUPTED = {"type": "DisruptionTarget", "status": "True"}


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
    return args


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


def retraining_job(
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
    retraining = spec.retraining
    assert retraining is not None
    labels, annotations = labelled(
        {
            "app.kubernetes.io/name": "relearn-trainer",
            "app.kubernetes.io/managed-by": "relearn",
            "relearn.dev/model": spec.model,
            "relearn.dev/policy": policy_name,
            "relearn.dev/version": version,
        }
    )
    resources: dict[str, Any] = {}
    if retraining.resources is not None:
        resources = retraining.resources.model_dump(exclude_none=True)
    env = [{"name": "RELEARN_TERMINATION_MESSAGE_PATH", "value": TERMINATION_PATH}]
    threads = cpu_threads((resources.get("limits") or {}).get("cpu"))
    if threads is not None:
        env.append({"name": "OMP_NUM_THREADS", "value": str(threads)})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
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
        ],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if retraining.volumes:
        pod["volumes"] = [
            {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": v.read_only}}
            for v in retraining.volumes
        ]
        pod["containers"][0]["volumeMounts"] = [
            {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in retraining.volumes
        ]
    if retraining.service_account_name:
        pod["serviceAccountName"] = retraining.service_account_name
    if retraining.node_selector:
        pod["nodeSelector"] = dict(retraining.node_selector)
    if retraining.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in retraining.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            **({"annotations": annotations} if annotations else {}),
            "ownerReferences": [
                {
                    "apiVersion": "relearn.dev/v1alpha1",
                    "kind": "DriftPolicy",
                    "name": policy_name,
                    "uid": policy_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": retraining.backoff_limit,
            "activeDeadlineSeconds": int(parse_duration(retraining.active_deadline).total_seconds()),
            # A node drain or preemption is not the trainer's failure: do not count it.
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
            },
            "template": {
                "metadata": {"labels": labels, **({"annotations": annotations} if annotations else {})},
                "spec": pod,
            },
        },
    }
