"""Who wakes a waiting experiment (relearn.handlers.lookups.Wakeups), and the
lookups' reads: copies of the model's objects only."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from relearn.handlers.lookups import Lookup, Wakeups, wait_for_change


def test_a_waiting_experiment_is_woken_when_a_version_of_its_model_appears() -> None:
    wakeups = Wakeups()
    woken = wakeups.arm("ns", "m", "m-1.1.0")
    wakeups.observe("ModelVersion", "ns", "other-model", "other-1.0.0", None, gone=False)
    assert not woken.is_set()
    wakeups.observe("ModelVersion", "ns", "m", "m-1.1.0", None, gone=False)
    assert woken.is_set()


def test_a_status_write_that_keeps_the_phase_and_its_own_writes_do_not_wake_it() -> None:
    wakeups = Wakeups()
    wakeups.observe("ABExperiment", "ns", "m", "first", "Progressing", gone=False)
    wakeups.observe("ABExperiment", "ns", "m", "second", None, gone=False)
    woken = wakeups.arm("ns", "m", "second")
    wakeups.observe("ABExperiment", "ns", "m", "first", "Progressing", gone=False)  # a look written
    wakeups.observe("ABExperiment", "ns", "m", "second", "Pending", gone=False)  # its own phase
    assert not woken.is_set()
    wakeups.observe("ABExperiment", "ns", "m", "first", "Rejected", gone=False)  # the other one ended
    assert woken.is_set()


def test_another_experiment_deleted_wakes_the_waiter_and_a_disarmed_one_is_left_alone() -> None:
    wakeups = Wakeups()
    wakeups.observe("ABExperiment", "ns", "m", "first", "Progressing", gone=False)
    woken = wakeups.arm("ns", "m", "second")
    left = wakeups.arm("ns", "m", "third")
    wakeups.disarm("ns", "m", "third")
    wakeups.observe("ABExperiment", "ns", "m", "first", "Progressing", gone=True)
    assert woken.is_set()
    assert not left.is_set()


class Stopped:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def test_a_wait_for_change_ends_at_the_change_not_at_the_safety_poll() -> None:
    woken = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_soon(woken.set)
    started = loop.time()
    await asyncio.wait_for(wait_for_change(Stopped(), woken, timeout=60.0), 5)  # type: ignore[arg-type]
    assert loop.time() - started < 5


async def test_the_index_lookup_returns_copies_of_the_models_objects_only() -> None:
    version = {"metadata": {"name": "m-1.0.0"}, "spec": {"model": "m"}, "status": {"phase": "Champion"}}
    index: dict[tuple[str, str], list[dict[str, Any]]] = {("ns", "m"): [version]}
    lookup = Lookup(None, versions=index, experiments={})  # type: ignore[arg-type]
    assert lookup.indexed
    (read,) = await lookup.versions("ns", "m")
    read["status"]["phase"] = "Retired"
    assert version["status"]["phase"] == "Champion"
    assert await lookup.versions("other", "m") == []
    assert await lookup.experiments("ns", "m") == []


def test_the_index_is_keyed_by_namespace_and_model_and_a_new_version_wakes_its_models_waiters() -> None:
    from relearn.handlers.lookups import _indexer

    wakeups = Wakeups()
    woken = wakeups.arm("ns", "m", "experiment")
    body = kopf.Body({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"model": "m"}, "status": {}})
    index = _indexer("ModelVersion")
    ((key, value),) = index(namespace="ns", name="a", spec=body.spec, body=body, memo={"wakeups": wakeups}).items()
    assert key == ("ns", "m")
    assert value["metadata"]["name"] == "a"
    assert woken.is_set()
