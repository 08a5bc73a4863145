"""Traffic changes that outlive one turn: a backend leaving the route and
draining (``status.drain``), the challenger withdrawn, a route changed
behind the experiment's back restored, and the challenger's workload
disowned once it serves as champion.

Called by :mod:`.analysis` (restore), :mod:`.ending` (withdraw, disown),
:mod:`.rollback` (drain) and the delete handler in :mod:`.daemon`.
"""

from __future__ import annotations

from typing import Any

from relearn.adapters.kube import DEPLOYMENTS, SERVICES, Resource
from relearn.adapters.routers import Backend, Split
from relearn.api.abexperiment import DrainStatus
from relearn.core import switching, workloads
from relearn.core.durations import parse_duration
from relearn.handlers.experiments.context import Context
from relearn.handlers.outcome import Outcome


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
            outcome.event("Warning", "RouteNotApplied", f"{backend.deployment}: {verdict.message}")
        return None
    outcome.status["drain"] = DrainStatus(
        backend=backend.deployment, since=state.since, applied_time=state.applied
    ).to_wire()
    ctx.logger.info("%s left the route: %s", backend.deployment, verdict.message)
    return verdict.wait


async def remove(ctx: Context, backend: Backend) -> None:
    """A backend's workload deleted: its Deployment, and its Service where it has its own."""
    await ctx.kube.delete(DEPLOYMENTS, ctx.namespace, backend.deployment)
    if ctx.router().owns_services:
        await ctx.kube.delete(SERVICES, ctx.namespace, backend.service)


async def withdraw(ctx: Context, outcome: Outcome, split: Split) -> float | None:
    """All traffic back to the champion, then, once the data plane applied
    that route and the drain passed, the challenger's workload removed.
    Seconds to wait before the next look, None when done."""
    await ctx.router().finalize(split, "champion")
    wait = await drained(ctx, outcome, split.challenger)
    if wait is not None:
        return wait
    await remove(ctx, split.challenger)
    return None


async def ours(ctx: Context, split: Split) -> bool:
    """Whether this experiment created the challenger's workload (an
    experiment that never started must not undo another's)."""
    challenger = await ctx.kube.get(DEPLOYMENTS, ctx.namespace, split.challenger.deployment)
    owners = ((challenger or {}).get("metadata") or {}).get("ownerReferences") or ()
    if challenger is not None:
        return any(o.get("uid") == ctx.uid for o in owners)
    # Absent: ours if it ever took traffic (removed by an earlier, interrupted try).
    return ctx.status.start_time is not None


async def _disown_one(ctx: Context, resource: Resource, name: str) -> None:
    def disown(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta["ownerReferences"] = [o for o in meta.get("ownerReferences") or () if o.get("uid") != ctx.uid]
        if not meta["ownerReferences"]:
            meta.pop("ownerReferences")
        (meta.get("labels") or {}).pop(workloads.EXPERIMENT_LABEL, None)

    await ctx.kube.modify(resource, ctx.namespace, name, disown)


async def disown(ctx: Context, backend: Backend) -> None:
    """A promoted challenger serves now: its workload no longer belongs to
    the experiment (deleting the experiment must not delete it)."""
    await _disown_one(ctx, DEPLOYMENTS, backend.deployment)
    if ctx.router().owns_services:
        await _disown_one(ctx, SERVICES, backend.service)


async def restore_route(ctx: Context, split: Split, outcome: Outcome, found: dict[str, int] | None = None) -> None:
    """The route as this experiment set it: someone re-applied it from Git
    (without the challenger) or changed its weight by hand. Restored within
    one interval, with a Warning Event naming what was found."""
    expected = ctx.status.weights.challenger if ctx.status.weights else None
    router = ctx.router()
    if router.routes_by_ready_pods or expected is None:
        return
    served = found if found is not None else await router.services()
    actual = (await router.get_weights(split)).challenger
    drift = switching.route_drift(expected, split.challenger.service in served, actual)
    if drift is None:
        return
    await router.set_weights(split, expected)
    outcome.event("Warning", "RouteRestored", f"{ctx.spec.routing.provider} route {router.target}: {drift}; restored")
