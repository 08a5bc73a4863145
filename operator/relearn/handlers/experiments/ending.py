"""The end phases of an ABExperiment: carrying out a decision taken.

- **Promoting**: 100% to the challenger; challenger ModelVersion Champion,
  previous one Archived (both with history, in the order of
  :func:`relearn.core.model_versions.hand_over`); the challenger's workload
  is disowned (it serves now) and the previous champion's stays warm for a
  rollback. Then **Promoted**.
- **Rejected / Inconclusive / Aborted**: 100% back to the champion, the
  challenger's workload removed once the data plane applied that route and
  ``rollback.drain`` passed, its ModelVersion Rejected (Registered again
  when Inconclusive).

Idempotent and redone after a restart until the end phase is written.
Called by :mod:`.daemon` (a turn whose phase machine says Settle, and the
delete handler through :func:`until_done`).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from relearn.adapters.routers import RouterError, Split
from relearn.api.abexperiment import ABExperimentStatus, ExperimentPhase
from relearn.api.base import rfc3339
from relearn.core import experiment as judging
from relearn.core import model_versions
from relearn.handlers.experiments.arms import not_serving, resolve
from relearn.handlers.experiments.context import Context, Wait
from relearn.handlers.experiments.traffic import disown, ours, withdraw
from relearn.handlers.outcome import Outcome


async def settle(ctx: Context, outcome: Outcome) -> float | None:
    """Carry out a decision (idempotent: redone after a restart until the end
    phase is written); seconds until the next look while it drains."""
    decision = ctx.status.decision
    phase = judging.end_phase(ctx.status.phase, decision.outcome if decision else None)
    if phase is None:
        return None  # nothing left to do here
    try:
        split, _, challenger = await resolve(ctx)
    except (Wait, RouterError) as error:
        if phase == "Promoting":
            raise
        outcome.status["phase"] = phase  # nothing was started that needs undoing
        ctx.logger.info("experiment ended before it started: %s", error)
        return None
    if phase == "Promoting":
        await promote(ctx, outcome, split)
        return None
    return await end_without_promotion(ctx, outcome, split, challenger, phase)


async def promote(ctx: Context, outcome: Outcome, split: Split) -> None:
    """100% to the challenger, its workload disowned, the champion handed over; then Promoted."""
    message = (ctx.status.decision.message if ctx.status.decision else None) or ""
    plan = model_versions.hand_over(
        outgoing=split.champion.version,
        incoming=split.challenger.version,
        outgoing_phase="Archived",
        outgoing_action="Demoted",
        outgoing_reason="ChallengerPromoted",
        outgoing_message=f"replaced by {split.challenger.version}: {message}",
        incoming_reason="ChallengerBetter",
        incoming_message=message,
        triggered_by=f"abexperiment/{ctx.name}",
    )
    versions = await ctx.versions(fresh=True)
    # Cut short: traffic moved before the record or a phase was written; finish first.
    if not model_versions.cut_short(versions, plan, await ctx.champion_holder()):
        why = await not_serving(ctx, split.challenger)
        if why is not None:
            raise Wait("NotServing", f"promotion waits: {why}")
    await ctx.router().set_weights(split, 100)  # the champion's route stays, at 0: warm for a rollback
    await disown(ctx, split.challenger)
    await ctx.move_versions(versions, plan)
    weights = await ctx.record_weights(split, outcome)
    outcome.status.update(phase="Promoted", promotionTime=rfc3339(ctx.now))
    outcome.event("Normal", "Promoted", f"{split.challenger.version} is champion ({weights}% of traffic): {message}")


async def end_without_promotion(
    ctx: Context, outcome: Outcome, split: Split, challenger: dict[str, Any], phase: ExperimentPhase
) -> float | None:
    """Rejected, Inconclusive or Aborted: the challenger withdrawn (once drained), then the end phase and
    its ModelVersion Rejected (Registered again when Inconclusive)."""
    if not await ours(ctx, split):
        outcome.status["phase"] = phase
        return None  # it never ran (aborted while another experiment held the model): nothing to undo
    wait = await withdraw(ctx, outcome, split)
    await ctx.record_weights(split, outcome)
    if wait is not None:
        return wait  # the end phase is written once the challenger is gone
    outcome.status["phase"] = phase
    if phase == "Inconclusive":
        await ctx.write_version(challenger, model_versions.phase_change("Registered", None, ctx.now))
        return None
    decision = ctx.status.decision
    history = model_versions.History(
        "Rejected",
        (decision.reason if decision else None) or str(phase),
        (decision.message if decision else None) or "",
        f"abexperiment/{ctx.name}",
        from_version=split.champion.version,
        to_version=split.challenger.version,
    )
    await ctx.write_version(challenger, model_versions.phase_change("Rejected", history, ctx.now))
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
