"""Which ModelVersion is which, and how their phases change: pure functions
over ModelVersion objects as read from the API.

Called by the experiment and rollback handlers (:mod:`relearn.handlers.experiments`),
by retraining (:mod:`relearn.handlers.retraining`) and by the CLI
(:mod:`relearn.commands`): the champion lookup, finding a version, the status
change that moves a version to a phase with one history entry, the plan of
a hand-over (the champion changes hands: who becomes what, in which order),
and the model's champion record.

**The champion record** is one ``coordination.k8s.io/v1`` Lease per model
(:func:`record_name`), whose ``holderIdentity`` is the champion's version.
It is the one source of truth of which version is champion: a hand-over
moves it first, in one write that is a compare-and-swap on its
resourceVersion (from the outgoing champion, or from nobody, to the incoming
one; :func:`record_change`), and only then writes the two ModelVersions'
phases, which follow it. Two objects' phases cannot change in one write, so
between those two writes ``kubectl get modelversions`` shows two Champions
for a moment; the record never names two, nor none once it exists, and every
reader takes the champion from it (:func:`champion`). A model whose
champion was declared from Git and never handed over has no record yet: its
Champion phase is the truth until the first hand-over.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relearn.api.base import rfc3339
from relearn.api.modelversion import HistoryAction, HistoryEntry, ModelVersionPhase
from relearn.core.labels import label_value
from relearn.errors import RelearnError

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


def champion(versions: Sequence[Mapping[str, Any]], holder: str | None = None) -> Mapping[str, Any] | None:
    """The model's champion: the version its champion record names
    (``holder``, :func:`holder_of`) when that version exists; else (no record
    yet, or its version deleted) the version the operator made Champion, else
    the one declared champion from Git (fresh installs). Of two Champion
    phases (a hand-over between its writes), the one that became champion
    last (``championSince``) is it."""
    if holder is not None:
        recorded = find(versions, holder)
        if recorded is not None:
            return recorded
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
    """The champion changes hands: the champion record moves to ``incoming``
    (the caller writes it first, :func:`record_change`), then ``incoming``
    becomes Champion, then ``outgoing`` leaves with its phase; both history
    entries name what triggered it. A turn cut short in between leaves the
    phases behind the record for a moment (the next turn finishes); the
    record names one champion throughout."""
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


def cut_short(versions: Sequence[Mapping[str, Any]], plan: Sequence[VersionMove], holder: str | None = None) -> bool:
    """A hand-over begun and not finished: the champion record names the
    incoming version (``holder``), or its Champion phase is written, and a
    later move is not (the outgoing version still Champion, say). A turn
    finishes the plan before it waits for anything else."""
    if not plan:
        return False
    begun = holder == plan[0].version or phase_of(find(versions, plan[0].version)) == plan[0].phase
    return begun and any(phase_of(find(versions, move.version)) not in (None, move.phase) for move in plan)


# -- the champion record ------------------------------------------------------------------

RECORD_PREFIX = "relearn-champion-"
RECORD_LABEL = ("app.kubernetes.io/component", "champion-record")  # every record carries it
RECORD_SELECTOR = "=".join(RECORD_LABEL)
MODEL_ANNOTATION = "relearn.dev/model"  # the record's model, in full


class ChampionMoved(RelearnError):
    """The champion record names neither side of a hand-over: another hand-over
    (a later promotion, a rollback) moved the champion meanwhile."""

    reason = "ChampionMoved"


def record_name(model: str) -> str:
    """The name of ``model``'s champion record (a valid object name for every
    spec-valid model name: lower-cased, shortened with a hash where needed)."""
    return RECORD_PREFIX + label_value(model).lower().replace("_", "-").replace(".", "-").strip("-")


def holder_of(record: Mapping[str, Any] | None) -> str | None:
    """The champion's version as ``record`` names it (None: no record)."""
    value = ((record or {}).get("spec") or {}).get("holderIdentity")
    return str(value) if value else None


def holders(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Model -> the version its record names, of a list of champion records."""
    found: dict[str, str] = {}
    for record in records:
        model = ((record.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION)
        holder = holder_of(record)
        if model and holder:
            found[str(model)] = holder
    return found


def record_body(model: str, version: str, now: datetime.datetime, triggered_by: str) -> dict[str, Any]:
    """A new champion record of ``model`` naming ``version``."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": record_name(model),
            "labels": {
                "app.kubernetes.io/managed-by": "relearn",
                RECORD_LABEL[0]: RECORD_LABEL[1],
                "relearn.dev/model": label_value(model),
            },
            "annotations": {MODEL_ANNOTATION: model, "relearn.dev/triggered-by": triggered_by},
        },
        "spec": {"holderIdentity": version, "acquireTime": _micro(now), "leaseTransitions": 0},
    }


def record_change(
    *,
    outgoing: str,
    incoming: str,
    now: datetime.datetime,
    triggered_by: str,
    existing: Collection[str] | None = None,
) -> Callable[[dict[str, Any]], None]:
    """The edit of a champion record that hands it from ``outgoing`` (or from
    nobody, or from a version not among ``existing``: its ModelVersion was
    deleted) to ``incoming``: nothing when it names ``incoming`` already (a
    hand-over redone after a restart), :class:`ChampionMoved` when it names
    another version. Written with the read resourceVersion as a precondition,
    so of two hand-overs racing from the same champion one wins and the other
    reads again and meets :class:`ChampionMoved`."""

    def change(record: dict[str, Any]) -> None:
        spec = record.setdefault("spec", {})
        current = spec.get("holderIdentity") or None
        if current == incoming:
            return
        if existing is not None and current not in existing:
            current = None  # the version it names is gone: the phases said who was champion
        if current not in (None, outgoing):
            raise ChampionMoved(
                f"the champion record names {current}, not {outgoing}: the champion changed hands meanwhile"
            )
        spec.update(
            holderIdentity=incoming,
            acquireTime=_micro(now),
            leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1,
        )
        record.setdefault("metadata", {}).setdefault("annotations", {})["relearn.dev/triggered-by"] = triggered_by

    return change


def _micro(now: datetime.datetime) -> str:
    """A Lease's MicroTime."""
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
