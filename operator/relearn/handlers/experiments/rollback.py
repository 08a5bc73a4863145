"""After promotion: the new champion's health checks, and the rollback to
the previous champion, automatic or asked for.

The experiment that promoted a version keeps watching it while it is the
model's champion (its daemon moves here once the phase is Promoted):

- **Manual rollback** (the ``relearn.dev/rollback`` annotation, set by
  ``relearn rollback``): to the previous champion, or to the version the
  annotation names; refused with a Warning Event when there is nothing to
  roll back to or the target failed its own checks (RolledBack, Rejected).
- **Health checks** every ``rollback.bakeInterval`` during ``bakeTime``, then
  every ``rollback.interval``, within ``rollback.window`` after promotion
  (see :mod:`relearn.core.health`); ``failureThreshold`` consecutive failures
  decide a rollback, and so does one look where the sequential test of the
  error rate or feedback error rate (``rollback.method: sequential``, the
  default) has the evidence that the rate is above its max.
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

Called by :mod:`.daemon` for a turn whose phase machine says Watch. The
decisions (the rollback target and its refusal rules, whether the version is
still watched, the bake-time and window verdicts, the Healthy condition) are
in :mod:`relearn.core.rollback`; this module reads and writes.
"""

from __future__ import annotations

import math
from typing import Any

from relearn.adapters.kube import DEPLOYMENTS
from relearn.adapters.prometheus import PrometheusError, scope
from relearn.adapters.routers import Backend, RouterError, Split
from relearn.api.abexperiment import CheckStatus, Health
from relearn.api.names import (
    HEALTHY,
    REQUESTED_BY_ANNOTATION,
    ROLLBACK_ANNOTATION,
    ROLLING_BACK,
    WARM_REPLICAS_ANNOTATION,
)
from relearn.core import health, model_versions, promql, workloads
from relearn.core import rollback as deciding
from relearn.core.durations import parse_duration
from relearn.errors import APIError, DecisionError, RollbackRefused
from relearn.handlers.experiments.arms import deployment_of, not_serving, service_for
from relearn.handlers.experiments.context import Context, Wait
from relearn.handlers.experiments.measuring import read_values
from relearn.handlers.experiments.traffic import drained, remove
from relearn.handlers.outcome import Outcome
from relearn.metrics import DECISIONS


def _promoted_workload(ctx: Context) -> str:
    """The Deployment of the promoted (maybe failing) version: the challenger's as the experiment created it."""
    recorded = ctx.status.workloads.challenger if ctx.status.workloads else None
    return recorded or workloads.workload_name(ctx.spec.workload.name, ctx.spec.challenger)


async def split_to(ctx: Context, target: str) -> tuple[Split, dict[str, Any]]:
    """Rollback split: 'champion' is the version traffic returns to, 'challenger' the failed one."""
    router = ctx.router()
    previous = ctx.status.workloads.champion if ctx.status.workloads else None
    deployment = await deployment_of(ctx, target, previous if target == ctx.status.champion else None)
    if deployment is None:
        raise Wait("NoWorkload", f"no Deployment of {ctx.spec.model} runs version {target} to roll back to")
    failed_name = _promoted_workload(ctx)
    split = Split(
        Backend(target, deployment["metadata"]["name"], await service_for(ctx, router, deployment)),
        Backend(ctx.spec.challenger, failed_name, router.arm_service(failed_name)),
    )
    return split, deployment


# -- watching -------------------------------------------------------------------


def _decide_rollback(ctx: Context, outcome: Outcome, target: str, reason: str, message: str) -> None:
    outcome.status["decision"] = ctx.decision("RollBack", reason, message)
    outcome.status["rollbackTarget"] = target
    outcome.notify("RollBack", message)
    outcome.event("Warning", "RollbackStarted", message)
    outcome.condition(ROLLING_BACK, "True", reason, message)
    DECISIONS.labels("rollback", reason).inc()


def _requested(ctx: Context, outcome: Outcome, request: str, versions: list[dict[str, Any]]) -> bool:
    """A rollback asked for by annotation: decided (True) or refused with the reason."""
    try:
        target = deciding.target(
            request, previous=ctx.status.champion, champion=ctx.spec.challenger, model=ctx.spec.model, versions=versions
        )
    except RollbackRefused as refusal:
        refused = next((c for c in ctx.status.conditions or [] if c.type == ROLLING_BACK), None)
        if refused is None or refused.message != refusal.message:
            outcome.event("Warning", refusal.reason, refusal.message)
        outcome.condition(ROLLING_BACK, "False", refusal.reason, refusal.message)
        return False
    message = deciding.requested_message(
        request,
        champion=ctx.spec.challenger,
        to=target,
        annotation=ROLLBACK_ANNOTATION,
        by=ctx.annotations.get(REQUESTED_BY_ANNOTATION),
    )
    _decide_rollback(ctx, outcome, target, "ManualRollback", message)
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
    if not ctx.router().routes_by_ready_pods:  # there its route entry is its replicas, scaled below
        await ctx.router().finalize(split, "challenger")
    if await drained(ctx, outcome, split.champion) is not None:
        return False
    replicas = int(deployment["spec"].get("replicas") or 0)
    if replicas:

        def release(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("annotations", {})[WARM_REPLICAS_ANNOTATION] = str(replicas)
            obj["spec"]["replicas"] = 0

        await ctx.kube.modify(DEPLOYMENTS, ctx.namespace, split.champion.deployment, release)
    outcome.event(
        "Normal",
        "PreviousChampionReleased",
        f"bake time {ctx.spec.rollback.bake_time} passed: {previous} ({split.champion.deployment}) scaled to 0; "
        "a rollback now scales it up first",
    )
    return True


def _previous_state(ctx: Context, name: str) -> health.SequentialState | None:
    """What the sequential test of check ``name`` left in status at the last look."""
    for check in (ctx.status.health.checks if ctx.status.health else None) or ():
        if check.name == name and check.errors_total is not None and check.samples_total is not None:
            alarm_at = 1 / ctx.spec.rollback.alpha
            return health.SequentialState(check.errors_total, check.samples_total, check.log_evidence or 0.0, alarm_at)
    return None


def _current(errors: float | None, total: float | None) -> health.Counts | None:
    return None if total is None else health.counts(errors or 0.0, total)


async def _check(ctx: Context) -> tuple[list[health.CheckResult], str | None]:
    """Every check's result, and why Prometheus gave none when it did not."""
    rb = ctx.spec.rollback
    sequential = rb.method == "sequential" and not rb.checks
    results = []
    deployment = await ctx.kube.get(DEPLOYMENTS, ctx.namespace, _promoted_workload(ctx))
    if deployment is not None:
        desired = int(deployment["spec"].get("replicas", 1))
        results.append(
            health.availability(int((deployment.get("status") or {}).get("availableReplicas") or 0), desired)
        )
    arm = ctx.status.arms.challenger if ctx.status.arms else None
    checks = rb.checks or health.default_checks()
    labels = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=ctx.spec.challenger)
    error_rate = next((c for c in checks if c.name == health.ERROR_RATE), None) if sequential else None
    if error_rate is not None:  # judged from the cumulative counters instead of its windowed query
        checks = [c for c in checks if c is not error_rate]
    queries = [(c.name, c.query, labels) for c in checks]
    if error_rate is not None:
        queries += [("errors.now", promql.ERRORS_NOW, labels), ("requests.now", promql.REQUESTS_NOW, labels)]
    at_promotion = None
    if not rb.checks and arm is not None and arm.samples is not None and arm.successes is not None:
        # What the version was promoted with: its arm's counts in the experiment.
        at_promotion = health.counts(arm.samples - arm.successes, arm.samples)
        queries += [
            ("feedback.correct", promql.FEEDBACK_CORRECT_NOW if sequential else promql.FEEDBACK_CORRECT, labels),
            ("feedback.total", promql.FEEDBACK_TOTAL_NOW if sequential else promql.FEEDBACK_TOTAL, labels),
        ]
    problem = None
    values: dict[str, float | None] = {key: None for key, _, _ in queries}
    try:
        values = await read_values(ctx, queries, rb.check_window)
    except PrometheusError as error:
        problem = error.message
    except APIError as error:  # the credentials Secret
        problem = f"cannot read the Prometheus credentials: {error.http_reason}"
    except ValueError as error:  # a check's query that cannot be rendered safely
        problem = str(error)
    for c in checks:
        results.append(health.judge_check(c.name, values[c.name], c.max, rb.fail_on_no_data))
    if error_rate is not None:
        current = _current(values["errors.now"], values["requests.now"])
        results.append(
            health.sequential_check(
                error_rate.name,
                current,
                _previous_state(ctx, error_rate.name),
                error_rate.max,
                rb.alpha,
                rb.fail_on_no_data,
            )
        )
    if at_promotion is not None:
        correct, total = values["feedback.correct"], values["feedback.total"]
        current = None if total is None else health.counts(total - (correct or 0.0), total)
        if sequential:
            name = health.FEEDBACK_ERROR_RATE
            limit = health.feedback_limit(at_promotion)
            previous = _previous_state(ctx, name)
            results.append(health.sequential_check(name, current, previous, limit, rb.alpha, rb.fail_on_no_data))
        else:
            results.append(health.feedback_error_rate(current, at_promotion, rb.fail_on_no_data))
    return results, problem


async def _refresh_weights(ctx: Context, outcome: Outcome) -> None:
    """Weights as the router reports them now (the replicas router's move as pods become ready)."""
    if ctx.status.champion is None:
        return
    try:
        split, _ = await split_to(ctx, ctx.status.champion)
        await ctx.record_weights(split, outcome)
    except (Wait, RouterError):
        return  # the previous champion's workload is gone: nothing to compare with


async def _restore_champion(ctx: Context, outcome: Outcome, mine: dict[str, Any]) -> None:
    """Promoted and serving, but recorded otherwise (an older operator's
    re-registration): the model never stays without a champion."""
    history = model_versions.History(
        "Promoted",
        "ChampionRestored",
        f"{ctx.spec.challenger} serves the model's traffic since its promotion; no other champion",
        f"abexperiment/{ctx.name}",
        to_version=ctx.spec.challenger,
    )
    await ctx.write_version(mine, model_versions.phase_change("Champion", history, ctx.now))
    outcome.event("Warning", "ChampionRestored", f"{ctx.spec.challenger} was promoted and serves: Champion again")


def _health(ctx: Context, warm: bool, **changes: Any) -> dict[str, object]:
    """``status.health``: what it said, with ``changes`` and the previous champion's warmth."""
    state = ctx.status.health or Health()
    return state.model_copy(update={**changes, "previous_champion_warm": warm}).to_wire()


async def watch(ctx: Context, outcome: Outcome) -> float | None:
    """One look at a promoted champion; None when there is nothing more to watch."""
    rb = ctx.spec.rollback
    interval = parse_duration(rb.interval).total_seconds()
    versions = await ctx.versions()
    watched = deciding.watched(versions, ctx.spec.challenger, await ctx.champion_holder())
    if watched == "Stop":
        return None  # gone, superseded by a later promotion, or rolled back by another experiment
    if watched == "RestoreChampion":
        mine = model_versions.find(versions, ctx.spec.challenger)
        assert mine is not None
        await _restore_champion(ctx, outcome, dict(mine))
    request = ctx.annotations.get(ROLLBACK_ANNOTATION)
    if request is not None and _requested(ctx, outcome, request, versions):
        return 0.0
    assert ctx.status.promotion_time is not None
    since = ctx.now - ctx.status.promotion_time
    state = ctx.status.health
    warm = True if state is None or state.previous_champion_warm is None else state.previous_champion_warm
    if deciding.release_due(
        warm=warm, since_promotion=since, bake_time=parse_duration(rb.bake_time)
    ) and await _release_previous(ctx, outcome):
        warm = False
    monitoring = deciding.monitoring(
        enabled=rb.enabled,
        since_promotion=since,
        window=parse_duration(rb.window),
        window_text=rb.window,
        interval=interval,
        bake_time=parse_duration(rb.bake_time),
        bake_interval=parse_duration(rb.bake_interval).total_seconds(),
    )
    if not monitoring.checks:
        outcome.condition(HEALTHY, "Unknown", "NotMonitored", monitoring.why)
        outcome.status["health"] = _health(ctx, warm)
        return monitoring.wait
    await _refresh_weights(ctx, outcome)
    try:
        results, problem = await _check(ctx)
    except DecisionError as refused:  # counts that cannot be real: no health verdict, no rollback
        message = f"no health verdict: {refused.message}"
        previous = next((c for c in ctx.status.conditions or [] if c.type == HEALTHY), None)
        outcome.condition(HEALTHY, "Unknown", refused.reason, message)
        if previous is None or previous.reason != refused.reason:
            outcome.event("Warning", refused.reason, message)
        outcome.status["health"] = _health(ctx, warm, last_check_time=ctx.now)
        return monitoring.wait
    return _judge_health(ctx, outcome, results, problem, warm, since.total_seconds(), monitoring.wait)


def _how(verdict: health.HealthVerdict) -> str:
    """What decided a health rollback: the sequential test at one look, or consecutive failures."""
    if any(r.decisive for r in verdict.failing):
        return "the sequential test's evidence at one look"
    return f"{verdict.failures} consecutive checks"


def _judge_health(
    ctx: Context,
    outcome: Outcome,
    results: list[health.CheckResult],
    problem: str | None,
    warm: bool,
    since: float,
    interval: float,
) -> float:
    """One look's health verdict into status, and a rollback when it is due."""
    rb = ctx.spec.rollback
    state = ctx.status.health
    verdict = health.assess(results, (state.consecutive_failures if state else None) or 0, rb.failure_threshold)
    outcome.status["health"] = Health(
        last_check_time=ctx.now,
        consecutive_failures=verdict.failures,
        previous_champion_warm=warm,
        checks=[
            CheckStatus(
                name=r.name,
                value=r.value,
                max=r.max,
                samples=r.samples,
                result=r.result,
                errors_total=r.sequential.errors_total if r.sequential else None,
                samples_total=r.sequential.samples_total if r.sequential else None,
                log_evidence=r.sequential.log_evidence if r.sequential else None,
            )
            for r in results
            if r.value is None or math.isfinite(r.value)
        ],
    ).to_wire()
    condition = deciding.health_condition(verdict, results, problem, rb.failure_threshold)
    outcome.condition(HEALTHY, condition.status, condition.reason, condition.message)
    if condition.event:
        outcome.event("Warning", "HealthCheckFailed", condition.message)
    if verdict.roll_back and ctx.status.champion is not None:
        _decide_rollback(
            ctx,
            outcome,
            ctx.status.champion,
            "HealthCheckFailed",
            f"{ctx.spec.challenger} failed its health checks: {verdict.message()} "
            f"({_how(verdict)}, {since:.0f}s after promotion); "
            f"rolling back to {ctx.status.champion}",
        )
        return 0.0
    return interval


# -- carrying out ---------------------------------------------------------------------


async def _bring_back(ctx: Context, outcome: Outcome, split: Split, deployment: dict[str, Any]) -> float | None:
    """The rollback target made ready to serve: scaled up when it was
    released, then ready, then with endpoints. Seconds until the next look
    while it is not, None when traffic may move."""
    target = split.champion.version
    if int(deployment["spec"].get("replicas") or 0) == 0:
        warm = (deployment["metadata"].get("annotations") or {}).get(WARM_REPLICAS_ANNOTATION)
        failed = await ctx.kube.get(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
        replicas = deciding.scale_up_replicas(warm, int(((failed or {}).get("spec") or {}).get("replicas") or 0))

        def scale_up(obj: dict[str, Any]) -> None:
            obj["spec"]["replicas"] = replicas

        await ctx.kube.modify(DEPLOYMENTS, ctx.namespace, split.champion.deployment, scale_up)
        message = f"{target} was released: scaling {split.champion.deployment} to {replicas}"
        outcome.condition(ROLLING_BACK, "True", "ScalingUp", message)
        return 1.0
    ready, words = workloads.ready(deployment)
    if not ready:
        outcome.condition(ROLLING_BACK, "True", "WaitingForReady", f"{split.champion.deployment}: {words}")
        return 1.0
    why = await not_serving(ctx, split.champion)
    if why is not None:
        outcome.condition(ROLLING_BACK, "True", "WaitingForEndpoints", why)
        return 0.5
    return None


async def carry_out(ctx: Context, outcome: Outcome) -> float:
    """Do the decided rollback (idempotent); seconds until the next step."""
    target = ctx.status.rollback_target
    decision = ctx.status.decision
    assert target is not None
    assert decision is not None
    split, deployment = await split_to(ctx, target)
    plan = model_versions.hand_over(
        outgoing=ctx.spec.challenger,
        incoming=target,
        outgoing_phase="RolledBack",
        outgoing_action="RolledBack",
        outgoing_reason=decision.reason or "RolledBack",
        outgoing_message=decision.message or "",
        incoming_reason="RolledBack",
        incoming_message=f"champion again after {ctx.spec.challenger} was rolled back: {decision.message or ''}",
        triggered_by=deciding.triggered_by(
            decision.reason,
            experiment=ctx.name,
            annotation=ROLLBACK_ANNOTATION,
            by=ctx.annotations.get(REQUESTED_BY_ANNOTATION),
        ),
    )
    versions = await ctx.versions(fresh=True)
    # Cut short: traffic is back already; the model's champion record and phases first.
    if model_versions.cut_short(versions, plan, await ctx.champion_holder()):
        await ctx.move_versions(versions, plan)
    wait = await _bring_back(ctx, outcome, split, deployment)
    if wait is not None:
        return wait
    # Traffic moves in one routing change where the target is still in the
    # route (warm); a released one is added back first. Then the failed
    # version leaves the route, and is deleted only once drained.
    router = ctx.router()
    record = ctx.status.drain
    moved = record.since if record and record.backend == split.challenger.deployment and record.since else ctx.now
    if router.owns_services and split.champion.service not in await router.services():
        await router.set_weights(split, 0)
    await router.finalize(split, "champion")
    weights = await ctx.record_weights(split, outcome)
    await ctx.move_versions(versions, plan)
    wait = await drained(ctx, outcome, split.challenger)
    if wait is not None:
        outcome.condition(
            ROLLING_BACK, "True", "Draining", f"traffic on {target}; {split.challenger.deployment} drains"
        )
        return wait
    await remove(ctx, split.challenger)
    took = ""
    if decision.time is not None:
        took = f" {(moved - decision.time).total_seconds():.1f}s after the decision"
    outcome.status["phase"] = "RolledBack"
    outcome.condition(ROLLING_BACK, "False", "RolledBack", f"traffic on {target}")
    outcome.event(
        "Warning",
        "RolledBack",
        f"{target} serves {100 - weights}% of traffic again{took}; {ctx.spec.challenger} removed ({decision.reason})",
    )
    return 0.0


async def step(ctx: Context, outcome: Outcome) -> float | None:
    """A promoted experiment's turn: carry out a decided rollback, else watch."""
    if ctx.status.decision is not None and ctx.status.decision.outcome == "RollBack":
        return await carry_out(ctx, outcome)
    return await watch(ctx, outcome)
