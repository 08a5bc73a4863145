"""After promotion: the new champion's health checks, and the rollback to
the previous champion, automatic or asked for.

The experiment that promoted a version keeps watching it while it is the
model's champion (its daemon moves here once the phase is Promoted):

- **Manual rollback** (the ``relearn.dev/rollback`` annotation, set by
  ``relearn rollback``): to the previous champion, or to the version the
  annotation names; refused with a Warning Event when there is nothing to
  roll back to or the target failed its own checks (RolledBack, Rejected).
- **Health checks** every ``rollback.interval`` within ``rollback.window``
  after promotion (see :mod:`relearn.core.health`); ``failureThreshold``
  consecutive failures decide a rollback.
- **Keeping warm**: until ``bakeTime`` the previous champion keeps running
  (and its route entry, at weight 0), so a rollback is one routing change;
  after it its route entry is removed and, drained, it is scaled to 0.
  A later rollback scales it up again and shifts once its Service has ready
  endpoints.

A rollback is recorded first (``decision.outcome: RollBack``,
``rollbackTarget``; Warning Event, webhooks) and then carried out: traffic
100% to the target (once its endpoints are ready), ModelVersions (failed ->
RolledBack, target -> Champion) with history naming who or what triggered
it, then, once the data plane applied the route and ``rollback.drain``
passed, the failed version's workload removed and phase RolledBack. Carrying out is idempotent and resumes after
an operator restart, so it happens exactly once. A RolledBack experiment is
final: automation never promotes that version again without a new experiment.
"""

from __future__ import annotations

import math
from typing import Any

from kubernetes.client import ApiException

from relearn.adapters.kube import DEPLOYMENTS, SERVICES
from relearn.adapters.prometheus import PrometheusError, scope
from relearn.adapters.routers import Backend, RouterError, Split
from relearn.api.base import rfc3339
from relearn.core import health, workloads
from relearn.core.drift_policy import champion as current_champion
from relearn.core.durations import parse_duration
from relearn.errors import DecisionError
from relearn.handlers.experiments import (
    REQUESTED_BY_ANNOTATION,
    Context,
    Wait,
    _decision,
    _version,
    _version_phase,
    _versions,
    _weights,
    deployment_of,
    drained,
    hand_over,
    not_serving,
    read_values,
    service_for,
)
from relearn.handlers.outcome import Outcome
from relearn.metrics import DECISIONS

ROLLBACK_ANNOTATION = "relearn.dev/rollback"
HEALTHY, ROLLING_BACK = "Healthy", "RollingBack"
WARM_REPLICAS_ANNOTATION = "relearn.dev/warm-replicas"
FAILED_PHASES = ("RolledBack", "Rejected")
IDLE_POLL = 30.0  # seconds between looks once the rollback window is over


async def split_to(ctx: Context, target: str) -> tuple[Split, dict[str, Any]]:
    """Rollback split: 'champion' is the version traffic returns to, 'challenger' the failed one."""
    router = ctx.router()
    previous = ctx.status.workloads.champion if ctx.status.workloads else None
    deployment = await deployment_of(ctx, target, previous if target == ctx.status.champion else None)
    if deployment is None:
        raise Wait("NoWorkload", f"no Deployment of {ctx.spec.model} runs version {target} to roll back to")
    failed_name = (ctx.status.workloads.challenger if ctx.status.workloads else None) or workloads.workload_name(
        ctx.spec.workload.name, ctx.spec.challenger
    )
    failed_service = router.target if ctx.spec.routing.provider == "replicas" else failed_name
    split = Split(
        Backend(target, deployment["metadata"]["name"], await service_for(ctx, router, deployment)),
        Backend(ctx.spec.challenger, failed_name, failed_service),
    )
    return split, deployment


# -- watching -------------------------------------------------------------------


def _decide_rollback(ctx: Context, outcome: Outcome, target: str, reason: str, message: str) -> None:
    outcome.status["decision"] = _decision("RollBack", reason, message, ctx.now)
    outcome.status["rollbackTarget"] = target
    outcome.notification = ("RollBack", message)
    outcome.events.append(("Warning", "RollbackStarted", message))
    outcome.conditions.append((ROLLING_BACK, "True", reason, message))
    DECISIONS.labels("rollback", reason).inc()


async def _requested(ctx: Context, outcome: Outcome, request: str, versions: list[dict[str, Any]]) -> bool:
    """A rollback asked for by annotation: decided (True) or refused with the reason."""
    previous = ctx.status.champion
    target = previous if request.strip() in ("", "true", "previous") else request.strip()
    problem = None
    if target is None:
        problem = "the experiment does not know the previous champion"
    elif target == ctx.spec.challenger:
        problem = f"{target} is the champion already"
    else:
        found = _version(versions, target)
        phase = ((found or {}).get("status") or {}).get("phase")
        if found is None:
            problem = f"no ModelVersion of {ctx.spec.model} has version {target}"
        elif phase in FAILED_PHASES:
            problem = f"{target} failed its own checks ({phase}); a rollback never returns to it"
    if problem is not None:
        refused = next((c for c in ctx.status.conditions or [] if c.type == ROLLING_BACK), None)
        message = f"rollback to {target or 'the previous champion'} refused: {problem}"
        if refused is None or refused.message != message:
            outcome.events.append(("Warning", "RollbackRefused", message))
        outcome.conditions.append((ROLLING_BACK, "False", "RollbackRefused", message))
        return False
    assert target is not None
    by = ctx.annotations.get(REQUESTED_BY_ANNOTATION)
    asked = f"{ROLLBACK_ANNOTATION}: {request.strip() or 'previous'}" + (f", by {by}" if by else "")
    _decide_rollback(
        ctx, outcome, target, "ManualRollback", f"rollback of {ctx.spec.challenger} to {target} asked for ({asked})"
    )
    return True


async def _release_previous(ctx: Context, outcome: Outcome) -> bool:
    """Past bakeTime: the previous champion stops running. Its route entry is
    removed first; it is scaled to 0 once the data plane has applied that
    route and the drain passed (True then, False while it drains)."""
    previous = ctx.status.champion
    if previous is None:
        return True
    try:
        split, deployment = await split_to(ctx, previous)
    except (Wait, RouterError):
        return True
    if ctx.spec.routing.provider != "replicas":
        await ctx.router().finalize(split, "challenger")
    if await drained(ctx, outcome, split.champion) is not None:
        return False
    replicas = int(deployment["spec"].get("replicas") or 0)
    if replicas:

        def release(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("annotations", {})[WARM_REPLICAS_ANNOTATION] = str(replicas)
            obj["spec"]["replicas"] = 0

        await ctx.kube.modify(DEPLOYMENTS, ctx.namespace, split.champion.deployment, release)
    outcome.events.append(
        (
            "Normal",
            "PreviousChampionReleased",
            f"bake time {ctx.spec.rollback.bake_time} passed: {previous} ({split.champion.deployment}) scaled to 0; "
            "a rollback now scales it up first",
        )
    )
    return True


async def _check(ctx: Context) -> tuple[list[health.CheckResult], str | None]:
    """Every check's result, and why Prometheus gave none when it did not."""
    rb = ctx.spec.rollback
    results = []
    deployment = await ctx.kube.get(
        DEPLOYMENTS,
        ctx.namespace,
        (ctx.status.workloads.challenger if ctx.status.workloads else None)
        or workloads.workload_name(ctx.spec.workload.name, ctx.spec.challenger),
    )
    if deployment is not None:
        desired = int(deployment["spec"].get("replicas", 1))
        results.append(
            health.availability(int((deployment.get("status") or {}).get("availableReplicas") or 0), desired)
        )
    arm = ctx.status.arms.challenger if ctx.status.arms else None
    checks = rb.checks or health.default_checks()
    labels = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=ctx.spec.challenger)
    queries = [(c.name, c.query, labels) for c in checks]
    at_promotion = None
    if not rb.checks and arm is not None and arm.samples is not None and arm.successes is not None:
        # What the version was promoted with: its arm's counts in the experiment.
        at_promotion = health.counts(arm.samples - arm.successes, arm.samples)
        queries += [
            ("feedback.correct", health.FEEDBACK_CORRECT_QUERY, labels),
            ("feedback.total", health.FEEDBACK_TOTAL_QUERY, labels),
        ]
    problem = None
    values: dict[str, float | None] = {key: None for key, _, _ in queries}
    try:
        values = await read_values(ctx, queries, rb.check_window)
    except PrometheusError as error:
        problem = error.message
    except ApiException as error:  # the credentials Secret
        problem = f"cannot read the Prometheus credentials: {error.reason}"
    except ValueError as error:  # a check's query that cannot be rendered safely
        problem = str(error)
    for c in checks:
        results.append(health.judge_check(c.name, values[c.name], c.max, rb.fail_on_no_data))
    if at_promotion is not None:
        correct, total = values["feedback.correct"], values["feedback.total"]
        current = None if total is None else health.counts(total - (correct or 0.0), total)
        results.append(health.feedback_error_rate(current, at_promotion, rb.fail_on_no_data))
    return results, problem


async def _refresh_weights(ctx: Context, outcome: Outcome) -> None:
    """Weights as the router reports them now (the replicas router's move as pods become ready)."""
    if ctx.status.champion is None:
        return
    try:
        split, _ = await split_to(ctx, ctx.status.champion)
        await _weights(ctx, split, outcome)
    except (Wait, RouterError):
        return  # the previous champion's workload is gone: nothing to compare with


async def watch(ctx: Context, outcome: Outcome) -> float | None:
    """One look at a promoted champion; None when there is nothing more to watch."""
    rb = ctx.spec.rollback
    interval = parse_duration(rb.interval).total_seconds()
    versions = await _versions(ctx)
    mine = _version(versions, ctx.spec.challenger)
    if mine is None:
        return None
    if (mine.get("status") or {}).get("phase") != "Champion":
        if current_champion(versions) is not None or (mine.get("status") or {}).get("phase") in FAILED_PHASES:
            return None  # superseded by a later promotion, or rolled back by another experiment
        # Promoted and serving, but recorded otherwise (an older operator's
        # re-registration): the model never stays without a champion.
        await _version_phase(
            ctx,
            mine,
            "Champion",
            action="Promoted",
            reason="ChampionRestored",
            message=f"{ctx.spec.challenger} serves the model's traffic since its promotion; no other champion",
            triggered_by=f"abexperiment/{ctx.name}",
            to_version=ctx.spec.challenger,
        )
        outcome.events.append(
            ("Warning", "ChampionRestored", f"{ctx.spec.challenger} was promoted and serves: Champion again")
        )
    request = ctx.annotations.get(ROLLBACK_ANNOTATION)
    if request is not None and await _requested(ctx, outcome, request, versions):
        return 0.0
    assert ctx.status.promotion_time is not None
    since = ctx.now - ctx.status.promotion_time
    state = ctx.status.health
    warm = True if state is None or state.previous_champion_warm is None else state.previous_champion_warm
    if warm and since > parse_duration(rb.bake_time) and await _release_previous(ctx, outcome):
        warm = False
    if not rb.enabled or since > parse_duration(rb.window):
        why = "automatic rollback is off" if not rb.enabled else f"the rollback window ({rb.window}) is over"
        outcome.conditions.append((HEALTHY, "Unknown", "NotMonitored", why))
        outcome.status["health"] = {**(state.to_wire() if state else {}), "previousChampionWarm": warm}
        return max(interval, IDLE_POLL) if since > parse_duration(rb.window) else interval
    await _refresh_weights(ctx, outcome)
    try:
        results, problem = await _check(ctx)
    except DecisionError as refused:  # counts that cannot be real: no health verdict, no rollback
        message = f"no health verdict: {refused.message}"
        previous = next((c for c in ctx.status.conditions or [] if c.type == HEALTHY), None)
        outcome.conditions.append((HEALTHY, "Unknown", refused.reason, message))
        if previous is None or previous.reason != refused.reason:
            outcome.events.append(("Warning", refused.reason, message))
        outcome.status["health"] = {
            **(state.to_wire() if state else {}),
            "lastCheckTime": rfc3339(ctx.now),
            "previousChampionWarm": warm,
        }
        return interval
    verdict = health.assess(results, (state.consecutive_failures if state else None) or 0, rb.failure_threshold)
    outcome.status["health"] = {
        "lastCheckTime": rfc3339(ctx.now),
        "consecutiveFailures": verdict.failures,
        "previousChampionWarm": warm,
        "checks": [
            {
                k: v
                for k, v in {
                    "name": r.name,
                    "value": r.value,
                    "max": r.max,
                    "samples": r.samples,
                    "result": r.result,
                }.items()
                if v is not None
            }
            for r in results
            if r.value is None or math.isfinite(r.value)
        ],
    }
    if verdict.failing:
        message = f"{verdict.message()} ({verdict.failures} of {rb.failure_threshold} consecutive checks)"
        outcome.conditions.append((HEALTHY, "False", "ChecksFailing", message))
        if verdict.failures == 1:
            outcome.events.append(("Warning", "HealthCheckFailed", message))
    elif problem or any(r.result in ("NoData", "NotEnoughData") for r in results):
        missing = "; ".join(r.describe() for r in results if r.result in ("NoData", "NotEnoughData"))
        outcome.conditions.append((HEALTHY, "Unknown", "NoData", problem or missing))
    else:
        outcome.conditions.append((HEALTHY, "True", "ChecksPassing", "; ".join(r.describe() for r in results)))
    if verdict.roll_back and ctx.status.champion is not None:
        _decide_rollback(
            ctx,
            outcome,
            ctx.status.champion,
            "HealthCheckFailed",
            f"{ctx.spec.challenger} failed its health checks: {verdict.message()} "
            f"({verdict.failures} consecutive checks, {since.total_seconds():.0f}s after promotion); "
            f"rolling back to {ctx.status.champion}",
        )
        return 0.0
    return interval


# -- carrying out ---------------------------------------------------------------------


async def carry_out(ctx: Context, outcome: Outcome) -> float:
    """Do the decided rollback (idempotent); seconds until the next step."""
    target = ctx.status.rollback_target
    assert target is not None
    assert ctx.status.decision is not None
    split, deployment = await split_to(ctx, target)
    router = ctx.router()
    if int(deployment["spec"].get("replicas") or 0) == 0:
        warm = (deployment["metadata"].get("annotations") or {}).get(WARM_REPLICAS_ANNOTATION)
        failed = await ctx.kube.get(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
        replicas = int(warm or ((failed or {}).get("spec") or {}).get("replicas") or 1)

        def scale_up(obj: dict[str, Any]) -> None:
            obj["spec"]["replicas"] = replicas

        await ctx.kube.modify(DEPLOYMENTS, ctx.namespace, split.champion.deployment, scale_up)
        outcome.conditions.append(
            (
                ROLLING_BACK,
                "True",
                "ScalingUp",
                f"{target} was released: scaling {split.champion.deployment} to {replicas}",
            )
        )
        return 1.0
    ready, words = workloads.ready(deployment)
    if not ready:
        outcome.conditions.append((ROLLING_BACK, "True", "WaitingForReady", f"{split.champion.deployment}: {words}"))
        return 1.0
    why = await not_serving(ctx, split.champion)
    if why is not None:
        outcome.conditions.append((ROLLING_BACK, "True", "WaitingForEndpoints", why))
        return 0.5
    # Traffic moves in one routing change where the target is still in the
    # route (warm); a released one is added back first. Then the failed
    # version leaves the route, and is deleted only once drained.
    record = ctx.status.drain
    moved = record.since if record and record.backend == split.challenger.deployment and record.since else ctx.now
    if ctx.spec.routing.provider != "replicas" and split.champion.service not in await router.services():
        await router.set_weights(split, 0)
    await router.finalize(split, "champion")
    weights = await _weights(ctx, split, outcome)
    decision = ctx.status.decision
    versions = await _versions(ctx)
    by = ctx.annotations.get(REQUESTED_BY_ANNOTATION)
    triggered_by = (
        f"abexperiment/{ctx.name} health checks"
        if decision.reason == "HealthCheckFailed"
        else f"{ROLLBACK_ANNOTATION} on abexperiment/{ctx.name}" + (f" by {by}" if by else "")
    )
    await hand_over(
        ctx,
        versions,
        outgoing=ctx.spec.challenger,
        incoming=target,
        outgoing_phase="RolledBack",
        outgoing_action="RolledBack",
        outgoing_reason=decision.reason or "RolledBack",
        outgoing_message=decision.message or "",
        incoming_reason="RolledBack",
        incoming_message=f"champion again after {ctx.spec.challenger} was rolled back: {decision.message or ''}",
        triggered_by=triggered_by,
    )
    wait = await drained(ctx, outcome, split.challenger)
    if wait is not None:
        outcome.conditions.append(
            (ROLLING_BACK, "True", "Draining", f"traffic on {target}; {split.challenger.deployment} drains")
        )
        return wait
    await ctx.kube.delete(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
    if ctx.spec.routing.provider != "replicas":
        await ctx.kube.delete(SERVICES, ctx.namespace, split.challenger.service)
    took = ""
    if decision.time is not None:
        took = f" {(moved - decision.time).total_seconds():.1f}s after the decision"
    outcome.status["phase"] = "RolledBack"
    outcome.conditions.append((ROLLING_BACK, "False", "RolledBack", f"traffic on {target}"))
    outcome.events.append(
        (
            "Warning",
            "RolledBack",
            f"{target} serves {100 - weights}% of traffic again{took}; {ctx.spec.challenger} removed "
            f"({decision.reason})",
        )
    )
    return 0.0


async def step(ctx: Context, outcome: Outcome) -> float | None:
    """A promoted experiment's turn: carry out a decided rollback, else watch."""
    if ctx.status.decision is not None and ctx.status.decision.outcome == "RollBack":
        return await carry_out(ctx, outcome)
    return await watch(ctx, outcome)
