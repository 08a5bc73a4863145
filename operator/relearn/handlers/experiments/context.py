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

import datetime
from dataclasses import dataclass, field
from typing import Any

import kopf

from relearn.adapters.kube import KubeClient
from relearn.adapters.routers import Router, Split, router_for
from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus, ArmWeights, Decision, DecisionOutcome
from relearn.core import model_versions
from relearn.core.consent import Allowlist
from relearn.core.model_versions import StatusChange
from relearn.errors import RelearnError
from relearn.handlers.guard import Slots
from relearn.handlers.lookups import Lookup
from relearn.handlers.outcome import Outcome
from relearn.metrics import EXPERIMENT_WEIGHT

PLURAL = "abexperiments"
PENDING_POLL = 2.0  # seconds between looks while the challenger starts
FIX_POLL = 10.0  # seconds between looks while the spec names something missing
# Waits that a change to the model's ModelVersions or experiments ends: the
# daemon waits for that change (relearn.handlers.lookups.Wakeups), with a slow
# safety poll, instead of polling every FIX_POLL.
WAITS_FOR_CHANGE = frozenset({"AnotherExperimentRunning", "NoChampion", "ModelVersionNotFound", "UnverifiedChallenger"})


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
        return router_for(routing.provider, self.kube, self.namespace, routing.target or self.spec.workload.name)

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
        outcome.status["weights"] = ArmWeights(champion=weights.champion, challenger=weights.challenger).to_wire()
        EXPERIMENT_WEIGHT.labels(self.namespace, self.name).set(weights.challenger)
        return weights.challenger

    def decision(self, outcome: DecisionOutcome, reason: str, message: str) -> dict[str, object]:
        """``status.decision`` as written now."""
        return Decision(outcome=outcome, reason=reason, message=message[:4096], time=self.now).to_wire()

    async def write_version(self, version: dict[str, Any], change: StatusChange) -> None:
        """One ModelVersion status change (:mod:`relearn.core.model_versions`)."""
        await self.kube.update_status("modelversions", self.namespace, version["metadata"]["name"], change)

    async def move_versions(
        self, versions: list[dict[str, Any]], moves: tuple[model_versions.VersionMove, ...]
    ) -> None:
        """Carry out a plan of :func:`relearn.core.model_versions.hand_over`, in its order."""
        for move in moves:
            found = model_versions.find(versions, move.version)
            if found is not None:
                await self.write_version(dict(found), model_versions.phase_change(move.phase, move.history, self.now))
