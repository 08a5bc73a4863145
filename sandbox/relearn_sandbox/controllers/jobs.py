"""The Job controller, Indexed Jobs included.

A Job runs one pod at a time until a success, a failure past
``backoffLimit`` (retries back off from ``job_backoff`` seconds, doubling to
10 s), or ``activeDeadlineSeconds``. An Indexed Job (``completionMode:
Indexed``) gets a pod per completion index not yet succeeded
(``parallelism`` at once), each with the index in its annotation and label
``batch.kubernetes.io/job-completion-index`` and in ``JOB_COMPLETION_INDEX``,
and the hostname ``<job>-<index>``; it is complete when every index has
succeeded or a ``successPolicy`` rule is met, failed past ``backoffLimit``
(failed pods of all indexes). Run by :class:`relearn_sandbox.kubelet.Kubelet`,
which syncs a Job again when :attr:`JobController.later` asks.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from relearn_sandbox.controllers.objects import create_pod, delete_pod, owned, patch_status, pod_phase
from relearn_sandbox.store import Store, now_rfc3339

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


class JobController:
    def __init__(self, store: Store, *, job_backoff: float, later: Callable[[float, str, str], None]) -> None:
        self.store = store
        self.job_backoff = job_backoff
        # Sync the Job (namespace, name) again in so many seconds: a backoff or deadline ends then.
        self.later = later

    async def sync(self, namespace: str, name: str) -> None:
        job = self.store.try_get("batch", "jobs", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        status = dict(job.get("status") or {})
        if any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or ()
        ):
            return
        spec = job.get("spec", {})
        pods = owned(self.store, "pods", "", namespace, job["metadata"]["uid"])
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions", 1))
        succeeded = sum(1 for p in pods if pod_phase(p) == "Succeeded")
        failed = sum(1 for p in pods if pod_phase(p) == "Failed")
        active = [
            p for p in pods if pod_phase(p) in ("Pending", "Running") and not p["metadata"].get("deletionTimestamp")
        ]
        done = {_index(p) for p in pods if pod_phase(p) == "Succeeded"} if indexed else set()
        started = status.get("startTime") or now_rfc3339()
        conditions: list[dict[str, Any]] = []
        deadline = spec.get("activeDeadlineSeconds")
        elapsed = (
            datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
        ).total_seconds()
        if indexed and any(
            _success_rule_met(rule, done) for rule in (spec.get("successPolicy") or {}).get("rules") or ()
        ):
            conditions = [
                _condition("SuccessCriteriaMet", "SuccessPolicy", "Matched a success policy rule"),
                _condition("Complete", "SuccessPolicy", "Reached expected number of succeeded pods"),
            ]
        elif (len(done & set(range(completions))) if indexed else succeeded) >= completions:
            conditions = [_condition("Complete", "", "")]
        elif failed > int(spec.get("backoffLimit", 6)):
            conditions = [_condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
        elif deadline is not None and elapsed >= float(deadline):
            conditions = [_condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]
        running = {_index(p) for p in active}
        missing = [i for i in range(completions) if i not in done and i not in running] if indexed else []
        if conditions:
            for pod in active:
                delete_pod(self.store, namespace, pod["metadata"]["name"])
            active = []
        elif not active or missing:
            if failed and pods:
                last_failure = max(
                    ((s.get("state") or {}).get("terminated") or {}).get("finishedAt", "")
                    for p in pods
                    for s in p.get("status", {}).get("containerStatuses") or [{}]
                )
                wait = min(self.job_backoff * 2 ** (failed - 1), 10.0)
                since = _seconds_since(last_failure)
                if since is not None and since < wait:
                    self.later(wait - since, namespace, name)
                    return
            labels = {"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": job["metadata"]["uid"]}
            template = copy.deepcopy(spec.get("template", {}))
            template.setdefault("spec", {}).setdefault("restartPolicy", "Never")
            if not indexed:
                active = [create_pod(self.store, namespace, job, template, f"{name}-", labels)]
            for index in missing[: max(0, int(spec.get("parallelism", completions)) - len(active))]:
                active.append(
                    create_pod(
                        self.store,
                        namespace,
                        job,
                        _indexed(template, name, index),
                        f"{name}-{index}-",
                        {**labels, COMPLETION_INDEX: str(index)},
                    )
                )
        if deadline is not None and not conditions:
            self.later(max(0.1, float(deadline) - elapsed), namespace, name)
        new_status: dict[str, Any] = {
            "startTime": started,
            "active": len(active),
            "succeeded": succeeded,
            "failed": failed,
        }
        if indexed:
            new_status["completedIndexes"] = ",".join(str(i) for i in sorted(done))
        if conditions:
            new_status["conditions"] = conditions
            if conditions[-1]["type"] == "Complete":
                new_status["completionTime"] = now_rfc3339()
        if {k: status.get(k) for k in new_status} != new_status:
            patch_status(self.store, "batch", "jobs", namespace, name, new_status)


def _index(pod: Mapping[str, Any]) -> int:
    """An Indexed Job's pod's completion index (-1 for none)."""
    text = str((pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, ""))
    return int(text) if text.isdecimal() else -1


def _index_set(text: object) -> set[int]:
    """Completion indexes written as Kubernetes does (``"0,2-4"``)."""
    indexes: set[int] = set()
    for part in str(text or "").split(","):
        low, _, high = part.strip().partition("-")
        if low.isdecimal() and (not high or high.isdecimal()):
            indexes |= set(range(int(low), int(high or low) + 1))
    return indexes


def _success_rule_met(rule: Mapping[str, Any], done: set[int]) -> bool:
    """A Job successPolicy rule: its indexes succeeded (``succeededCount`` of them, or all)."""
    wanted = _index_set(rule["succeededIndexes"]) if "succeededIndexes" in rule else None
    among = done & wanted if wanted is not None else done
    count = rule.get("succeededCount")
    if count is None:
        return wanted is not None and wanted <= done
    return len(among) >= int(count)


def _indexed(template: Mapping[str, Any], job: str, index: int) -> dict[str, Any]:
    """The pod template of one completion index, as the Job controller makes it."""
    pod: dict[str, Any] = copy.deepcopy(dict(template))
    meta = pod.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), COMPLETION_INDEX: str(index)}
    spec = pod.setdefault("spec", {})
    spec.setdefault("hostname", f"{job}-{index}")
    env = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
    }
    for container in spec.get("containers") or ():
        container["env"] = [env, *(container.get("env") or ())]  # first: the others may name it
    return pod


def _condition(type_: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now_rfc3339()
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _seconds_since(timestamp: str) -> float | None:
    if not timestamp:
        return None
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()
