"""Which ModelVersion is which, and how their phases change: pure functions
over ModelVersion objects as read from the API.

Called by the experiment and rollback handlers (:mod:`relearn.handlers.experiments`),
by retraining (:mod:`relearn.handlers.retraining`) and by the CLI
(:mod:`relearn.commands`): the champion lookup, finding a version, the status
change that moves a version to a phase with one history entry, and the plan of
a hand-over (the champion changes hands: who becomes what, in which order).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relearn.api.base import rfc3339
from relearn.api.modelversion import HistoryAction, HistoryEntry, ModelVersionPhase

HISTORY_LIMIT = 50  # the CRD's maxItems of status.history
# Phases of a version that failed its own checks: no rollback or promotion returns to it.
FAILED_PHASES: tuple[ModelVersionPhase, ...] = ("RolledBack", "Rejected")

StatusChange = Callable[[dict[str, Any]], dict[str, Any]]


def phase_of(version: Mapping[str, Any] | None) -> str | None:
    """A ModelVersion's phase as written (None: none yet, or no version)."""
    return ((version or {}).get("status") or {}).get("phase")


def find(versions: Sequence[Mapping[str, Any]], version: str) -> Mapping[str, Any] | None:
    """The ModelVersion of ``version`` among a model's versions."""
    return next((v for v in versions if (v.get("spec") or {}).get("version") == version), None)


def champion(versions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The model's champion: the version the operator made Champion, else the
    one declared champion from Git (fresh installs). During a hand-over the
    incoming champion is written before the outgoing one leaves: of two
    Champions, the one that became champion last (``championSince``) is it."""
    chosen = [v for v in versions if phase_of(v) == "Champion"]
    if not chosen:
        chosen = [v for v in versions if (v.get("spec") or {}).get("declaredChampion")]
    if not chosen:
        return None
    return max(chosen, key=lambda v: str((v.get("status") or {}).get("championSince") or ""))


@dataclass(frozen=True)
class History:
    """Why a version changes phase: its history entry, less the time."""

    action: HistoryAction
    reason: str
    message: str
    triggered_by: str
    from_version: str | None = None
    to_version: str | None = None

    def entry(self, now: datetime.datetime) -> dict[str, object]:
        return HistoryEntry(
            time=now,
            action=self.action,
            reason=self.reason,
            message=self.message[:1024],
            triggered_by=self.triggered_by,
            from_version=self.from_version or None,
            to_version=self.to_version or None,
        ).to_wire() | {"time": rfc3339(now)}


def with_entry(status: Mapping[str, Any], entry: Mapping[str, object]) -> list[Any]:
    """A status' history with ``entry`` appended, bounded (newest last)."""
    return [*(status.get("history") or []), dict(entry)][-HISTORY_LIMIT:]


def phase_change(phase: ModelVersionPhase, history: History | None, now: datetime.datetime) -> StatusChange:
    """A ModelVersion status change to ``phase``, with one history entry when
    ``history`` says why; nothing changes when it is in ``phase`` already, so
    a change redone after a restart is written once."""

    def change(status: dict[str, Any]) -> dict[str, Any]:
        if status.get("phase") == phase:
            return {}
        if history is None:
            return {"phase": phase}
        patch: dict[str, Any] = {"phase": phase, "history": with_entry(status, history.entry(now))}
        if phase == "Champion":
            patch["championSince"] = rfc3339(now)
        return patch

    return change


@dataclass(frozen=True)
class VersionMove:
    """One step of a plan: ``version`` goes to ``phase`` for ``history``."""

    version: str
    phase: ModelVersionPhase
    history: History


def hand_over(
    *,
    outgoing: str,
    incoming: str,
    outgoing_phase: ModelVersionPhase,
    outgoing_action: HistoryAction,
    outgoing_reason: str,
    outgoing_message: str,
    incoming_reason: str,
    incoming_message: str,
    triggered_by: str,
) -> tuple[VersionMove, VersionMove]:
    """The champion changes hands: ``incoming`` becomes Champion first, then
    ``outgoing`` leaves with its phase; both history entries name what
    triggered it. In this order a turn cut short in between leaves two
    champions for a moment (:func:`champion` picks the newer; the next turn
    finishes), never none."""
    versions = {"from_version": outgoing, "to_version": incoming}
    return (
        VersionMove(
            incoming, "Champion", History("Promoted", incoming_reason, incoming_message, triggered_by, **versions)
        ),
        VersionMove(
            outgoing,
            outgoing_phase,
            History(outgoing_action, outgoing_reason, outgoing_message, triggered_by, **versions),
        ),
    )


def cut_short(versions: Sequence[Mapping[str, Any]], plan: Sequence[VersionMove]) -> bool:
    """A hand-over begun and not finished: its first move is written (the
    incoming version Champion) and a later one is not (the outgoing version
    still Champion, say). The model then has two Champions: a turn finishes
    the plan before it waits for anything else."""
    if not plan or phase_of(find(versions, plan[0].version)) != plan[0].phase:
        return False
    return any(phase_of(find(versions, move.version)) not in (None, move.phase) for move in plan[1:])
