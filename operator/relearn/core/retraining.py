"""What happens to a retraining request, decided from what the cluster shows.

Pure: the request's name, the Job's state, the trainer's result (its pod's
termination message), the ModelVersion to register, the offline gate, the
registration (idempotent, never moving a version backwards) and the
ABExperiment to start. ``relearn.handlers.retraining`` reads and writes.

A request is acted on only once it is recorded: its name derives from the
policy's uid and the request's sequence number (never the clock), so a
request redone after a restart, an API outage or a lost status write names
the same Job, and creating it again is a 409, not a second Job.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relearn.api import API_VERSION
from relearn.api.abexperiment import ExperimentTemplate
from relearn.api.base import PrometheusSource
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.core.jobs import result_pods
from relearn.core.labels import labelled

JobState = Literal["Running", "Succeeded", "Failed"]
HISTORY_LIMIT = 50
GATE_REASON = "OfflineGate"  # the history reason of a registration


def request_name(policy: str, policy_uid: str, sequence: int, limit: int = 63) -> str:
    """The Job name of a policy's ``sequence``-th retraining request: the same
    for the same request, different for a recreated policy (another uid);
    ``limit`` (63) characters at most, so it is a valid label value too
    (``relearn.core.jobs.name_limit``: shorter for a distributed Job)."""
    digest = hashlib.sha256(f"{policy_uid}/{sequence}".encode()).hexdigest()[:6]
    suffix = f"-rt-{sequence}-{digest}"
    return f"{policy[: max(0, limit - len(suffix))].rstrip('-')}{suffix}"


def next_sequence(last: RetrainingRecord | None) -> int:
    """The number of the next request after the last recorded one."""
    return ((last.sequence if last is not None else None) or 0) + 1


def registration(
    passed: bool, *, verdict: str, policy: str, version: str, now: datetime.datetime
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The ModelVersion status change of registering a trained version:
    Registered (or Rejected by the offline gate) with one history entry
    saying so, once. Registered already (its ``OfflineGate`` entry is there:
    this request redone after a lost status write), or moved on since (in an
    experiment, champion, retired), it keeps its phase: registering again
    never moves a version backwards. The phase ``Registered`` the spec check
    gives every new ModelVersion (it may run first) is not a registration:
    the gate's verdict replaces it, so a version the gate rejects is never
    left Registered, to be tested."""
    phase = "Registered" if passed else "Rejected"

    def change(status: dict[str, Any]) -> dict[str, Any]:
        if any(entry.get("reason") == GATE_REASON for entry in status.get("history") or ()):
            return {}
        if status.get("phase") not in (None, "Registered"):
            return {}
        entry = {
            "time": now.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "action": phase,
            "reason": GATE_REASON,
            "message": verdict[:1024],
            "triggeredBy": f"DriftPolicy/{policy}",
            "toVersion": version,
        }
        return {"phase": phase, "history": [*(status.get("history") or []), entry][-HISTORY_LIMIT:]}

    return change


def trained_by(version: Mapping[str, Any], job: str | None) -> bool:
    """Whether an existing ModelVersion is the one this request's Job trained."""
    return bool(job) and ((version.get("spec") or {}).get("source") or {}).get("job") == job


@dataclass(frozen=True)
class TrainerResult:
    uri: str
    sha256: str
    metrics: dict[str, Any]
    data: dict[str, Any]
    baseline: list[dict[str, Any]] | None
    pseudo_label_metrics: dict[str, Any] | None = None  # held-out pseudo-labels: reported, never gated on


def job_state(job: Mapping[str, Any]) -> tuple[JobState, str]:
    """The Job's state and, when it failed, the reason Kubernetes gives."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet", "Succeeded"):  # Succeeded: a PyTorchJob
            return "Succeeded", ""
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "Failed", f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".rstrip(": ")
    return "Running", ""


def termination_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The newest terminated trainer container's message (of worker 0, rank 0,
    in a distributed training: the other ranks publish nothing)."""
    finished = []
    for pod in result_pods(pods):
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                finished.append(
                    (terminated.get("finishedAt") or "", terminated.get("message") or "", terminated.get("exitCode"))
                )
    if not finished:
        return None
    return max(finished)[1] or None


def parse_result(message: str | None) -> TrainerResult:
    """The trainer's published result, or ValueError saying why there is none."""
    if not message:
        raise ValueError("the trainer left no termination message")
    try:
        body = json.loads(message)
    except ValueError:
        raise ValueError(f"the trainer's termination message is not JSON: {message[:200]}") from None
    if "error" in body:
        raise ValueError(f"{body['error']}: {body.get('message', '')}")
    try:
        pseudo = body.get("pseudoLabelMetrics")
        result = TrainerResult(
            body["uri"],
            body["sha256"],
            dict(body["metrics"]),
            dict(body.get("data") or {}),
            body.get("baseline"),
            dict(pseudo) if isinstance(pseudo, dict) else None,
        )
    except KeyError as missing:
        raise ValueError(f"the trainer's result lacks {missing}") from None
    # No ModelVersion (so nothing to promote) without the digest the server verifies the adapter against.
    if not isinstance(result.sha256, str) or not re.fullmatch(r"[a-f0-9]{64}", result.sha256):
        raise ValueError(f"the trainer's result has no valid manifest sha256: {str(result.sha256)[:80]!r}")
    return result


def failure_reason(pods: Sequence[Mapping[str, Any]], job_reason: str) -> str:
    """Why a retraining failed, from the trainer's own words when it left any."""
    message = termination_message(pods)
    if message:
        try:
            body = json.loads(message)
            if "error" in body:
                return f"{body['error']}: {body.get('message', '')}"
        except ValueError:
            return message[-500:]
    return job_reason or "the Job failed"


def gate(result: TrainerResult, tolerance: float) -> tuple[bool, str]:
    """The offline gate: accuracy on held-out human corrections not below the
    champion's by more than ``tolerance``. Pseudo-labels (the champion's own
    predictions) are named in the verdict but never decide it."""
    new, champion = result.metrics.get("accuracy"), result.metrics.get("championAccuracy")
    if new is None or champion is None:
        return False, "the trainer reported no accuracy for the new version or the champion"
    passed = new >= champion - tolerance
    relation = "passes" if passed else "fails"
    samples = result.metrics.get("samples")
    on = f" on {samples} held-out human corrections" if samples is not None else ""
    pseudo = result.pseudo_label_metrics or {}
    aside = ""
    if pseudo.get("samples") and pseudo.get("accuracy") is not None and pseudo.get("championAccuracy") is not None:
        aside = (
            f"; on {pseudo['samples']} held-out pseudo-labels (not gated on) "
            f"{pseudo['accuracy']:.3f} vs {pseudo['championAccuracy']:.3f}"
        )
    return passed, (
        f"held-out accuracy {new:.3f} vs champion {champion:.3f}{on} {relation} the offline gate "
        f"(tolerance {tolerance:.3f}){aside}"
    )


def _metadata(name: str, values: Mapping[str, str]) -> dict[str, Any]:
    labels, annotations = labelled(values)
    return {"name": name, "labels": labels, **({"annotations": annotations} if annotations else {})}


def model_version(
    *,
    name: str,
    spec: DriftPolicySpec,
    version: str,
    base_model_uri: str,
    result: TrainerResult,
    record: RetrainingRecord,
    policy_name: str,
    parent: str | None,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        k: result.metrics[k]
        for k in ("accuracy", "macroF1", "loss", "samples", "championAccuracy")
        if result.metrics.get(k) is not None
    }
    pseudo = {
        k: (result.pseudo_label_metrics or {})[k]
        for k in ("accuracy", "championAccuracy", "samples")
        if (result.pseudo_label_metrics or {}).get(k) is not None
    }
    if pseudo:
        metrics["pseudoLabels"] = pseudo
    window = result.data.get("window") or {}
    assert spec.retraining is not None
    source: dict[str, Any] = {
        "driftPolicy": policy_name,
        "job": record.job,
        "datasetUri": spec.retraining.dataset.uri,
        "triggerReasons": [r[:1024] for r in (record.reasons or [])][:32],
    }
    if window.get("start") and window.get("end"):
        source.update(windowStart=window["start"], windowEnd=window["end"])
    if parent:
        source["parentVersion"] = parent
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": _metadata(name, {"relearn.dev/model": spec.model, "relearn.dev/policy": policy_name}),
        "spec": {
            "model": spec.model,
            "version": version,
            "baseModel": {"uri": base_model_uri},
            "adapter": {"uri": result.uri, "sha256": result.sha256},
            "metrics": metrics,
            "source": source,
        },
    }
    if result.baseline:
        body["spec"]["baseline"] = {"features": result.baseline}
    return body


def experiment(
    *,
    name: str,
    template: ExperimentTemplate,
    model: str,
    challenger: str,
    champion: str | None,
    policy_name: str,
    prometheus: PrometheusSource | None = None,
) -> dict[str, Any]:
    """The ABExperiment a policy starts: its template, reading the policy's Prometheus."""
    settings = template.model_dump(by_alias=True, exclude_none=True, exclude={"enabled"})
    spec: dict[str, Any] = {"model": model, "challenger": challenger, **settings}
    if prometheus is not None:
        spec["prometheus"] = prometheus.model_dump(by_alias=True, exclude_none=True)
    if champion:
        spec["champion"] = champion
    return {
        "apiVersion": API_VERSION,
        "kind": "ABExperiment",
        "metadata": _metadata(name, {"relearn.dev/model": model, "relearn.dev/policy": policy_name}),
        "spec": spec,
    }
