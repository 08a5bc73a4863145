"""ABExperiment reconciliation: one kopf daemon per experiment runs it
through its phases, and a delete handler restores routing.

    Pending -> Progressing -> Promoting -> Promoted
                           -> Rejected | Inconclusive | Aborted

- **Pending**: the champion's Service is pinned to the champion's version,
  then the challenger's Deployment (a copy of the champion's, see
  :mod:`relearn.core.workloads`) and, for routers that route to Services, its
  Service are created; the router learns the challenger at weight 0.
  Traffic moves only once the challenger is fully ready and its Service has
  ready endpoints (:mod:`relearn.core.switching`).
- **Progressing**: every ``analysis.interval`` both arms are measured in
  Prometheus over the time since the challenger took traffic, the
  guardrails are evaluated, and :func:`relearn.core.experiment.judge`
  decides. Weight steps advance one per interval while nothing is missing.
  Prometheus unreachable or without data: ``Inconclusive=True``, weights
  unchanged, no decision until data returns.
- **Promoting**: 100% to the challenger; challenger ModelVersion Champion,
  previous one Archived (both with history); the challenger's workload is
  disowned (it serves now) and the previous champion's stays warm for a
  rollback. Then **Promoted**.
- **Rejected / Inconclusive / Aborted**: 100% back to the champion, the
  challenger's workload removed once the data plane applied that route and
  ``rollback.drain`` passed (``status.drain``), its ModelVersion Rejected
  (Registered again when Inconclusive).
- While **Progressing**, a route changed behind the experiment's back (a
  GitOps re-apply) is restored, with a Warning Event ``RouteRestored``.

Each decision is written to status (events first), posted as an Event with
its numbers and sent to the experiment's webhooks. The end phases' actions
are idempotent and redone when the daemon starts, so an operator restart in
the middle of one finishes it. Abort: the ``relearn.dev/abort`` annotation
(``relearn abort``) or deleting the experiment. Manual promotion waits for
the ``relearn.dev/approve`` annotation (``relearn promote``).
"""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client import ApiException
from pydantic import ValidationError

from relearn.adapters import webhooks
from relearn.adapters.kube import ABEXPERIMENTS, DEPLOYMENTS, SERVICES, KubeClient
from relearn.adapters.prometheus import PrometheusAuth, PrometheusClient, PrometheusError, auth_for, render, scope
from relearn.adapters.routers import Backend, Router, RouterError, Split, router_for
from relearn.api import GROUP, VERSION
from relearn.api.abexperiment import TERMINAL_PHASES, ABExperimentSpec, ABExperimentStatus
from relearn.api.base import PrometheusSource, rfc3339
from relearn.api.conditions import get_condition
from relearn.core import experiment as judging
from relearn.core import health, stats, switching, workloads
from relearn.core.consent import Allowlist, UseRefused, check_webhook_url
from relearn.core.drift_policy import champion as current_champion
from relearn.core.durations import parse_duration
from relearn.errors import DecisionError
from relearn.handlers.guard import Guard, keep_turning
from relearn.handlers.outcome import Outcome, apply, event_basis, post_event
from relearn.metrics import DECISIONS, EXPERIMENT_PHASE, EXPERIMENT_WEIGHT, HANDLER_SECONDS

PLURAL = "abexperiments"
ABORT_ANNOTATION, APPROVE_ANNOTATION = "relearn.dev/abort", "relearn.dev/approve"
REQUESTED_BY_ANNOTATION = "relearn.dev/requested-by"  # who asked, set by the relearn CLI
CHALLENGER_READY, METRICS_AVAILABLE, INCONCLUSIVE, AWAITING_APPROVAL = (
    "ChallengerReady",
    "MetricsAvailable",
    "Inconclusive",
    "AwaitingApproval",
)
NOTIFICATIONS_ALLOWED = "NotificationsAllowed"
PHASES = ("Pending", "Progressing", "Promoting", *TERMINAL_PHASES)
# The metric contract's feedback counter; {{...}} are filled by adapters.prometheus.render.
# An arm's feedback: the same counters the feedback health check reads.
SUCCESS_QUERY, TOTAL_QUERY = health.FEEDBACK_CORRECT_QUERY, health.FEEDBACK_TOTAL_QUERY
PENDING_POLL = 2.0  # seconds between looks while the challenger starts
FIX_POLL = 10.0  # seconds between looks while the spec names something missing


class Wait(Exception):
    """Not ready to go on; ``reason``/``message`` go to the ChallengerReady condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Context:
    kube: KubeClient
    body: dict[str, Any]  # the experiment as last read (metadata, spec) with our own latest status
    spec: ABExperimentSpec
    status: ABExperimentStatus
    now: datetime.datetime
    logger: kopf.Logger
    prometheus_url: str | None
    allowed: Allowlist = field(default_factory=Allowlist)  # where credentials may go (core.consent)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("annotations") or {})

    def router(self) -> Router:
        routing = self.spec.routing
        return router_for(routing.provider, self.kube, self.namespace, routing.target or self.spec.workload.name)


# -- finding the arms -------------------------------------------------------------


async def _versions(ctx: Context) -> list[dict[str, Any]]:
    return await ctx.kube.list_model_versions(ctx.namespace, ctx.spec.model)


def _version(versions: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    return next((v for v in versions if v["spec"].get("version") == version), None)


async def deployment_of(ctx: Context, version: str, fallback: str | None) -> dict[str, Any] | None:
    """The Deployment running ``version`` of the model: labelled with the model
    and whose pods carry that version (a promoted challenger), else ``fallback``."""
    selector = f"{workloads.MODEL_LABEL}={ctx.spec.model}"
    for deployment in await ctx.kube.list_objects(DEPLOYMENTS, ctx.namespace, selector):
        labels = workloads.pod_labels(deployment)
        running = labels.get(workloads.VERSION_LABEL) == workloads.version_label(version)
        if running and not deployment["metadata"].get("deletionTimestamp"):
            return deployment
    return await ctx.kube.get(DEPLOYMENTS, ctx.namespace, fallback) if fallback else None


async def _champion_deployment(ctx: Context, version: str) -> dict[str, Any]:
    """The champion's Deployment, else the one ``spec.workload.name`` declares."""
    found = await deployment_of(ctx, version, ctx.spec.workload.name)
    if found is None:
        raise Wait("WorkloadNotFound", f"Deployment {ctx.spec.workload.name} (spec.workload.name) does not exist")
    return found


async def service_for(ctx: Context, router: Router, deployment: dict[str, Any]) -> str:
    """The Service in front of a Deployment's pods: the most weighted one the
    router sends to, else any that selects them (a released champion's);
    the target itself for the replicas router."""
    if ctx.spec.routing.provider == "replicas":
        return router.target
    labels = workloads.pod_labels(deployment)
    candidates = sorted(
        s["metadata"]["name"]
        for s in await ctx.kube.list_objects(SERVICES, ctx.namespace)
        if workloads.selects((s.get("spec") or {}).get("selector"), labels)
    )
    if not candidates:
        raise RouterError(
            "NoChampionBackend", f"no Service selects the pods of Deployment {deployment['metadata']['name']}"
        )
    routed = await router.services()
    return str(max(candidates, key=lambda name: routed.get(name, -1)))


async def resolve(ctx: Context) -> tuple[Split, dict[str, Any], dict[str, Any]]:
    """(split, champion Deployment, challenger ModelVersion)."""
    versions = await _versions(ctx)
    champion_version = ctx.status.champion or ctx.spec.champion
    if champion_version is None:
        found = current_champion(versions)
        if found is None:
            raise Wait(
                "NoChampion", f"model {ctx.spec.model} has no champion ModelVersion (and spec.champion is empty)"
            )
        champion_version = str(found["spec"]["version"])
    challenger = _version(versions, ctx.spec.challenger)
    if challenger is None:
        raise Wait("ModelVersionNotFound", f"no ModelVersion of {ctx.spec.model} has version {ctx.spec.challenger}")
    refused = workloads.unverifiable(challenger)  # never an A/B test, so never a promotion, without a sha256
    if refused is not None:
        raise Wait("UnverifiedChallenger", refused)
    deployment = await _champion_deployment(ctx, champion_version)
    name = workloads.workload_name(ctx.spec.workload.name, ctx.spec.challenger)
    router = ctx.router()
    champion_service = await service_for(ctx, router, deployment)
    challenger_service = router.target if ctx.spec.routing.provider == "replicas" else name
    split = Split(
        Backend(champion_version, deployment["metadata"]["name"], champion_service),
        Backend(ctx.spec.challenger, name, challenger_service),
    )
    return split, deployment, challenger


async def ensure_challenger(
    ctx: Context, split: Split, champion: dict[str, Any], version: dict[str, Any], first_weight: int
) -> dict[str, Any] | None:
    """Create what the challenger needs (idempotent); its Deployment as it is now.

    The champion's Service is pinned to the champion's version before the
    challenger's Deployment exists, so at no moment (a restart between any
    two of these writes included) does it select a challenger pod."""
    namespace = ctx.namespace
    service = None
    if ctx.spec.routing.provider != "replicas":
        service = await ctx.kube.get(SERVICES, namespace, split.champion.service)
        if service is None:
            raise Wait("ServiceNotFound", f"Service {split.champion.service} does not exist")
        await _pin(ctx, split, champion, service)
    existing = await ctx.kube.get(DEPLOYMENTS, namespace, split.challenger.deployment)
    if existing is None:
        total = int(champion["spec"].get("replicas", 1))
        if ctx.spec.routing.provider == "replicas":
            from relearn.adapters.routers.replicas import replica_split

            replicas = replica_split(total, first_weight)[1]
        else:
            replicas = total
        body = workloads.challenger_deployment(
            champion,
            name=split.challenger.deployment,
            model=ctx.spec.model,
            version=ctx.spec.challenger,
            version_env=ctx.spec.workload.version_env,
            adapter=version["spec"].get("adapter"),
            experiment=ctx.body,
            replicas=max(1, replicas),
        )
        await ctx.kube.create(DEPLOYMENTS, namespace, body)
        await post_event(
            ctx.kube,
            ctx.body,
            "Normal",
            "ChallengerCreated",
            f"Deployment {split.challenger.deployment} runs {ctx.spec.model} {ctx.spec.challenger} "
            f"(a copy of {split.champion.deployment})",
            ctx.logger,
        )
    if service is not None and await ctx.kube.get(SERVICES, namespace, split.challenger.service) is None:
        await ctx.kube.create(
            SERVICES,
            namespace,
            workloads.challenger_service(
                service, name=split.challenger.service, version=ctx.spec.challenger, experiment=ctx.body
            ),
        )
    await ctx.router().reconcile(split)
    return await ctx.kube.get(DEPLOYMENTS, namespace, split.challenger.deployment)


async def not_serving(ctx: Context, backend: Backend) -> str | None:
    """Why ``backend`` may not take traffic yet (None: it may): its Service
    has no ready endpoints. A Deployment that says available is not enough;
    the endpoints are what the data plane sends to. The replicas router's
    weights follow ready pods already."""
    if ctx.spec.routing.provider == "replicas":
        return None
    if await ctx.router().ready_endpoints(backend.service) > 0:
        return None
    return f"Service {backend.service} has no ready endpoints yet"


async def drained(ctx: Context, outcome: Outcome, backend: Backend) -> float | None:
    """A backend that has left the route: seconds to wait before it may be
    removed, or None when it may go now (see :func:`relearn.core.switching.drain_step`).
    The drain's start and the moment the route was seen applied are kept in
    ``status.drain``, so a restart neither removes it early nor waits again."""
    record = ctx.status.drain
    if record is None or record.backend != backend.deployment or record.since is None:
        state = switching.Drain(ctx.now)
    else:
        state = switching.Drain(record.since, record.applied_time)
    applied = await ctx.router().route_applied()
    state, verdict = switching.drain_step(state, ctx.now, parse_duration(ctx.spec.rollback.drain), applied)
    if verdict.remove:
        outcome.status["drain"] = None
        if verdict.reason == "RouteTimedOut":
            outcome.events.append(("Warning", "RouteNotApplied", f"{backend.deployment}: {verdict.message}"))
        return None
    outcome.status["drain"] = {
        "backend": backend.deployment,
        "since": rfc3339(state.since),
        **({"appliedTime": rfc3339(state.applied)} if state.applied is not None else {}),
    }
    ctx.logger.info("%s left the route: %s", backend.deployment, verdict.message)
    return verdict.wait


async def _pin(ctx: Context, split: Split, champion: dict[str, Any], service: dict[str, Any]) -> None:
    """The champion's Service must not select the challenger's pods: add the
    champion's version to its selector when it has none."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if workloads.VERSION_LABEL in selector:
        return
    pinned = workloads.version_label(split.champion.version)
    if workloads.pod_labels(champion).get(workloads.VERSION_LABEL) != pinned:
        raise Wait(
            "WorkloadNotVersioned",
            f"the pods of Deployment {split.champion.deployment} must carry the label "
            f"{workloads.VERSION_LABEL}={pinned} so that Service {split.champion.service} "
            "can select the champion's pods only",
        )

    def pin(obj: dict[str, Any]) -> None:
        obj["spec"].setdefault("selector", {})[workloads.VERSION_LABEL] = pinned

    await ctx.kube.modify(SERVICES, ctx.namespace, split.champion.service, pin)


# -- measuring ----------------------------------------------------------------------


async def _prometheus(ctx: Context) -> tuple[PrometheusSource, PrometheusAuth]:
    """Where the arms are read: spec.prometheus, else the operator's --prometheus-url."""
    source = ctx.spec.prometheus
    if source is None:
        if not ctx.prometheus_url:
            raise PrometheusError(
                "Unreachable", "no Prometheus: set spec.prometheus or the operator's --prometheus-url"
            )
        source = PrometheusSource(url=ctx.prometheus_url)
    read = lambda name: ctx.kube.read_secret(ctx.namespace, name, "prometheus")  # noqa: E731
    return source, await auth_for(source, read, ctx.allowed.prometheus_urls)


async def _value(prometheus: PrometheusClient, query: str) -> float | None:
    """One number from a query: the sum of its samples; None when there is no data."""
    samples = await prometheus.query(query)
    values = [s.value for s in samples if math.isfinite(s.value)]
    return sum(values) if values else None


async def read_values(
    ctx: Context, queries: Sequence[tuple[str, str, Mapping[str, str]]], window: str
) -> dict[str, float | None]:
    """Each ``(key, PromQL template, labels)`` rendered for ``window`` and read
    as one number (None: no data), through the experiment's Prometheus."""
    source, auth = await _prometheus(ctx)
    timeout = parse_duration(source.timeout).total_seconds()
    async with PrometheusClient(source.url, timeout=timeout, auth=auth) as prometheus:
        return {key: await _value(prometheus, render(query, labels, window)) for key, query, labels in queries}


EXTRAPOLATION_SLACK = 1.01  # successes above samples by up to 1 % (plus one) are clamped, not refused


async def measure(ctx: Context, split: Split) -> judging.Look:
    """Both arms and the guardrails over the time since the challenger took traffic."""
    assert ctx.status.start_time is not None
    elapsed = ctx.now - ctx.status.start_time
    window = f"{max(1, math.ceil(elapsed.total_seconds()))}s"
    analysis = ctx.spec.analysis
    arms = {"champion": split.champion.version, "challenger": split.challenger.version}
    queries: list[tuple[str, str, Mapping[str, str]]] = []
    for arm, version in arms.items():
        labels = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=version)
        queries += [
            (f"{arm}.successes", analysis.success_query or SUCCESS_QUERY, labels),
            (f"{arm}.samples", analysis.total_query or TOTAL_QUERY, labels),
        ]
    challenger = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=split.challenger.version)
    queries += [(f"guardrail.{g.name}", g.query, challenger) for g in analysis.guardrails or ()]
    values = await read_values(ctx, queries, window)

    def arm_of(arm: str) -> stats.Arm:
        samples = values[f"{arm}.samples"] or 0.0
        successes = values[f"{arm}.successes"] or 0.0
        # increase() extrapolates each series on its own: successes may exceed samples by a little,
        # which is noise; more than that is a broken query, which the decision core refuses.
        if samples < successes <= samples * EXTRAPOLATION_SLACK + 1:
            successes = samples
        return stats.Arm(successes, samples)

    guardrails = [
        judging.GuardrailValue(g.name, values[f"guardrail.{g.name}"], g.max) for g in analysis.guardrails or ()
    ]
    return judging.Look(arm_of("champion"), arm_of("challenger"), guardrails, elapsed)


# -- deciding -------------------------------------------------------------------------


def _decision(outcome: str, reason: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    return {"outcome": outcome, "reason": reason, "message": message[:4096], "time": rfc3339(now)}


def _status_numbers(look: judging.Look, judgement: judging.Judgement, method: str) -> dict[str, Any]:
    v = judgement.verdict

    def arm(a: stats.Arm) -> dict[str, Any]:
        result: dict[str, Any] = {"samples": a.samples, "successes": a.successes}
        if a.samples > 0:
            result["rate"] = a.rate
        return result

    statistic: dict[str, Any] = {"method": method, "pValue": v.p_value}
    for key, value in (("lift", v.lift), ("ciLower", v.ci_lower), ("ciUpper", v.ci_upper)):
        if judging.finite(value) is not None:
            statistic[key] = value
    if v.samples_needed is not None:
        statistic["samplesNeeded"] = v.samples_needed
    if v.samples_needed_upper is not None:
        statistic["samplesNeededP90"] = v.samples_needed_upper
    if judgement.eta is not None:
        statistic["expectedTimeToDecision"] = judgement.eta
    if judgement.eta_upper is not None:
        statistic["expectedTimeToDecisionP90"] = judgement.eta_upper
    return {"arms": {"champion": arm(look.champion), "challenger": arm(look.challenger)}, "statistic": statistic}


def _approved(ctx: Context) -> bool:
    value = ctx.annotations.get(APPROVE_ANNOTATION)
    return value is not None and value.strip() in ("true", ctx.spec.challenger)


async def _weights(ctx: Context, split: Split, outcome: Outcome) -> int:
    weights = await ctx.router().get_weights(split)
    outcome.status["weights"] = {"champion": weights.champion, "challenger": weights.challenger}
    EXPERIMENT_WEIGHT.labels(ctx.namespace, ctx.name).set(weights.challenger)
    return weights.challenger


ENDS = {"Promote": "Promoting", "Reject": "Rejected", "Inconclusive": "Inconclusive", "Abort": "Aborted"}


def _conclude(ctx: Context, outcome: Outcome, decision: str, reason: str, message: str) -> None:
    """Record a decision. Promotion goes to phase Promoting at once; the other
    ends keep their phase until :func:`settle` has carried them out, so a
    Rejected experiment never still routes traffic to its challenger."""
    if decision == "Promote":
        outcome.status["phase"] = "Promoting"
    outcome.status["decision"] = _decision(decision, reason, message, ctx.now)
    outcome.notification = (decision, message)
    DECISIONS.labels("experiment", decision).inc()
    event_type = "Normal" if decision == "Promote" else "Warning"
    event_reason = {
        "Promote": "PromotionStarted",
        "Reject": "ChallengerRejected",
        "Inconclusive": "ExperimentInconclusive",
        "Abort": "ExperimentAborted",
    }[decision]
    outcome.events.append((event_type, event_reason, message))


async def analyse(ctx: Context, split: Split, outcome: Outcome) -> float:
    """One Progressing look; returns seconds until the next one."""
    interval = parse_duration(ctx.spec.analysis.interval).total_seconds()
    router = ctx.router()
    try:
        look = await measure(ctx, split)
    except (PrometheusError, ApiException, ValueError) as error:
        reason, message = (
            (f"Prometheus{error.reason}", error.message)
            if isinstance(error, PrometheusError)
            else ("QueryFailed", str(error))
        )
        outcome.conditions.append((METRICS_AVAILABLE, "False", reason, message))
        outcome.conditions.append((INCONCLUSIVE, "True", reason, f"no decision until data returns: {message}"))
        previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
        if previous is None or previous.status != "False":
            outcome.events.append(("Warning", "MetricsUnavailable", f"{message}; weights unchanged, no decision"))
        await _weights(ctx, split, outcome)
        return interval
    outcome.conditions.append((METRICS_AVAILABLE, "True", "MetricsRead", "both arms measured"))
    previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
    if previous is not None and previous.status == "False":
        outcome.events.append(("Normal", "MetricsRestored", "Prometheus answers again"))
    p_before = (ctx.status.statistic.p_value if ctx.status.statistic else None) or 1.0
    if ctx.spec.analysis.method != "sequential":
        p_before = 1.0
    try:
        judgement = judging.judge(ctx.spec, look, p_before)
    except DecisionError as refused:  # the decision core refused what was measured: no decision
        message = f"no decision: {refused.message}; weights unchanged"
        previous = get_condition(ctx.status.conditions or [], INCONCLUSIVE)
        outcome.conditions.append((INCONCLUSIVE, "True", refused.reason, message))
        if previous is None or previous.reason != refused.reason:
            outcome.events.append(("Warning", refused.reason, message))
        await _weights(ctx, split, outcome)
        return interval
    outcome.status.update(_status_numbers(look, judgement, ctx.spec.analysis.method))
    if judgement.missing:
        outcome.conditions.append(
            (INCONCLUSIVE, "True", "NoData", f"no data for {', '.join(judgement.missing)}: promotion held")
        )
    else:
        outcome.conditions.append((INCONCLUSIVE, "False", "DataComplete", "every arm and guardrail has data"))
    current = await _weights(ctx, split, outcome)
    if judgement.outcome == "Promote":
        if ctx.spec.promotion == "Manual" and not _approved(ctx):
            waiting = get_condition(ctx.status.conditions or [], AWAITING_APPROVAL)
            outcome.conditions.append(
                (AWAITING_APPROVAL, "True", "ChallengerBetter", f"approve with relearn promote: {judgement.message}")
            )
            outcome.status["decision"] = _decision("Continue", "AwaitingApproval", judgement.message, ctx.now)
            if waiting is None or waiting.status != "True":
                outcome.events.append(("Normal", "AwaitingApproval", judgement.message))
            return interval
        how = "automatic"
        if ctx.spec.promotion == "Manual":
            by = ctx.annotations.get(REQUESTED_BY_ANNOTATION)
            how = f"approved by {by}" if by else "approved"
        if ctx.spec.promotion == "Manual":
            outcome.conditions.append((AWAITING_APPROVAL, "False", "Approved", "approved"))
        _conclude(ctx, outcome, "Promote", judgement.reason, f"{judgement.message} ({how})")
        return 0.0
    if judgement.outcome in ("Reject", "Inconclusive"):
        _conclude(ctx, outcome, judgement.outcome, judgement.reason, judgement.message)
        return 0.0
    outcome.status["decision"] = _decision("Continue", judgement.reason, judgement.message, ctx.now)
    wanted = judging.next_weight(ctx.spec.traffic, current)
    if wanted != current and not judgement.missing:
        await router.set_weights(split, wanted)
        await _weights(ctx, split, outcome)
        outcome.events.append(("Normal", "WeightChanged", f"challenger weight {current}% -> {wanted}%"))
    return interval


async def _one_at_a_time(ctx: Context) -> None:
    """One running experiment per model: two would fight over the same routing.
    Among those starting at once the oldest goes first (then the name decides)."""
    mine = (ctx.body["metadata"].get("creationTimestamp") or "", ctx.name)
    for other in await ctx.kube.list_objects(ABEXPERIMENTS, ctx.namespace):
        status = other.get("status") or {}
        meta = other["metadata"]
        if other["spec"].get("model") != ctx.spec.model or meta["name"] == ctx.name:
            continue
        phase = status.get("phase") or "Pending"
        running = phase in ("Progressing", "Promoting") or (
            phase == "Promoted" and (status.get("decision") or {}).get("outcome") == "RollBack"
        )
        starting = any(
            c.get("type") == CHALLENGER_READY and c.get("reason") == "NotReady" for c in status.get("conditions") or ()
        )  # an older experiment stuck on something to fix does not hold this one
        ahead = phase == "Pending" and starting and (meta.get("creationTimestamp") or "", meta["name"]) < mine
        if running or ahead:
            raise Wait(
                "AnotherExperimentRunning",
                f"ABExperiment {meta['name']} is {phase} for model {ctx.spec.model}; this one starts when it ends",
            )


async def advance_experiment(ctx: Context, outcome: Outcome) -> float:
    """Move a non-final experiment on; returns seconds until the next turn."""
    phase = ctx.status.phase or "Pending"
    abort = ctx.annotations.get(ABORT_ANNOTATION)
    if abort is not None:
        _conclude(ctx, outcome, "Abort", "Aborted", f"aborted by annotation {ABORT_ANNOTATION}={abort!r}")
        return 0.0
    first = (ctx.spec.traffic.steps or [ctx.spec.traffic.weight])[0]
    try:
        if phase == "Pending":
            await _one_at_a_time(ctx)
        # The route as found, before ensure_challenger re-adds a missing challenger at weight 0.
        found = await ctx.router().services() if phase == "Progressing" else None
        split, champion, version = await resolve(ctx)
        challenger = await ensure_challenger(ctx, split, champion, version, first)
    except (Wait, RouterError) as waiting:  # something a person has to fix: look again less often
        outcome.conditions.append((CHALLENGER_READY, "False", waiting.reason, waiting.message))
        outcome.status.setdefault("phase", phase)
        return FIX_POLL
    outcome.status["workloads"] = {"champion": split.champion.deployment, "challenger": split.challenger.deployment}
    outcome.status["champion"] = split.champion.version
    ready, words = workloads.ready(challenger)
    if ready and (why := await not_serving(ctx, split.challenger)) is not None:
        ready, words = False, f"{words}; {why}"
    if not ready:
        outcome.conditions.append((CHALLENGER_READY, "False", "NotReady", words))
        if phase == "Progressing":  # no requests to a pod that is not serving
            await ctx.router().set_weights(split, 0)
            await _weights(ctx, split, outcome)
        outcome.status.setdefault("phase", phase)
        return PENDING_POLL
    outcome.conditions.append((CHALLENGER_READY, "True", "Ready", words))
    if phase == "Pending":
        await ctx.router().set_weights(split, first)
        await _weights(ctx, split, outcome)
        outcome.status.update(phase="Progressing", startTime=rfc3339(ctx.now))
        await _version_phase(ctx, version, "Challenger")
        outcome.events.append(
            (
                "Normal",
                "ExperimentStarted",
                f"challenger {split.challenger.version} ({split.challenger.deployment}, {words}) takes {first}% "
                f"of traffic; champion {split.champion.version}",
            )
        )
        return parse_duration(ctx.spec.analysis.interval).total_seconds()
    await restore_route(ctx, split, outcome, found)
    return await analyse(ctx, split, outcome)


async def restore_route(ctx: Context, split: Split, outcome: Outcome, found: dict[str, int] | None = None) -> None:
    """The route as this experiment set it: someone re-applied it from Git
    (without the challenger) or changed its weight by hand. Restored within
    one interval, with a Warning Event naming what was found."""
    expected = ctx.status.weights.challenger if ctx.status.weights else None
    if ctx.spec.routing.provider == "replicas" or expected is None:
        return
    router = ctx.router()
    served = found if found is not None else await router.services()
    actual = (await router.get_weights(split)).challenger
    drift = switching.route_drift(expected, split.challenger.service in served, actual)
    if drift is None:
        return
    await router.set_weights(split, expected)
    outcome.events.append(
        ("Warning", "RouteRestored", f"{ctx.spec.routing.provider} route {router.target}: {drift}; restored")
    )


# -- the end phases ----------------------------------------------------------------


async def _version_phase(ctx: Context, version: dict[str, Any], phase: str, **history: Any) -> None:
    name = version["metadata"]["name"]
    if history:
        change = judging.version_change(phase, now=ctx.now, **history)
    else:

        def change(status: dict[str, Any]) -> dict[str, Any]:
            return {} if status.get("phase") == phase else {"phase": phase}

    await ctx.kube.update_status("modelversions", ctx.namespace, name, change)


async def hand_over(
    ctx: Context,
    versions: list[dict[str, Any]],
    *,
    outgoing: str,
    incoming: str,
    outgoing_phase: str,
    outgoing_action: str,
    outgoing_reason: str,
    outgoing_message: str,
    incoming_reason: str,
    incoming_message: str,
    triggered_by: str,
) -> None:
    """The champion changes hands: ``incoming`` becomes Champion, then
    ``outgoing`` leaves with its phase; both get a history entry naming what
    triggered it. In this order a turn cut short in between leaves two
    champions for a moment (the next turn finishes), never none."""
    changes = (
        (incoming, "Champion", "Promoted", incoming_reason, incoming_message),
        (outgoing, outgoing_phase, outgoing_action, outgoing_reason, outgoing_message),
    )
    for version, phase, action, reason, message in changes:
        found = _version(versions, version)
        if found is not None:
            await _version_phase(
                ctx,
                found,
                phase,
                action=action,
                reason=reason,
                message=message,
                triggered_by=triggered_by,
                from_version=outgoing,
                to_version=incoming,
            )


async def _disown(ctx: Context, resource: Any, name: str) -> None:
    def disown(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta["ownerReferences"] = [
            o for o in meta.get("ownerReferences") or () if o.get("uid") != ctx.body["metadata"]["uid"]
        ]
        if not meta["ownerReferences"]:
            meta.pop("ownerReferences")
        (meta.get("labels") or {}).pop(workloads.EXPERIMENT_LABEL, None)

    await ctx.kube.modify(resource, ctx.namespace, name, disown)


async def ours(ctx: Context, split: Split) -> bool:
    """Whether this experiment created the challenger's workload (an
    experiment that never started must not undo another's)."""
    challenger = await ctx.kube.get(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
    owners = ((challenger or {}).get("metadata") or {}).get("ownerReferences") or ()
    if challenger is not None:
        return any(o.get("uid") == ctx.body["metadata"]["uid"] for o in owners)
    # Absent: ours if it ever took traffic (removed by an earlier, interrupted try).
    return ctx.status.start_time is not None


async def withdraw(ctx: Context, outcome: Outcome, split: Split) -> float | None:
    """All traffic back to the champion, then, once the data plane applied
    that route and the drain passed, the challenger's workload removed.
    Seconds to wait before the next look, None when done."""
    await ctx.router().finalize(split, "champion")
    wait = await drained(ctx, outcome, split.challenger)
    if wait is not None:
        return wait
    await ctx.kube.delete(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
    if ctx.spec.routing.provider != "replicas":
        await ctx.kube.delete(SERVICES, ctx.namespace, split.challenger.service)
    return None


async def settle(ctx: Context, outcome: Outcome) -> float | None:
    """Carry out a decision (idempotent: redone after a restart until the end
    phase is written); seconds until the next look while it drains."""
    decision = ctx.status.decision.outcome if ctx.status.decision else None
    if ctx.status.phase in ("Promoted", "RolledBack", "Failed") or decision not in ENDS:
        return None  # nothing left to do here
    phase = ENDS[decision]
    try:
        split, _, challenger = await resolve(ctx)
    except (Wait, RouterError) as error:
        if phase == "Promoting":
            raise
        outcome.status["phase"] = phase  # nothing was started that needs undoing
        ctx.logger.info("experiment ended before it started: %s", error)
        return None
    router = ctx.router()
    versions = await _versions(ctx)
    triggered_by = f"abexperiment/{ctx.name}"
    message = (ctx.status.decision.message if ctx.status.decision else None) or ""
    if phase == "Promoting":
        why = await not_serving(ctx, split.challenger)
        if why is not None:
            raise Wait("NotServing", f"promotion waits: {why}")
        await router.set_weights(split, 100)  # the champion's route stays, at 0: warm for a rollback
        for resource, name in ((DEPLOYMENTS, split.challenger.deployment), (SERVICES, split.challenger.service)):
            if resource is DEPLOYMENTS or ctx.spec.routing.provider != "replicas":
                await _disown(ctx, resource, name)
        await hand_over(
            ctx,
            versions,
            outgoing=split.champion.version,
            incoming=split.challenger.version,
            outgoing_phase="Archived",
            outgoing_action="Demoted",
            outgoing_reason="ChallengerPromoted",
            outgoing_message=f"replaced by {split.challenger.version}: {message}",
            incoming_reason="ChallengerBetter",
            incoming_message=message,
            triggered_by=triggered_by,
        )
        weights = await _weights(ctx, split, outcome)
        outcome.status.update(phase="Promoted", promotionTime=rfc3339(ctx.now))
        outcome.events.append(
            ("Normal", "Promoted", f"{split.challenger.version} is champion ({weights}% of traffic): {message}")
        )
        return None
    if not await ours(ctx, split):
        outcome.status["phase"] = phase
        return None  # it never ran (aborted while another experiment held the model): nothing to undo
    wait = await withdraw(ctx, outcome, split)
    await _weights(ctx, split, outcome)
    if wait is not None:
        return wait  # the end phase is written once the challenger is gone
    outcome.status["phase"] = phase
    if phase == "Inconclusive":
        await _version_phase(ctx, challenger, "Registered")
    else:
        await _version_phase(
            ctx,
            challenger,
            "Rejected",
            action="Rejected",
            reason=(ctx.status.decision.reason if ctx.status.decision else None) or str(phase),
            message=message,
            triggered_by=triggered_by,
            from_version=split.champion.version,
            to_version=split.challenger.version,
        )
    return None


async def until_done(ctx: Context, step: Callable[[Context, Outcome], Awaitable[float | None]]) -> None:
    """Run ``step`` until it is done, for the delete handler (no daemon turns
    left): what it records for the next look (the drain) is kept in memory,
    so after a restart there the drain is waited again, never skipped."""
    while True:
        outcome = Outcome()
        wait = await step(ctx, outcome)
        if wait is None:
            return
        wire = {**ctx.status.to_wire(), **outcome.status}
        ctx.status = ABExperimentStatus.model_validate({k: v for k, v in wire.items() if v is not None})
        await asyncio.sleep(wait)
        ctx.now = datetime.datetime.now(datetime.UTC)


# -- kopf glue ---------------------------------------------------------------------------


async def _refused_webhooks(ctx: Context, outcome: Outcome) -> set[str]:
    """The webhooks whose Secret or host may not be used: a condition and an
    Event each, and they are sent nothing (core.consent)."""
    hooks = (ctx.spec.notifications.webhooks if ctx.spec.notifications else None) or []
    refused: set[str] = set()
    problems = []
    for hook in hooks:
        try:
            url = (await ctx.kube.read_secret(ctx.namespace, hook.url_secret_ref.name, "webhook")).get(
                hook.url_secret_ref.key, ""
            )
            check_webhook_url(hook.name, url, ctx.allowed.webhook_hosts)
        except UseRefused as refusal:
            refused.add(hook.name)
            problems.append(refusal)
        except ApiException:
            continue  # unreadable now: the sender retries and counts the failure
    if problems:
        message = "; ".join(p.message for p in problems)
        previous = get_condition(ctx.status.conditions or [], NOTIFICATIONS_ALLOWED)
        outcome.conditions.append((NOTIFICATIONS_ALLOWED, "False", problems[0].reason, message))
        if previous is None or previous.message != message:
            outcome.events.append(("Warning", "WebhookRefused", message))
    elif hooks and get_condition(ctx.status.conditions or [], NOTIFICATIONS_ALLOWED) is not None:
        outcome.conditions.append((NOTIFICATIONS_ALLOWED, "True", "Allowed", "every webhook may be used"))
    return refused


def _notify(ctx: Context, decision: str, message: str, refused: set[str]) -> None:
    hooks = [
        h for h in (ctx.spec.notifications.webhooks if ctx.spec.notifications else None) or [] if h.name not in refused
    ]
    if not hooks:
        return
    payload = {
        "kind": "ABExperiment",
        "namespace": ctx.namespace,
        "name": ctx.name,
        "model": ctx.spec.model,
        "champion": ctx.status.champion or ctx.spec.champion,
        "challenger": ctx.spec.challenger,
        "outcome": decision,
        "message": message,
        "time": rfc3339(ctx.now),
    }

    async def read(name: str) -> dict[str, str]:
        return await ctx.kube.read_secret(ctx.namespace, name, "webhook")

    webhooks.notify(hooks, payload, read, ctx.allowed.webhook_hosts)


async def write(ctx: Context, outcome: Outcome) -> ABExperimentStatus:
    refused = await _refused_webhooks(ctx, outcome) if outcome.notification is not None else set()
    basis = event_basis(ctx.status.to_wire())
    for type_, reason, message in outcome.events:
        await post_event(ctx.kube, ctx.body, type_, reason, message, ctx.logger, basis)
    generation = ctx.body["metadata"].get("generation")
    written = await ctx.kube.update_status(PLURAL, ctx.namespace, ctx.name, apply(outcome, generation, ctx.now))
    if outcome.notification is not None:
        _notify(ctx, *outcome.notification, refused)
    status = ABExperimentStatus.model_validate(written.get("status") or {})
    for phase in PHASES:
        EXPERIMENT_PHASE.labels(ctx.namespace, ctx.name, phase).set(1 if status.phase == phase else 0)
    return status


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": dict(body.metadata)}


async def run(
    *,
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """The daemon of one ABExperiment: its phases, then the health checks
    after promotion, guarded so that no error stops it."""
    from relearn.handlers import rollback  # it builds on this module

    kube: KubeClient = memo["kube"]
    assert namespace is not None  # ABExperiment is namespaced
    guard = Guard(kube, PLURAL, namespace, name, body, logger)
    status = ABExperimentStatus.model_validate(dict(body.status or {}))

    async def turn() -> float | None:
        nonlocal status
        try:
            spec = ABExperimentSpec.model_validate(dict(body.spec))
        except ValidationError:
            return 30.0  # the spec handler reports it
        now = datetime.datetime.now(datetime.UTC)
        ctx = Context(
            kube,
            _snapshot(body),
            spec,
            status,
            now,
            logger,
            memo.get("prometheus_url"),
            memo.get("allowed") or Allowlist(),
        )
        outcome = Outcome()
        decision = status.decision.outcome if status.decision else None
        wait: float | None = PENDING_POLL
        with HANDLER_SECONDS.labels("ABExperiment", "experiment").time():
            try:
                if status.phase == "Promoted":
                    wait = await rollback.step(ctx, outcome)  # health checks and rollback
                elif status.phase in TERMINAL_PHASES:
                    # Done: the end phase is written only after its actions.
                    # Redoing them now could undo what later experiments did.
                    return None
                elif status.phase == "Promoting" or decision in ENDS:
                    wait = await settle(ctx, outcome) or 0.0
                else:
                    wait = await advance_experiment(ctx, outcome)
                guard.settle(outcome, status.conditions)
                status = await write(ctx, outcome)
                guard.finished()
            except (RouterError, Wait) as error:
                logger.warning("experiment turn not finished, retrying: %s", getattr(error, "reason", error))
                wait = PENDING_POLL
        return wait

    await keep_turning(stopped, guard, turn)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.daemon(GROUP, VERSION, PLURAL, id="experiment", registry=registry, cancellation_timeout=10)(run)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="restore-routing", registry=registry, backoff=2.0)
    async def restore(*, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
        """Deleting a running experiment aborts it: all traffic back to the champion.
        A decision under way is finished first (a promotion keeps its new
        champion); an ended experiment leaves routing as it is now."""
        status = ABExperimentStatus.model_validate(dict(body.status or {}))
        if status.phase in TERMINAL_PHASES:
            return
        try:
            spec = ABExperimentSpec.model_validate(dict(body.spec))
        except ValidationError:
            return
        ctx = Context(memo["kube"], _snapshot(body), spec, status, datetime.datetime.now(datetime.UTC), logger, None)
        if status.phase == "Promoting" or (status.decision is not None and status.decision.outcome in ENDS):
            await until_done(ctx, settle)
            logger.info("experiment deleted during its %s: carried out", status.decision and status.decision.outcome)
            return
        try:
            split, _, _ = await resolve(ctx)
        except (Wait, RouterError) as error:
            logger.info("nothing to restore: %s", error)
            return
        if await ours(ctx, split):
            await until_done(ctx, lambda c, o: withdraw(c, o, split))
            logger.info("experiment deleted: all traffic back to champion %s", split.champion.version)
