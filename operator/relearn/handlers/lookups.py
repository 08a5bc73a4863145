"""What a check reads of other objects, at a cost that does not grow with
their number: the ModelVersions and the ABExperiments of one model, from
kopf indexes fed by the watches kopf keeps anyway, and the wake-ups that end
an experiment's wait when one of them changes.

- :func:`register` adds two indexes keyed by ``(namespace, spec.model)``
  (``model_versions_index``, ``experiments_index``), whose index functions
  also wake waiters (:class:`Wakeups`), and the event-loop-lag probe.
- :class:`Lookup` is what the DriftPolicy daemon, the ABExperiment daemon and
  the retraining code read through (the champion record by one read of its
  Lease; the rest from the index when kopf passed it, else a list of the
  namespace: the unit tests' fakes, a handler called outside
  kopf). A read returns copies, so no caller edits the index.
- :class:`Wakeups`: a Pending or blocked experiment waits for a change to
  its model's ModelVersions or experiments (a version appears, another
  experiment ends) instead of polling; it still looks again after a slow
  safety poll, in case an event was missed.

Nothing here decodes or lists on kopf's event loop: the index functions copy
what kopf already decoded, and the listing fallback runs in the adapter's
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import kopf

from relearn.adapters.kube import ABEXPERIMENTS, LEASES, KubeClient
from relearn.api import GROUP, VERSION
from relearn.core import model_versions
from relearn.metrics import EVENT_LOOP_LAG

__all__ = ["SAFETY_POLL", "Lookup", "Wakeups", "register", "turn_slot", "wait_for_change"]

VERSIONS_INDEX = "model_versions_index"
EXPERIMENTS_INDEX = "experiments_index"
SAFETY_POLL = 60.0  # seconds: a waiting experiment looks again this often even without an event
# Turns of all daemons at once: a thousand daemons starting together queue for
# a slot instead of all waiting on Prometheus and the API at once (and timing out).
CONCURRENT_TURNS = 32
LAG_PROBE = 0.5  # seconds between two probes of the event loop's lag

Key = tuple[str, str]


def _plain(body: kopf.Body) -> dict[str, Any]:
    """What a lookup returns of an object: kopf's decoded dicts, shallow-copied."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status or {}),
    }


def _indexer(kind: str) -> Any:
    """The index function of ``kind``: the object under (namespace, model), and
    the wake-ups its change calls for (kopf calls it for every event of the
    watch it keeps anyway, silently: no handler of its own per event)."""

    def index(
        *, namespace: str | None, name: str, spec: kopf.Spec, body: kopf.Body, memo: Any, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        model = str(spec.get("model", ""))
        wakeups: Wakeups | None = memo.get("wakeups") if memo is not None else None
        if wakeups is not None:
            gone = body.metadata.get("deletionTimestamp") is not None
            wakeups.observe(kind, namespace or "", model, name, body.status.get("phase"), gone=gone)
        return {(namespace or "", model): _plain(body)}

    index.__name__ = f"index_{kind.lower()}s_by_model"
    return index


def _values(index: Mapping[Key, Iterable[dict[str, Any]]], key: Key) -> list[dict[str, Any]]:
    # Deep copies of the few objects of one model: callers may edit what they read.
    return [copy.deepcopy(value) for value in index.get(key, ())]


class Lookup:
    """The ModelVersions and ABExperiments of one model."""

    def __init__(
        self,
        kube: KubeClient,
        versions: Mapping[Key, Iterable[dict[str, Any]]] | None = None,
        experiments: Mapping[Key, Iterable[dict[str, Any]]] | None = None,
    ) -> None:
        self.kube = kube
        self._versions = versions
        self._experiments = experiments

    @classmethod
    def of(cls, kube: KubeClient, kwargs: Mapping[str, Any]) -> Lookup:
        """From a handler's kwargs: kopf passes the indexes by their ids."""
        return cls(kube, kwargs.get(VERSIONS_INDEX), kwargs.get(EXPERIMENTS_INDEX))

    @property
    def indexed(self) -> bool:
        return self._versions is not None and self._experiments is not None

    async def versions(self, namespace: str, model: str) -> list[dict[str, Any]]:
        if self._versions is None:
            return await self.kube.list_model_versions(namespace, model)
        return _values(self._versions, (namespace, model))

    async def experiments(self, namespace: str, model: str) -> list[dict[str, Any]]:
        if self._experiments is None:
            listed = await self.kube.list_objects(ABEXPERIMENTS, namespace)
            return [e for e in listed if (e.get("spec") or {}).get("model") == model]
        return _values(self._experiments, (namespace, model))

    async def holder(self, namespace: str, model: str) -> str | None:
        """The version ``model``'s champion record names (None: no record
        yet): one read of one object, whatever the number of models."""
        record = await self.kube.get(LEASES, namespace, model_versions.record_name(model))
        return model_versions.holder_of(record)

    async def champion(self, namespace: str, model: str) -> dict[str, Any] | None:
        """The model's champion ModelVersion (:func:`relearn.core.model_versions.champion`)."""
        versions = await self.versions(namespace, model)
        found = model_versions.champion(versions, await self.holder(namespace, model))
        return dict(found) if found is not None else None


class Wakeups:
    """One waiter per experiment, woken when its model's objects change."""

    def __init__(self) -> None:
        self._waiters: dict[Key, dict[str, asyncio.Event]] = {}
        self._phases: dict[tuple[str, str, str], str | None] = {}

    def arm(self, namespace: str, model: str, name: str) -> asyncio.Event:
        """The event that the next relevant change sets; taken *before* a turn
        reads, so a change during the turn is not missed."""
        event = asyncio.Event()
        self._waiters.setdefault((namespace, model), {})[name] = event
        return event

    def disarm(self, namespace: str, model: str, name: str) -> None:
        waiters = self._waiters.get((namespace, model), {})
        waiters.pop(name, None)
        if not waiters:
            self._waiters.pop((namespace, model), None)

    def observe(self, kind: str, namespace: str, model: str, name: str, phase: str | None, gone: bool) -> bool:
        """An object of ``kind`` was seen (or deleted): wake the model's other
        waiters when it is new, gone or in another phase. True when it woke them."""
        key = (kind, namespace, name)
        seen = key in self._phases
        changed = gone or not seen or self._phases[key] != phase
        if gone:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        if not changed:
            return False
        for waiter, event in self._waiters.get((namespace, model), {}).items():
            if kind != "ABExperiment" or waiter != name:  # an experiment's own writes never wake it
                event.set()
        return True


async def wait_for_change(stopped: kopf.DaemonStopped, woken: asyncio.Event, timeout: float) -> None:
    """Until ``woken`` is set, the daemon stops, or ``timeout`` seconds pass."""
    waiting = asyncio.ensure_future(woken.wait())
    stopping = asyncio.ensure_future(stopped.wait(timeout))
    try:
        await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, stopping):
            task.cancel()
        for task in (waiting, stopping):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _probe_lag(interval: float) -> None:
    """How late the event loop runs a timer: the time every handler waits for it."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + interval
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - expected))


@contextlib.asynccontextmanager
async def turn_slot(memo: Mapping[str, Any]) -> AsyncIterator[None]:
    """One of :data:`CONCURRENT_TURNS` daemon turns at a time (none without the operator's start-up)."""
    slots: asyncio.Semaphore | None = memo.get("turn_slots")
    if slots is None:
        yield
        return
    async with slots:
        yield


async def start(memo: kopf.Memo, **_: Any) -> None:
    memo["wakeups"] = Wakeups()
    memo["turn_slots"] = asyncio.Semaphore(CONCURRENT_TURNS)
    memo["lag_probe"] = asyncio.create_task(_probe_lag(LAG_PROBE), name="relearn-event-loop-lag")


async def stop(memo: kopf.Memo, **_: Any) -> None:
    probe: asyncio.Task[None] | None = memo.get("lag_probe")
    if probe is not None:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry, id="lookups")(start)
    kopf.on.cleanup(registry=registry, id="lookups")(stop)
    kopf.index(GROUP, VERSION, "modelversions", id=VERSIONS_INDEX, registry=registry)(_indexer("ModelVersion"))
    kopf.index(GROUP, VERSION, "abexperiments", id=EXPERIMENTS_INDEX, registry=registry)(_indexer("ABExperiment"))
