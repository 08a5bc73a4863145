"""Retraining: from a DriftPolicy's recorded request to a registered
ModelVersion and a started ABExperiment.

Called by the DriftPolicy daemon on every turn (``relearn.handlers.drift``),
so it resumes wherever a restart left it: the Job's name is the request's,
creating it again is a no-op, and the version it trains is read back from
the Job's label. Decisions are ``relearn.core.retraining``'s.
"""

from __future__ import annotations

import datetime
from typing import Any

from relearn.adapters.kube import PYTORCHJOBS, SERVICES, KubeClient
from relearn.api.conditions import ConditionUpdate, EventRecord
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.api.names import RETRAINING, EventType
from relearn.core import retraining, semver
from relearn.core.drift_policy import ACTIVE_OUTCOMES
from relearn.core.jobs import rendezvous_service_manifest, training_job, training_kind
from relearn.core.model_versions import champion
from relearn.errors import Invalid, InvalidSetting
from relearn.handlers.lookups import Lookup
from relearn.metrics import DECISIONS, RETRAININGS

# The label a training's pods carry its name in, by kind.
_POD_LABEL = {"Job": "job-name", "PyTorchJob": "training.kubeflow.org/job-name"}


class Progress:
    """What this turn changes: the record, the Retraining condition, Events."""

    def __init__(self, record: RetrainingRecord) -> None:
        self.record = record
        self.condition: ConditionUpdate | None = None
        self.events: list[EventRecord] = []

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(EventRecord(type_, reason, message))

    def set(self, **changes: Any) -> None:
        self.record = self.record.model_copy(update=changes)


async def advance(
    kube: KubeClient,
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: DriftPolicySpec,
    record: RetrainingRecord | None,
    now: datetime.datetime,
) -> Progress | None:
    """Move an active retraining one step on; None when none is active."""
    if record is None or record.outcome not in ACTIVE_OUTCOMES or not record.job:
        return None
    progress = Progress(record)
    if spec.retraining is None:
        _fail(progress, "the policy's retraining settings were removed", now)
        return progress
    job = await _read_training(kube, namespace, record.job, spec)
    if job is None:
        if record.outcome == "Running":
            _fail(progress, f"Job {record.job} disappeared before finishing", now)
        else:
            await _start(kube, progress, name=name, namespace=namespace, uid=uid, spec=spec)
        return progress
    meta = job["metadata"]
    version = (
        (meta.get("annotations") or {}).get("relearn.dev/version")  # the full value, when the label is shortened
        or (meta.get("labels") or {}).get("relearn.dev/version")
        or record.model_version
    )
    state, reason = retraining.job_state(job)
    if record.outcome == "Requested":
        # The Job exists but its start is not recorded: the turn that created it
        # was cut short. This turn records the start, and its Event (the same name
        # as the one that turn may have posted: never lost, never doubled).
        progress.events.append(_started(spec, str(version), job))
    if state == "Running":
        if job.get("kind", "Job") == "Job" and (job.get("spec") or {}).get("completionMode") == "Indexed":
            # Also after a restart between the Job and its Service: without it the workers never meet.
            await kube.create(SERVICES, namespace, rendezvous_service_manifest(job=job))
        if record.outcome != "Running" or record.model_version != version:
            progress.set(outcome="Running", model_version=version)
            progress.condition = ConditionUpdate(
                RETRAINING, "True", "Running", f"Job {record.job} trains version {version}"
            )
        return progress
    pods = await kube.list_pods(namespace, f"{_POD_LABEL.get(str(job.get('kind')), 'job-name')}={record.job}")
    if state == "Failed":
        _fail(progress, retraining.failure_reason(pods, reason), now)
        return progress
    try:
        result = retraining.parse_result(retraining.termination_message(pods))
    except ValueError as error:
        _fail(progress, str(error), now)
        return progress
    await _register(
        kube, progress, namespace=namespace, policy=name, spec=spec, version=str(version), result=result, now=now
    )
    return progress


async def _start(
    kube: KubeClient, progress: Progress, *, name: str, namespace: str, uid: str, spec: DriftPolicySpec
) -> None:
    assert spec.retraining is not None
    versions = await kube.list_model_versions(namespace, spec.model)
    current = champion(versions, await Lookup(kube).holder(namespace, spec.model))
    base = spec.retraining.base_model.uri if spec.retraining.base_model else None
    base = base or ((current or {}).get("spec") or {}).get("baseModel", {}).get("uri")
    if not base:
        _fail(
            progress,
            "no base model: set spec.retraining.baseModel or declare a champion ModelVersion",
            datetime.datetime.now(datetime.UTC),
        )
        return
    version = semver.next_minor(v["spec"]["version"] for v in versions)
    backend = spec.retraining.distributed.backend if spec.retraining.distributed else "job"
    try:
        kind = training_kind(spec, await kube.serves(PYTORCHJOBS) if backend != "job" else None)
    except InvalidSetting as error:
        _fail(progress, str(error), datetime.datetime.now(datetime.UTC))
        return
    job = training_job(
        kind,
        name=progress.record.job or "",
        namespace=namespace,
        policy_name=name,
        policy_uid=uid,
        spec=spec,
        version=version,
        base_model_uri=base,
        champion=current,
    )
    try:
        if kind == "PyTorchJob":
            created = await kube.create(PYTORCHJOBS, namespace, job)
        else:
            created = await kube.create_job(namespace, job)
            if spec.retraining.distributed is not None:
                # Owned by the Job (its uid, read back), so it goes with it.
                made = await kube.read_job(namespace, job["metadata"]["name"])
                if made is not None:
                    await kube.create(SERVICES, namespace, rendezvous_service_manifest(job=made))
    except Invalid as error:
        _fail(
            progress,
            f"the API server refused Job {progress.record.job}: {error.http_reason}",
            datetime.datetime.now(datetime.UTC),
        )
        return
    progress.set(outcome="Running", model_version=version)
    progress.condition = ConditionUpdate(
        RETRAINING, "True", "Running", f"Job {progress.record.job} trains version {version}"
    )
    if created:
        RETRAININGS.labels("started").inc()
    progress.events.append(_started(spec, version, job))


async def _read_training(kube: KubeClient, namespace: str, name: str, spec: DriftPolicySpec) -> dict[str, Any] | None:
    """The request's Job, or its PyTorchJob where the policy may have chosen Kubeflow."""
    job = await kube.read_job(namespace, name)
    distributed = spec.retraining.distributed if spec.retraining is not None else None
    if job is None and distributed is not None and distributed.backend != "job":
        job = await kube.get(PYTORCHJOBS, namespace, name)
    return job


def _started(spec: DriftPolicySpec, version: str, job: dict[str, Any]) -> EventRecord:
    """The RetrainingStarted Event of ``job`` (as created, or as read back)."""
    template = (job.get("spec") or {}).get("template") or (
        (((job.get("spec") or {}).get("pytorchReplicaSpecs") or {}).get("Master") or {}).get("template") or {}
    )
    containers = (template.get("spec") or {}).get("containers") or [{}]
    container = containers[0]
    gpus = ((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
    base = next((a.split("=", 1)[1] for a in container.get("args") or () if a.startswith("--base-model=")), "")
    message = f"{job.get('kind', 'Job')} {job['metadata'].get('name')} trains {spec.model} {version} from {base}"
    distributed = spec.retraining.distributed if spec.retraining is not None else None
    if distributed is not None:
        message += f" on {distributed.workers} workers ({distributed.strategy})"
    return EventRecord("Normal", "RetrainingStarted", message + (f" on {gpus} GPU" if gpus else ""))


def _fail(progress: Progress, reason: str, now: datetime.datetime) -> None:
    RETRAININGS.labels("failed").inc()
    progress.set(outcome="Failed", finished_at=now)
    progress.condition = ConditionUpdate(RETRAINING, "False", "Failed", reason[:1000])
    progress.event("Warning", "RetrainingFailed", f"{progress.record.job}: {reason}"[:1000])


async def _register(
    kube: KubeClient,
    progress: Progress,
    *,
    namespace: str,
    policy: str,
    spec: DriftPolicySpec,
    version: str,
    result: retraining.TrainerResult,
    now: datetime.datetime,
) -> None:
    assert spec.retraining is not None
    versions = await kube.list_model_versions(namespace, spec.model)
    current = champion(versions, await Lookup(kube).holder(namespace, spec.model))
    mv_name = f"{spec.model}-{version}"[:253]
    base = spec.retraining.base_model.uri if spec.retraining.base_model else None
    base = base or ((current or {}).get("spec") or {}).get("baseModel", {}).get("uri", "")
    body = retraining.model_version(
        name=mv_name,
        spec=spec,
        version=version,
        base_model_uri=base,
        result=result,
        record=progress.record,
        policy_name=policy,
        parent=((current or {}).get("spec") or {}).get("version"),
    )
    existing = next((v for v in versions if v["metadata"]["name"] == mv_name), None)
    if existing is not None and not retraining.trained_by(existing, progress.record.job):
        _fail(progress, f"ModelVersion {mv_name} exists already and was not trained by Job {progress.record.job}", now)
        return
    created = existing is None and await kube.create_custom(namespace, "modelversions", body)
    passed, verdict = retraining.gate(result, spec.retraining.gate_tolerance)
    # Idempotent: a version registered before (this request, redone after a lost
    # status write) keeps its phase, whatever it has become since.
    await kube.update_status(
        "modelversions",
        namespace,
        mv_name,
        retraining.registration(passed, verdict=verdict, policy=policy, version=version, now=now),
    )
    progress.set(outcome="Succeeded", finished_at=now, model_version=version)
    progress.condition = ConditionUpdate(RETRAINING, "False", "Succeeded", f"{mv_name} registered: {verdict}")
    if created:
        RETRAININGS.labels("succeeded").inc()
        DECISIONS.labels("registration", "Registered" if passed else "Rejected").inc()
    # Also when this request's version exists already: the turn that created it
    # was cut short before recording it, and maybe before its Events (same names).
    progress.event(
        "Normal" if passed else "Warning",
        "ModelVersionRegistered" if passed else "ModelVersionRejected",
        f"{mv_name}: {verdict}",
    )
    template = spec.experiment
    untested = existing is None or ((existing.get("status") or {}).get("phase") in (None, "Registered"))
    if passed and untested and template is not None and template.enabled:
        experiment = retraining.experiment(
            name=mv_name,
            template=template,
            model=spec.model,
            challenger=version,
            champion=((current or {}).get("spec") or {}).get("version"),
            policy_name=policy,
            prometheus=spec.prometheus,
        )
        await kube.create_custom(namespace, "abexperiments", experiment)  # False: created by a turn cut short
        progress.event("Normal", "ExperimentCreated", f"ABExperiment {mv_name}: {version} vs the champion")
