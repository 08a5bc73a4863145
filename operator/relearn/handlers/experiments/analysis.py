"""The running phases of an ABExperiment, Pending and Progressing: start the
challenger (one experiment per model at a time), then every interval
measure both arms, let :func:`relearn.core.experiment.judge` decide, and
record the look (numbers in status, conditions, Events).

Called by :mod:`.daemon` for a turn whose phase machine says Advance
(:func:`relearn.core.experiment.turn_action`). The decisions themselves
(the gates, the next weight, which Event announces an end) are in
:mod:`relearn.core.experiment`; this module reads and writes.
"""

from __future__ import annotations

from relearn.adapters.prometheus import PrometheusError
from relearn.adapters.routers import RouterError, Split
from relearn.api.abexperiment import ArmMeasurement, Arms, DecisionOutcome, Statistic, TestMethod, Workloads
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
)
from relearn.core import experiment as judging
from relearn.core import model_versions, stats, workloads
from relearn.core.durations import parse_duration
from relearn.errors import APIError, DecisionError
from relearn.handlers.experiments.arms import ensure_challenger, not_serving, resolve
from relearn.handlers.experiments.context import FIX_POLL, PENDING_POLL, WAITS_FOR_CHANGE, Context, Wait
from relearn.handlers.experiments.measuring import measure
from relearn.handlers.experiments.traffic import restore_route
from relearn.handlers.outcome import Outcome
from relearn.metrics import DECISIONS


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
    outcome.notification = (decision, message)
    DECISIONS.labels("experiment", decision).inc()
    event_type, event_reason = judging.conclusion_event(decision)
    outcome.events.append((event_type, event_reason, message))


def _unmeasured(ctx: Context, outcome: Outcome, reason: str, message: str) -> None:
    outcome.conditions.append((METRICS_AVAILABLE, "False", reason, message))
    outcome.conditions.append((INCONCLUSIVE, "True", reason, f"no decision until data returns: {message}"))
    previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
    if previous is None or previous.status != "False":
        outcome.events.append(("Warning", "MetricsUnavailable", f"{message}; weights unchanged, no decision"))


def _refused(ctx: Context, outcome: Outcome, refused: DecisionError) -> None:
    """The decision core refused what was measured: no decision."""
    message = f"no decision: {refused.message}; weights unchanged"
    previous = get_condition(ctx.status.conditions or [], INCONCLUSIVE)
    outcome.conditions.append((INCONCLUSIVE, "True", refused.reason, message))
    if previous is None or previous.reason != refused.reason:
        outcome.events.append(("Warning", refused.reason, message))


def _promote(ctx: Context, outcome: Outcome, judgement: judging.Judgement, interval: float) -> float:
    """The statistics call for promotion: promote, or wait for approval."""
    gate = judging.promotion_gate(
        ctx.spec.promotion,
        challenger=ctx.spec.challenger,
        approval=ctx.annotations.get(APPROVE_ANNOTATION),
        requested_by=ctx.annotations.get(REQUESTED_BY_ANNOTATION),
    )
    if not gate.go:
        waiting = get_condition(ctx.status.conditions or [], AWAITING_APPROVAL)
        outcome.conditions.append(
            (AWAITING_APPROVAL, "True", "ChallengerBetter", f"approve with relearn promote: {judgement.message}")
        )
        outcome.status["decision"] = ctx.decision("Continue", "AwaitingApproval", judgement.message)
        if waiting is None or waiting.status != "True":
            outcome.events.append(("Normal", "AwaitingApproval", judgement.message))
        return ctx.next_look(interval)
    if ctx.spec.promotion == "Manual":
        outcome.conditions.append((AWAITING_APPROVAL, "False", "Approved", "approved"))
    conclude(ctx, outcome, "Promote", judgement.reason, f"{judgement.message} ({gate.how})")
    return 0.0


async def _look(ctx: Context, split: Split, outcome: Outcome) -> judging.Look | None:
    """Both arms measured, with MetricsAvailable; None when Prometheus gave no answer (recorded)."""
    try:
        look = await measure(ctx, split)
    except PrometheusError as error:
        _unmeasured(ctx, outcome, f"Prometheus{error.reason}", error.message)
        return None
    except (APIError, ValueError) as error:
        _unmeasured(ctx, outcome, "QueryFailed", str(error))
        return None
    outcome.conditions.append((METRICS_AVAILABLE, "True", "MetricsRead", "both arms measured"))
    previous = get_condition(ctx.status.conditions or [], METRICS_AVAILABLE)
    if previous is not None and previous.status == "False":
        outcome.events.append(("Normal", "MetricsRestored", "Prometheus answers again"))
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
        outcome.conditions.append(
            (INCONCLUSIVE, "True", "NoData", f"no data for {', '.join(judgement.missing)}: promotion held")
        )
    else:
        outcome.conditions.append((INCONCLUSIVE, "False", "DataComplete", "every arm and guardrail has data"))
    return judgement


async def analyse(ctx: Context, split: Split, outcome: Outcome) -> float:
    """One Progressing look; returns seconds until the next one."""
    interval = parse_duration(ctx.spec.analysis.interval).total_seconds()
    look = await _look(ctx, split, outcome)
    judgement = _judge(ctx, outcome, look) if look is not None else None
    current = await ctx.record_weights(split, outcome)
    if judgement is None:
        return ctx.next_look(interval)  # no decision until the data returns or is valid; weights unchanged
    if judgement.outcome == "Promote":
        return _promote(ctx, outcome, judgement, interval)
    if judgement.outcome in ("Reject", "Inconclusive"):
        conclude(ctx, outcome, judgement.outcome, judgement.reason, judgement.message)
        return 0.0
    outcome.status["decision"] = ctx.decision("Continue", judgement.reason, judgement.message)
    wanted = judging.next_weight(ctx.spec.traffic, current)
    if wanted != current and not judgement.missing:
        await ctx.router().set_weights(split, wanted)
        await ctx.record_weights(split, outcome)
        outcome.events.append(("Normal", "WeightChanged", f"challenger weight {current}% -> {wanted}%"))
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
    """Pending and the challenger ready: it takes its first weight."""
    await ctx.router().set_weights(split, first)
    await ctx.record_weights(split, outcome)
    outcome.status.update(phase="Progressing", startTime=rfc3339(ctx.now))
    await ctx.write_version(dict(version), model_versions.phase_change("Challenger", None, ctx.now))
    outcome.events.append(
        (
            "Normal",
            "ExperimentStarted",
            f"challenger {split.challenger.version} ({split.challenger.deployment}, {words}) takes {first}% "
            f"of traffic; champion {split.champion.version}",
        )
    )
    return ctx.next_look(parse_duration(ctx.spec.analysis.interval).total_seconds())


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
        outcome.conditions.append((CHALLENGER_READY, "False", waiting.reason, waiting.message))
        outcome.status.setdefault("phase", phase)
        ctx.waits_for_change = waiting.reason in WAITS_FOR_CHANGE
        return FIX_POLL
    outcome.status["workloads"] = Workloads(
        champion=split.champion.deployment, challenger=split.challenger.deployment
    ).to_wire()
    outcome.status["champion"] = split.champion.version
    ready, words = workloads.ready(challenger)
    if ready and (why := await not_serving(ctx, split.challenger)) is not None:
        ready, words = False, f"{words}; {why}"
    if not ready:
        outcome.conditions.append((CHALLENGER_READY, "False", "NotReady", words))
        if phase == "Progressing":  # no requests to a pod that is not serving
            await ctx.router().set_weights(split, 0)
            await ctx.record_weights(split, outcome)
        outcome.status.setdefault("phase", phase)
        return PENDING_POLL
    outcome.conditions.append((CHALLENGER_READY, "True", "Ready", words))
    if phase == "Pending":
        return await _start(ctx, outcome, split, version, first, words)
    await restore_route(ctx, split, outcome, found)
    return await analyse(ctx, split, outcome)
