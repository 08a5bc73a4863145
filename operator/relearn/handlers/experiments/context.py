"""The context of one ABExperiment turn: the experiment as read, its parsed
spec and status, ``now``, the clients, and the few reads and records every
phase shares (the model's versions, the weights as the router reports them,
a decision as status writes it).

Built by :mod:`.daemon` for each turn (and by the delete handler); every
phase module (:mod:`.arms`, :mod:`.measuring`, :mod:`.traffic`,
:mod:`.analysis`, :mod:`.ending`, :mod:`.rollback`) takes it. Imports point
down only: this module imports no other module of the package.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from relearn.adapters.kube import LEASES, KubeClient
from relearn.adapters.routers import Router, Split, router_for
from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus, ArmWeights, Decision, DecisionOutcome
from relearn.api.base import rfc3339
from relearn.core import model_versions
from relearn.core.consent import Allowlist
from relearn.core.model_versions import StatusChange
from relearn.errors import APIUnreachable, KubernetesError, NotFound, RelearnError
from relearn.handlers.guard import Slots
from relearn.handlers.lookups import Lookup
from relearn.handlers.outcome import Outcome
from relearn.metrics import EXPERIMENT_WEIGHT

PLURAL = "abexperiments"
PENDING_POLL = 2.0  # seconds between looks while the challenger starts
FIX_POLL = 10.0  # seconds before the first look again while the spec names something missing (then backed off)
# Waits that a change to the model's ModelVersions or experiments ends: the
# daemon waits for that change (relearn.handlers.lookups.Wakeups), with a slow
# safety poll, instead of polling every FIX_POLL.
WAITS_FOR_CHANGE = frozenset({"AnotherExperimentRunning", "NoChampion", "ModelVersionNotFound", "UnverifiedChallenger"})


HAND_OVER_RETRY = 20.0  # seconds a hand-over's completing write is retried through an API outage


async def _retrying(write: Callable[[], Awaitable[None]]) -> None:
    """``write``, retried with backoff (0.25 s doubling to 2 s) while the API is
    unavailable, for up to :data:`HAND_OVER_RETRY` seconds; any other error,
    or that time spent, raises as it is (the next turn redoes the plan)."""
    deadline = time.monotonic() + HAND_OVER_RETRY
    delay = 0.25
    while True:
        try:
            await write()
            return
        except KubernetesError as error:
            unavailable = isinstance(error, APIUnreachable) or (error.status or 0) >= 500
            if not unavailable or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 2.0)


class Wait(RelearnError):
    """Not ready to go on; ``reason``/``message`` go to the ChallengerReady condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


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
    lookup: Lookup | None = None  # the model's versions and experiments (kopf's indexes); None: list them
    slots: Slots | None = None  # the looks' schedule (spread, period kept); None: a full interval after each
    waits_for_change: bool = False  # set by a turn whose Wait a change to the model's objects ends
    waiting_on: str | None = None  # the reason of a turn's Wait for something to be fixed (backed off)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def uid(self) -> str | None:
        uid = self.body["metadata"].get("uid")
        return str(uid) if uid is not None else None

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("annotations") or {})

    def router(self) -> Router:
        routing = self.spec.routing
        target = routing.target or self.spec.workload.name
        return router_for(routing.provider, self.kube, self.namespace, target, routing.stickiness)

    async def versions(self, fresh: bool = False) -> list[dict[str, Any]]:
        """The ModelVersions of the experiment's model: from the index, or
        ``fresh`` from the API (before a hand-over writes their phases)."""
        if fresh or self.lookup is None:
            return await self.kube.list_model_versions(self.namespace, self.spec.model)
        return await self.lookup.versions(self.namespace, self.spec.model)

    async def experiments(self) -> list[dict[str, Any]]:
        """The ABExperiments of the experiment's model (this one included)."""
        return await (self.lookup or Lookup(self.kube)).experiments(self.namespace, self.spec.model)

    def next_look(self, interval: float) -> float:
        """Seconds until the next look, ``interval`` after the slot of this one."""
        return self.slots.wait(interval) if self.slots is not None else interval

    async def record_weights(self, split: Split, outcome: Outcome) -> int:
        """The weights as the router reports them, into status and metrics; the challenger's."""
        weights = await self.router().get_weights(split)
        reported = ArmWeights(champion=weights.champion, challenger=weights.challenger)
        outcome.status["weights"] = reported.to_wire()
        if self.status.weights != reported or self.status.weights_since is None:
            # The sample-ratio guard counts requests from the last change of the reported split.
            outcome.status["weightsSince"] = rfc3339(self.now)
        EXPERIMENT_WEIGHT.labels(self.namespace, self.name).set(weights.challenger)
        return weights.challenger

    def decision(self, outcome: DecisionOutcome, reason: str, message: str) -> dict[str, object]:
        """``status.decision`` as written now."""
        return Decision(outcome=outcome, reason=reason, message=message[:4096], time=self.now).to_wire()

    async def write_version(self, version: dict[str, Any], change: StatusChange) -> None:
        """One ModelVersion status change (:mod:`relearn.core.model_versions`)."""
        await self.kube.update_status("modelversions", self.namespace, version["metadata"]["name"], change)

    async def champion_holder(self) -> str | None:
        """The version the model's champion record names (None: no record yet)."""
        return await (self.lookup or Lookup(self.kube)).holder(self.namespace, self.spec.model)

    async def hand_record(self, move: model_versions.VersionMove, versions: list[dict[str, Any]]) -> None:
        """Move the model's champion record to ``move``'s version (the first
        step of a hand-over): a compare-and-swap from the outgoing champion,
        created when the model has none yet; :class:`Wait` when it names
        another version of ``versions`` (the champion changed hands meanwhile)."""
        history = move.history
        name = model_versions.record_name(self.spec.model)
        change = model_versions.record_change(
            outgoing=history.from_version or "",
            incoming=move.version,
            now=self.now,
            triggered_by=history.triggered_by,
            existing={str((v.get("spec") or {}).get("version")) for v in versions},
        )
        try:
            try:
                await self.kube.modify(LEASES, self.namespace, name, change)
            except NotFound:
                body = model_versions.record_body(self.spec.model, move.version, self.now, history.triggered_by)
                if not await self.kube.create(LEASES, self.namespace, body):  # created meanwhile: swap it
                    await self.kube.modify(LEASES, self.namespace, name, change)
        except model_versions.ChampionMoved as error:
            raise Wait(error.reason, error.message) from None

    async def move_versions(
        self, versions: list[dict[str, Any]], moves: tuple[model_versions.VersionMove, ...]
    ) -> None:
        """Carry out a plan of :func:`relearn.core.model_versions.hand_over`, in
        its order: the champion record first (the one write that changes which
        version is champion), then the phases, which follow it. Once the
        record moved, a phase write is retried here for up to
        :data:`HAND_OVER_RETRY` seconds while the API is unavailable (an API
        restart, a 503), rather than a whole turn later."""
        if not moves:
            return
        await self.hand_record(moves[0], versions)
        for move in moves:
            found = model_versions.find(versions, move.version)
            if found is None:
                continue
            change = model_versions.phase_change(move.phase, move.history, self.now)
            await _retrying(functools.partial(self.write_version, dict(found), change))
