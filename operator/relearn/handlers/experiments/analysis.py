"""The running phases of an ABExperiment, Pending and Progressing: start the
challenger (one experiment per model at a time), then every interval
measure both arms, let :func:`relearn.core.experiment.judge` decide, and
record the look (numbers in status, conditions, Events, the bounded
``status.measurements`` and the operator's statistic gauges). Before any
decision or weight change the sample-ratio guard
(:func:`relearn.core.srm.check`) compares the requests each arm served since
the last weight change with the weights the router reports; a mismatch holds
the experiment (condition ``SampleRatioMismatch``, a Warning Event) until the
ratio is sound again. With ``traffic.shadow`` Progressing begins with the
shadow stage (``status.stage`` Shadow): the challenger answers mirrored
requests and :func:`relearn.core.experiment.judge_shadow` decides on the
labelled pairs; passed, the live stage starts (``stage`` Live), or, shadow
only, promotion.

Called by :mod:`.daemon` for a turn whose phase machine says Advance
(:func:`relearn.core.experiment.turn_action`). The decisions themselves
(the gates, the next weight, which Event announces an end) are in
:mod:`relearn.core.experiment`; this module reads and writes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from relearn.adapters.prometheus import PrometheusError
from relearn.adapters.routers import RouterError, Split
from relearn.api.abexperiment import (
    MAX_MEASUREMENTS,
    ArmMeasurement,
    Arms,
    DecisionOutcome,
    GuardrailReading,
    Measurement,
    ShadowStatus,
    Statistic,
    TestMethod,
    Workloads,
)
from relearn.api.base import rfc3339
from relearn.api.conditions import get_condition
from relearn.api.names import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    AWAITING_APPROVAL,
    CHALLENGER_READY,
    INCONCLUSIVE,
    METRICS_AVAILABLE,
    REQUESTED_BY_ANNOTATION,
    SAMPLE_RATIO_MISMATCH,
)
from relearn.core import experiment as judging
from relearn.core import model_versions, srm, stats, workloads
from relearn.core.durations import parse_duration
from relearn.errors import APIError, DecisionError
from relearn.handlers.experiments.arms import ensure_challenger, not_serving, resolve
from relearn.handlers.experiments.context import FIX_POLL, PENDING_POLL, WAITS_FOR_CHANGE, Context, Wait
from relearn.handlers.experiments.measuring import measure, measure_pairs, requests_since
from relearn.handlers.experiments.traffic import restore_route
from relearn.handlers.outcome import Outcome
from relearn.metrics import (
    DECISIONS,
    EXPERIMENT_LIFT,
    EXPERIMENT_LIFT_LOWER,
    EXPERIMENT_LIFT_UPPER,
    EXPERIMENT_P_VALUE,
    EXPERIMENT_SAMPLE_RATIO_P_VALUE,
    EXPERIMENT_SAMPLES,
)

Measured = TypeVar("Measured")


def status_numbers(look: judging.Look, judgement: judging.Judgement, method: TestMethod) -> dict[str, object]:
    """``status.arms`` and ``status.statistic`` of one look."""
    v = judgement.verdict

    def arm(a: stats.Arm) -> ArmMeasurement:
        return ArmMeasurement(samples=a.samples, successes=a.successes, rate=a.rate if a.samples > 0 else None)

    statistic = Statistic(
        method=method,
        p_value=v.p_value,
        lift=judging.finite(v.lift),
        ci_lower=judging.finite(v.ci_lower),
        ci_upper=judging.finite(v.ci_upper),
        samples_needed=v.samples_needed,
        samples_needed_p90=v.samples_needed_upper,
        expected_time_to_decision=judgement.eta,
        expected_time_to_decision_p90=judgement.eta_upper,
    )
    arms = Arms(champion=arm(look.champion), challenger=arm(look.challenger))
    return {"arms": arms.to_wire(), "statistic": statistic.to_wire()}


def conclude(ctx: Context, outcome: Outcome, decision: DecisionOutcome, reason: str, message: str) -> None:
    """Record a decision that ends the experiment. Promotion goes to phase
    Promoting at once; the other ends keep their phase until
    :func:`relearn.handlers.experiments.ending.settle` has carried them out."""
    if decision == "Promote":
        outcome.status["phase"] = "Promoting"
    outcome.status["decision"] = ctx.decision(decision, reason, message)
    outcome.notify(decision, message)
    DECISIONS.labels("experiment", decision).inc()
    event_type, event_reason = judging.conclusion_event(decision)
    outcome.event(event_type, event_reason, message)


def _unmeasured(ctx: Context, outcome: Outcome, reason: str, message: str) -> None:
    outcome.condition(METRICS_AVAILABLE, "False", reason, message)
    outcome.condition(INCONCLUSIVE, "True", reason, f"no decision until data returns: {message}")
    previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
    if previous is None or previous.status != "False":
        outcome.event("Warning", "MetricsUnavailable", f"{message}; weights unchanged, no decision")


def _refused(ctx: Context, outcome: Outcome, refused: DecisionError) -> None:
    """The decision core refused what was measured: no decision."""
    message = f"no decision: {refused.message}; weights unchanged"
    previous = get_condition(ctx.status.conditions or [], INCONCLUSIVE)
    outcome.condition(INCONCLUSIVE, "True", refused.reason, message)
    if previous is None or previous.reason != refused.reason:
        outcome.event("Warning", refused.reason, message)


def _promote(ctx: Context, outcome: Outcome, reason: str, message: str, interval: float) -> float:
    """The statistics call for promotion: promote, or wait for approval."""
    gate = judging.promotion_gate(
        ctx.spec.promotion,
        challenger=ctx.spec.challenger,
        approval=ctx.annotations.get(APPROVE_ANNOTATION),
        requested_by=ctx.annotations.get(REQUESTED_BY_ANNOTATION),
    )
    if not gate.go:
        waiting = get_condition(ctx.status.conditions or [], AWAITING_APPROVAL)
        outcome.condition(AWAITING_APPROVAL, "True", "ChallengerBetter", f"approve with relearn promote: {message}")
        outcome.status["decision"] = ctx.decision("Continue", "AwaitingApproval", message)
        if waiting is None or waiting.status != "True":
            outcome.event("Normal", "AwaitingApproval", message)
        return ctx.next_look(interval)
    if ctx.spec.promotion == "Manual":
        outcome.condition(AWAITING_APPROVAL, "False", "Approved", "approved")
    conclude(ctx, outcome, "Promote", reason, f"{message} ({gate.how})")
    return 0.0


async def _look(ctx: Context, outcome: Outcome, reading: Awaitable[Measured]) -> Measured | None:
    """What ``reading`` measures (both arms, or a shadow stage's pairs), with
    MetricsAvailable; None when Prometheus gave no answer (recorded)."""
    try:
        look = await reading
    except PrometheusError as error:
        _unmeasured(ctx, outcome, f"Prometheus{error.reason}", error.message)
        return None
    except (APIError, ValueError) as error:
        _unmeasured(ctx, outcome, "QueryFailed", str(error))
        return None
    outcome.condition(METRICS_AVAILABLE, "True", "MetricsRead", "both arms measured")
    previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
    if previous is not None and previous.status == "False":
        outcome.event("Normal", "MetricsRestored", "Prometheus answers again")
    return look


def _judge(ctx: Context, outcome: Outcome, look: judging.Look) -> judging.Judgement | None:
    """The look judged, its numbers and Inconclusive recorded; None when the core refused the data."""
    p_before = (ctx.status.statistic.p_value if ctx.status.statistic else None) or 1.0
    if ctx.spec.analysis.method != "sequential":
        p_before = 1.0
    try:
        judgement = judging.judge(ctx.spec, look, p_before)
    except DecisionError as refused:
        _refused(ctx, outcome, refused)
        return None
    outcome.status.update(status_numbers(look, judgement, ctx.spec.analysis.method))
    if judgement.missing:
        outcome.condition(INCONCLUSIVE, "True", "NoData", f"no data for {', '.join(judgement.missing)}: promotion held")
    else:
        outcome.condition(INCONCLUSIVE, "False", "DataComplete", "every arm and guardrail has data")
    return judgement


def _export(ctx: Context, look: judging.Look, judgement: judging.Judgement) -> None:
    """The look's statistic as operator metrics, labelled by namespace and experiment."""
    v = judgement.verdict
    labels = (ctx.namespace, ctx.name)
    for gauge, value in (
        (EXPERIMENT_LIFT, v.lift),
        (EXPERIMENT_LIFT_LOWER, v.ci_lower),
        (EXPERIMENT_LIFT_UPPER, v.ci_upper),
        (EXPERIMENT_P_VALUE, v.p_value),
    ):
        if value is not None and judging.finite(value) is not None:
            gauge.labels(*labels).set(value)
    EXPERIMENT_SAMPLES.labels(*labels, "champion").set(look.champion.samples)
    EXPERIMENT_SAMPLES.labels(*labels, "challenger").set(look.challenger.samples)


def _measurement(
    ctx: Context, look: judging.Look, judgement: judging.Judgement, ratio: srm.SrmVerdict | None
) -> list[object]:
    """``status.measurements`` with this look appended, the oldest dropped past :data:`MAX_MEASUREMENTS`."""
    v = judgement.verdict
    entry = Measurement(
        time=ctx.now,
        champion_samples=look.champion.samples,
        challenger_samples=look.challenger.samples,
        champion_requests=ratio.champion_requests if ratio else None,
        challenger_requests=ratio.challenger_requests if ratio else None,
        lift=judging.finite(v.lift),
        ci_lower=judging.finite(v.ci_lower),
        ci_upper=judging.finite(v.ci_upper),
        p_value=v.p_value,
        srm_p_value=ratio.p_value if ratio else None,
        guardrails=[GuardrailReading(name=g.name, value=g.value) for g in look.guardrails] or None,
    )
    kept = list(ctx.status.measurements or [])[-(MAX_MEASUREMENTS - 1) :]
    return [m.to_wire() for m in [*kept, entry]]


async def _sample_ratio(ctx: Context, split: Split, outcome: Outcome) -> tuple[srm.SrmVerdict | None, bool]:
    """The sample-ratio guard for this look (None when it could not be read),
    its condition and Events, and whether the experiment holds: on a mismatch,
    and after one until a look finds the ratio sound (a look that cannot
    judge does not lift the hold)."""
    previous = get_condition(ctx.status.conditions or [], SAMPLE_RATIO_MISMATCH)
    was = previous is not None and previous.status == "True"

    def not_judged(message: str) -> None:
        if was:
            assert previous is not None
            held = f"{previous.message} (not judged again: {message})"
            outcome.condition(SAMPLE_RATIO_MISMATCH, "True", previous.reason or "RatioMismatch", held)
        else:
            outcome.condition(SAMPLE_RATIO_MISMATCH, "Unknown", "NotJudged", message)

    weights = outcome.status.get("weights") or {}
    # record_weights writes weightsSince (as now) on this turn when the reported split changed.
    since = ctx.now if "weightsSince" in outcome.status else ctx.status.weights_since
    try:
        counts = await requests_since(ctx, split, since)
        if counts is None:
            not_judged("no requests counted since the last weight change yet")
            return None, was
        ratio = srm.check(
            champion_requests=counts[0],
            challenger_requests=counts[1],
            champion_weight=int(weights.get("champion") or 0),
            challenger_weight=int(weights.get("challenger") or 0),
            p_value=ctx.spec.analysis.sample_ratio.p_value,
        )
    except (PrometheusError, APIError, ValueError, DecisionError) as error:
        message = error.message if isinstance(error, (PrometheusError, DecisionError)) else str(error)
        not_judged(f"requests not read: {message}")
        return None, was
    routing = ctx.spec.routing
    router = f"router {routing.provider} ({routing.target or ctx.spec.workload.name})"
    if ratio.mismatch:
        message = f"{router}: {ratio.message}; experiment held (no decision, weights unchanged)"
        outcome.condition(SAMPLE_RATIO_MISMATCH, "True", "RatioMismatch", message)
        if not was:
            outcome.event("Warning", "SampleRatioMismatch", message)
    elif ratio.result == "Sound":
        outcome.condition(SAMPLE_RATIO_MISMATCH, "False", "RatioSound", f"{router}: {ratio.message}")
        if was:
            outcome.event("Normal", "SampleRatioRestored", f"{router}: {ratio.message}; experiment resumes")
    else:
        not_judged(f"{router}: {ratio.message}")
    if ratio.p_value is not None:
        EXPERIMENT_SAMPLE_RATIO_P_VALUE.labels(ctx.namespace, ctx.name).set(ratio.p_value)
    return ratio, ratio.mismatch or (was and ratio.result == "NotJudged")


async def analyse(ctx: Context, split: Split, outcome: Outcome) -> float:
    """One Progressing look; returns seconds until the next one."""
    interval = parse_duration(ctx.spec.analysis.interval).total_seconds()
    look = await _look(ctx, outcome, measure(ctx, split))
    judgement = _judge(ctx, outcome, look) if look is not None else None
    current = await ctx.record_weights(split, outcome)
    if judgement is None or look is None:
        return ctx.next_look(interval)  # no decision until the data returns or is valid; weights unchanged
    ratio, hold = await _sample_ratio(ctx, split, outcome)
    _export(ctx, look, judgement)
    outcome.status["measurements"] = _measurement(ctx, look, judgement, ratio)
    if hold:
        why = ratio.message if ratio is not None else "the ratio could not be judged again"
        outcome.status["decision"] = ctx.decision(
            "Continue", "SampleRatioMismatch", f"held: {why} (look was: {judgement.message})"
        )
        return ctx.next_look(interval)  # a skewed split invalidates the comparison: nothing is decided on it
    if judgement.outcome == "Promote":
        return _promote(ctx, outcome, judgement.reason, judgement.message, interval)
    if judgement.outcome in ("Reject", "Inconclusive"):
        conclude(ctx, outcome, judgement.outcome, judgement.reason, judgement.message)
        return 0.0
    outcome.status["decision"] = ctx.decision("Continue", judgement.reason, judgement.message)
    wanted = judging.next_weight(ctx.spec.traffic, current)
    if wanted != current and not judgement.missing:
        await ctx.router().set_weights(split, wanted)
        await ctx.record_weights(split, outcome)
        outcome.event("Normal", "WeightChanged", f"challenger weight {current}% -> {wanted}%")
    return ctx.next_look(interval)


# -- the shadow stage ----------------------------------------------------------------


async def _go_live(ctx: Context, split: Split, outcome: Outcome, reason: str, message: str) -> float:
    """The shadow stage passed: the mirror off and the challenger's first live
    weight; the live test's window starts now (``startTime``)."""
    first = (ctx.spec.traffic.steps or [ctx.spec.traffic.weight])[0]
    router = ctx.router()
    await router.set_mirror(split, 0)
    await router.set_weights(split, first)
    await ctx.record_weights(split, outcome)
    record = ctx.status.shadow or ShadowStatus()
    shadow = outcome.status.get("shadow") or record.to_wire()
    outcome.status["shadow"] = {**shadow, "mirror": 0, "endTime": rfc3339(ctx.now)}
    outcome.status.update(stage="Live", startTime=rfc3339(ctx.now))
    outcome.status["decision"] = ctx.decision("Continue", reason, message)
    outcome.event("Normal", "ShadowPassed", f"{message}; challenger takes {first}% of live traffic")
    return parse_duration(ctx.spec.analysis.interval).total_seconds()


async def _mirror(ctx: Context, split: Split, outcome: Outcome, percent: int) -> int:
    """The mirror as the spec says, restored (with a Warning) when someone changed the route."""
    router = ctx.router()
    found = await router.get_mirror(split)
    if found != percent:
        await router.set_mirror(split, percent)
        outcome.event(
            "Warning",
            "RouteRestored",
            f"{ctx.spec.routing.provider} route {router.target}: mirror {found}% instead of {percent}%; restored",
        )
    return percent


async def analyse_shadow(ctx: Context, split: Split, outcome: Outcome) -> float:
    """One look of the shadow stage (:func:`relearn.core.experiment.judge_shadow`):
    the challenger answers mirrored requests; its paired counts decide."""
    interval = parse_duration(ctx.spec.analysis.interval).total_seconds()
    shadow = ctx.spec.traffic.shadow
    if shadow is None:  # removed from the spec while it ran: on to the live test
        return await _go_live(ctx, split, outcome, "ShadowRemoved", "traffic.shadow was removed from the spec")
    record = ctx.status.shadow or ShadowStatus()
    # written with the stage; missing only when status was edited by hand
    since = record.start_time or ctx.status.start_time or ctx.now
    record = record.model_copy(update={"start_time": since})
    mirrored = await _mirror(ctx, split, outcome, shadow.weight)
    await ctx.record_weights(split, outcome)
    look = await _look(ctx, outcome, measure_pairs(ctx, split, since))
    if look is None:
        outcome.status["shadow"] = record.model_copy(update={"mirror": mirrored}).to_wire()
        return ctx.next_look(interval)
    previous = (record.p_value if ctx.spec.analysis.method == "sequential" else None) or 1.0
    try:
        judgement = judging.judge_shadow(ctx.spec, look, previous)
    except DecisionError as refused:
        _refused(ctx, outcome, refused)
        return ctx.next_look(interval)
    outcome.condition(INCONCLUSIVE, "False", "DataComplete", "both versions' labelled pairs measured")
    verdict, pairs = judgement.verdict, look.pairs
    outcome.status["shadow"] = record.model_copy(
        update={
            "mirror": mirrored,
            "pairs": pairs.pairs,
            "champion_only": pairs.champion_only,
            "challenger_only": pairs.challenger_only,
            "lift": judging.finite(verdict.lift),
            "p_value": verdict.p_value,
            "outcome": judgement.outcome,
        }
    ).to_wire()
    if judgement.outcome == "Live":
        return await _go_live(ctx, split, outcome, judgement.reason, f"shadow stage passed: {judgement.message}")
    if judgement.outcome == "Promote":
        return _promote(ctx, outcome, judgement.reason, f"shadow only: {judgement.message}", interval)
    if judgement.outcome in ("Reject", "Inconclusive"):
        conclude(ctx, outcome, judgement.outcome, judgement.reason, f"shadow stage: {judgement.message}")
        return 0.0
    outcome.status["decision"] = ctx.decision("Continue", judgement.reason, f"shadow stage: {judgement.message}")
    return ctx.next_look(interval)


async def one_at_a_time(ctx: Context) -> None:
    """Wait while another experiment holds the model (:func:`relearn.core.experiment.blocking_experiment`)."""
    blocker = judging.blocking_experiment(
        name=ctx.name,
        created=ctx.body["metadata"].get("creationTimestamp"),
        model=ctx.spec.model,
        others=await ctx.experiments(),
    )
    if blocker is not None:
        raise Wait(
            "AnotherExperimentRunning",
            f"ABExperiment {blocker.name} is {blocker.phase} for model {ctx.spec.model}; this one starts when it ends",
        )


async def _start(
    ctx: Context, outcome: Outcome, split: Split, version: dict[str, object], first: int, words: str
) -> float:
    """Pending and the challenger ready: it takes its first weight, or, with
    a shadow stage, mirrored copies of requests."""
    shadow = ctx.spec.traffic.shadow
    if shadow is not None:
        return await _start_shadow(ctx, outcome, split, version, shadow.weight, words)
    await ctx.router().set_weights(split, first)
    await ctx.record_weights(split, outcome)
    outcome.status.update(phase="Progressing", startTime=rfc3339(ctx.now))
    await ctx.write_version(dict(version), model_versions.phase_change("Challenger", None, ctx.now))
    outcome.event(
        "Normal",
        "ExperimentStarted",
        f"challenger {split.challenger.version} ({split.challenger.deployment}, {words}) takes {first}% "
        f"of traffic; champion {split.champion.version}",
    )
    return ctx.next_look(parse_duration(ctx.spec.analysis.interval).total_seconds())


async def _start_shadow(
    ctx: Context, outcome: Outcome, split: Split, version: dict[str, object], percent: int, words: str
) -> float:
    """Pending and the challenger ready, with a shadow stage: no live traffic,
    ``percent`` of requests mirrored to it (its answers discarded)."""
    router = ctx.router()
    await router.set_weights(split, 0)
    await router.set_mirror(split, percent)
    await ctx.record_weights(split, outcome)
    outcome.status.update(phase="Progressing", stage="Shadow", startTime=rfc3339(ctx.now))
    outcome.status["shadow"] = ShadowStatus(start_time=ctx.now, mirror=percent).to_wire()
    await ctx.write_version(dict(version), model_versions.phase_change("Challenger", None, ctx.now))
    outcome.event(
        "Normal",
        "ShadowStarted",
        f"challenger {split.challenger.version} ({split.challenger.deployment}, {words}) answers mirrored "
        f"copies of {percent}% of requests, its answers discarded; champion {split.champion.version} "
        "answers every client",
    )
    return parse_duration(ctx.spec.analysis.interval).total_seconds()


async def advance_experiment(ctx: Context, outcome: Outcome) -> float:
    """Move a non-final experiment on; returns seconds until the next turn."""
    phase = ctx.status.phase or "Pending"
    abort = ctx.annotations.get(ABORT_ANNOTATION)
    if abort is not None:
        conclude(ctx, outcome, "Abort", "Aborted", f"aborted by annotation {ABORT_ANNOTATION}={abort!r}")
        return 0.0
    first = (ctx.spec.traffic.steps or [ctx.spec.traffic.weight])[0]
    try:
        if phase == "Pending":
            await one_at_a_time(ctx)
        # The route as found, before ensure_challenger re-adds a missing challenger at weight 0.
        found = await ctx.router().services() if phase == "Progressing" else None
        split, champion, version = await resolve(ctx)
        challenger = await ensure_challenger(ctx, split, champion, version, first)
    except (Wait, RouterError) as waiting:  # something a person has to fix: look again less often
        outcome.condition(CHALLENGER_READY, "False", waiting.reason, waiting.message)
        outcome.status.setdefault("phase", phase)
        ctx.waits_for_change = waiting.reason in WAITS_FOR_CHANGE
        ctx.waiting_on = waiting.reason
        return FIX_POLL
    outcome.status["workloads"] = Workloads(
        champion=split.champion.deployment, challenger=split.challenger.deployment
    ).to_wire()
    outcome.status["champion"] = split.champion.version
    ready, words = workloads.ready(challenger)
    if ready and (why := await not_serving(ctx, split.challenger)) is not None:
        ready, words = False, f"{words}; {why}"
    if not ready:
        outcome.condition(CHALLENGER_READY, "False", "NotReady", words)
        if phase == "Progressing":  # no requests to a pod that is not serving
            await ctx.router().set_weights(split, 0)
            await ctx.record_weights(split, outcome)
        outcome.status.setdefault("phase", phase)
        return PENDING_POLL
    outcome.condition(CHALLENGER_READY, "True", "Ready", words)
    if phase == "Pending":
        return await _start(ctx, outcome, split, version, first, words)
    await restore_route(ctx, split, outcome, found)
    if ctx.status.stage == "Shadow":
        return await analyse_shadow(ctx, split, outcome)
    return await analyse(ctx, split, outcome)
