"""The guard around every daemon's turn: the DriftPolicy daemon (drift checks
and the retraining it drives) and the ABExperiment daemon (analysis,
promotion, health checks and rollback) run each turn through
:meth:`Guard.turn`, so that whatever a turn raises, the daemon keeps running
and status says why the turn did not finish.

- The Kubernetes API unreachable (:class:`relearn.errors.APIUnreachable`:
  connection refused or reset, a timeout, a 50x while it restarts): the turn
  is retried after :data:`API_RETRY` seconds, and the ``Stalled`` condition
  says the API was unreachable (written as soon as a write goes through).
- Any other error (an API error, a bug, a setting that fails at run time):
  ``Stalled=True`` with reason ``TurnFailed`` (or ``KubernetesAPIError``,
  ``InvalidSetting``...) and the error, a Warning Event the first time, and
  the turn is retried after :data:`FAILED_RETRY` seconds.
- The first turn that finishes again sets ``Stalled=False`` (reason
  ``Recovered``), saying what had failed.

Decisions refused by the decision core (:class:`relearn.errors.DecisionError`)
are handled where the look is taken (a condition with the error's reason, an
Event, no decision); one that escapes a look ends up here, as a failed turn
with the error's reason.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from relearn.adapters.kube import KubeClient
from relearn.api.base import duration_seconds
from relearn.api.conditions import Condition
from relearn.api.names import STALLED
from relearn.core.schedule import next_due
from relearn.errors import APIUnreachable, DecisionError, KubernetesError
from relearn.handlers.outcome import Outcome, apply, post_event

__all__ = ["STALLED", "Failure", "Guard", "Slots", "classify", "interval_seconds", "keep_turning"]
MIN_INTERVAL = 1.0  # seconds: no daemon turns faster, whatever an old object says
MAX_WAIT = 366 * 86400.0  # seconds: the longest wait a duration may ask for
API_RETRY = 1.0  # seconds: an API restart of a few seconds pauses a daemon about as long
FAILED_RETRY = 10.0  # seconds: a failing turn is not retried in a hot loop
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$")


@dataclass(frozen=True)
class Failure:
    """Why a turn did not finish, and when to try again."""

    reason: str
    message: str
    retry: float
    unreachable: bool = False


def classify(error: Exception) -> Failure:
    """The condition reason, message and retry delay for what a turn raised."""
    if isinstance(error, APIUnreachable):
        return Failure("APIUnreachable", str(error), API_RETRY, unreachable=True)
    if isinstance(error, KubernetesError):
        # Only status and reason (adapters.kube): the body of an API error may quote the request.
        return Failure("KubernetesAPIError", f"the Kubernetes API answered {error.status} {error.http_reason}", 2.0)
    if isinstance(error, DecisionError):
        return Failure(error.reason, error.message[:1000], FAILED_RETRY)
    if isinstance(error, (OverflowError, ValueError)):
        return Failure(
            "InvalidSetting", f"a setting fails at run time: {type(error).__name__}: {error}"[:1000], FAILED_RETRY
        )
    return Failure("TurnFailed", f"{type(error).__name__}: {error}"[:1000], FAILED_RETRY)


class Guard:
    """One daemon's guard: records failed turns and their recovery on one object."""

    def __init__(
        self, kube: KubeClient, plural: str, namespace: str, name: str, body: Mapping[str, Any], logger: kopf.Logger
    ) -> None:
        self.kube = kube
        self.plural = plural
        self.namespace = namespace
        self.name = name
        self.body = body
        self.logger = logger
        self.failure: Failure | None = None
        self.failed_since: float | None = None
        self._recorded: Failure | None = None  # the failure Stalled says (written)

    def settle(self, outcome: Outcome, conditions: Iterable[Condition] | None) -> None:
        """Before a turn's status write: ``Stalled=False`` when a failure was
        recorded (by this process, or before a restart)."""
        stalled = next((c for c in conditions or () if c.type == STALLED), None)
        if self.failure is None and (stalled is None or stalled.status != "True"):
            return
        what = self.failure.message if self.failure is not None else (stalled.message if stalled else "")
        took = f" after {time.monotonic() - self.failed_since:.1f}s" if self.failed_since is not None else ""
        message = f"turns complete again{took}" + (f"; it had failed: {what}" if what else "")
        outcome.condition(STALLED, "False", "Recovered", message[:1000])

    def finished(self) -> None:
        """After a turn's status write went through."""
        self.failure = None
        self.failed_since = None
        self._recorded = None

    async def failed(self, error: Exception) -> float:
        """Record a failed turn; the seconds to wait before the next try."""
        failure = classify(error)
        new = self.failure is None or self.failure.reason != failure.reason
        if self.failed_since is None:
            self.failed_since = time.monotonic()
        self.failure = failure
        if failure.unreachable:
            self.logger.warning("turn not finished, retrying in %.0fs: %s", failure.retry, failure.message)
        elif isinstance(error, DecisionError | KubernetesError):
            self.logger.warning("turn not finished (%s): %s", failure.reason, failure.message)
        else:
            self.logger.exception("turn failed (%s), the daemon goes on: %s", failure.reason, failure.message)
        if self._recorded == failure:
            return failure.retry
        try:
            # Best effort: while the API is down this fails too, and the next try writes it.
            if new and not failure.unreachable:
                await post_event(self.kube, self.body, "Warning", failure.reason, failure.message, self.logger)
            stalled = Outcome()
            stalled.condition(STALLED, "True", failure.reason, failure.message)
            now = datetime.datetime.now(datetime.UTC)
            generation = (self.body.get("metadata") or {}).get("generation")
            await self.kube.update_status(self.plural, self.namespace, self.name, apply(stalled, generation, now))
            self._recorded = failure
        except KubernetesError as unwritten:
            self.logger.debug("Stalled not written: %s", unwritten)
        return failure.retry


def interval_seconds(text: str) -> float:
    """A spec interval as the seconds to wait, within [1 s, a year]; an
    interval that cannot be read waits :data:`FAILED_RETRY` (the spec check
    reports it)."""
    if not DURATION.fullmatch(text):
        return FAILED_RETRY
    return min(max(duration_seconds(text), MIN_INTERVAL), MAX_WAIT)  # seconds as a float: no overflow


class Slots:
    """A daemon's check schedule on the monotonic clock: spread by ``key``
    (the object's uid) over the interval, the period kept however long a
    check took (:func:`relearn.core.schedule.next_due`)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.due: float | None = None  # the slot of the check that just ran; None before the first

    def wait(self, interval: float) -> float:
        """Seconds from now until the next check's slot."""
        now = time.monotonic()
        self.due = next_due(self.key, interval, now, self.due)
        return self.due - now


async def keep_turning(
    stopped: kopf.DaemonStopped,
    guard: Guard,
    turn: Callable[[], Awaitable[float | None]],
    pause: Callable[[float], Awaitable[object]] | None = None,
) -> None:
    """Run ``turn`` until the daemon stops or a turn returns None (nothing
    more to do); a turn returns the seconds until the next one, which
    ``pause`` waits (by default ``stopped.wait``; the experiment daemon's
    also ends when a change it waits for arrives)."""
    while not stopped:
        try:
            wait = await turn()
        except Exception as error:  # the daemon must outlive any turn
            wait = await guard.failed(error)
        if wait is None:
            return
        await (pause or stopped.wait)(wait)
