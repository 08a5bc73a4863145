"""The kopf glue of ABExperiments: one daemon per experiment, whose turns
go where the phase machine (:func:`relearn.core.experiment.turn_action`)
says, and the delete handler that restores routing.

The top of the package: it imports the phase modules, none imports it.
Registered by :func:`relearn.handlers.build_registry` through
:func:`relearn.handlers.experiments.register`.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from relearn.adapters.kube import KubeClient
from relearn.adapters.routers import RouterError
from relearn.api import GROUP, VERSION
from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus
from relearn.core import experiment as judging
from relearn.core import schedule
from relearn.core.consent import Allowlist
from relearn.handlers.experiments import rollback
from relearn.handlers.experiments.analysis import advance_experiment
from relearn.handlers.experiments.arms import resolve
from relearn.handlers.experiments.context import PENDING_POLL, PLURAL, Context, Wait
from relearn.handlers.experiments.ending import settle, until_done
from relearn.handlers.experiments.notify import write
from relearn.handlers.experiments.traffic import ours, withdraw
from relearn.handlers.guard import Guard, Slots, keep_turning
from relearn.handlers.lookups import SAFETY_POLL, Lookup, Wakeups, turn_slot, wait_for_change
from relearn.handlers.outcome import Outcome
from relearn.metrics import HANDLER_SECONDS


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": dict(body.metadata)}


async def _step(ctx: Context, outcome: Outcome, action: judging.TurnAction) -> float | None:
    """One turn's work as the phase machine says; seconds until the next (None: no more)."""
    if action == "Watch":
        return await rollback.step(ctx, outcome)  # health checks and rollback
    if action == "Settle":
        return await settle(ctx, outcome) or 0.0
    return await advance_experiment(ctx, outcome)


async def run(
    *,
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The daemon of one ABExperiment: its phases, then the health checks
    after promotion, guarded so that no error stops it. A turn that waits
    for another experiment or a ModelVersion sleeps until its model's
    objects change (or :data:`~relearn.handlers.lookups.SAFETY_POLL`)."""
    kube: KubeClient = memo["kube"]
    assert namespace is not None  # ABExperiment is namespaced
    guard = Guard(kube, PLURAL, namespace, name, body, logger)
    status = ABExperimentStatus.model_validate(dict(body.status or {}))
    lookup = Lookup.of(kube, kwargs)
    slots = Slots(str(body.metadata.get("uid") or name))
    wakeups: Wakeups | None = memo.get("wakeups")
    woken: asyncio.Event | None = None  # armed before a turn's reads, so no change is missed
    waits_for_change = False
    missing: tuple[str | None, int] = (None, 0)  # what the last looks found missing, and how many in a row

    async def pause(wait: float) -> None:
        if woken is not None and waits_for_change:
            await wait_for_change(stopped, woken, SAFETY_POLL)
        else:
            await stopped.wait(wait)

    async def turn() -> float | None:
        async with turn_slot(memo):
            return await step()

    async def step() -> float | None:
        nonlocal status, woken, waits_for_change, missing
        waits_for_change = False
        try:
            spec = ABExperimentSpec.model_validate(dict(body.spec))
        except ValidationError:
            return 30.0  # the spec handler reports it
        if wakeups is not None:
            woken = wakeups.arm(namespace, spec.model, name)
        decision = status.decision.outcome if status.decision else None
        action = judging.turn_action(status.phase, decision)
        if action == "Done":
            # The end phase is written only after its actions.
            # Redoing them now could undo what later experiments did.
            return None
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
            lookup=lookup,
            slots=slots,
        )
        outcome = Outcome()
        wait: float | None = PENDING_POLL
        with HANDLER_SECONDS.labels("ABExperiment", "experiment").time():
            try:
                wait = await _step(ctx, outcome, action)
                guard.settle(outcome, status.conditions)
                status = await write(ctx, outcome)
                guard.finished()
            except (RouterError, Wait) as error:
                logger.warning("experiment turn not finished, retrying: %s", error.reason)
                wait = PENDING_POLL
        waits_for_change = ctx.waits_for_change
        if ctx.waiting_on is None or waits_for_change or wait is None:
            missing = (None, 0)
            return wait
        # Something a person has to fix (a Deployment or Service that does not exist): looked at less and less often.
        missing = (ctx.waiting_on, missing[1] + 1 if missing[0] == ctx.waiting_on else 0)
        return schedule.backoff(wait, SAFETY_POLL, missing[1])

    try:
        await keep_turning(stopped, guard, turn, pause)
    finally:
        if wakeups is not None:
            wakeups.disarm(namespace, str(body.spec.get("model", "")), name)


async def restore(*, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Deleting a running experiment aborts it: all traffic back to the champion.
    A decision under way is finished first (a promotion keeps its new
    champion); an ended experiment leaves routing as it is now."""
    status = ABExperimentStatus.model_validate(dict(body.status or {}))
    decision = status.decision.outcome if status.decision else None
    action = judging.turn_action(status.phase, decision)
    if action in ("Watch", "Done"):
        return
    try:
        spec = ABExperimentSpec.model_validate(dict(body.spec))
    except ValidationError:
        return
    ctx = Context(memo["kube"], _snapshot(body), spec, status, datetime.datetime.now(datetime.UTC), logger, None)
    if action == "Settle":
        await until_done(ctx, settle)
        logger.info("experiment deleted during its %s: carried out", decision)
        return
    try:
        split, _, _ = await resolve(ctx)
    except (Wait, RouterError) as error:
        logger.info("nothing to restore: %s", error)
        return
    if await ours(ctx, split):
        await until_done(ctx, lambda c, o: withdraw(c, o, split))
        logger.info("experiment deleted: all traffic back to champion %s", split.champion.version)


def register(registry: kopf.OperatorRegistry, when: Callable[..., bool] | None = None) -> None:
    kopf.daemon(GROUP, VERSION, PLURAL, id="experiment", registry=registry, cancellation_timeout=10, when=when)(run)
    kopf.on.delete(GROUP, VERSION, PLURAL, id="restore-routing", registry=registry, backoff=2.0, when=when)(restore)
