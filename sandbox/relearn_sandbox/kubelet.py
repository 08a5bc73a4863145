"""The sandbox's node: one work queue over the store's changes that runs the
controllers (:mod:`.controllers`: Deployments and Jobs get pods, Services get
Endpoints and EndpointSlices) and then, as a kubelet, the pods on this
machine (:mod:`.runtime`: their containers as local processes).

Built and started by :class:`relearn_sandbox.cluster.Sandbox`; it runs on the
API server's event loop and writes through :class:`Store`. The API server
reads pods' logs through :meth:`Kubelet.logs`; the chaos faults kill pods'
processes with :meth:`Kubelet.kill`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from relearn_sandbox.controllers.deployments import DeploymentController
from relearn_sandbox.controllers.endpoints import EndpointsController
from relearn_sandbox.controllers.jobs import JobController
from relearn_sandbox.controllers.objects import delete_pod, pod_phase
from relearn_sandbox.errors import ApiError
from relearn_sandbox.podlogs import LogOptions
from relearn_sandbox.runtime import ProcessRuntime
from relearn_sandbox.store import Change, Store

logger = logging.getLogger(__name__)

# Controllers first, so pods they create are started in the same pass.
ORDER = ("deployment", "job", "pod", "service")


class Kubelet:
    def __init__(
        self,
        store: Store,
        workdir: Path,
        *,
        images: Mapping[str, list[str]] | None = None,
        on_pods_changed: Callable[[list[dict[str, Any]]], None] | None = None,
        max_backoff: float = 30.0,
        job_backoff: float = 1.0,
    ) -> None:
        self.store = store
        self.on_pods_changed = on_pods_changed
        self.runtime = ProcessRuntime(store, workdir, images=images, max_backoff=max_backoff)
        self.deployments = DeploymentController(store)
        self.jobs = JobController(store, job_backoff=job_backoff, later=self._sync_job_later)
        self.endpoints = EndpointsController(store)
        self._syncs: dict[str, Callable[[str, str], Awaitable[None]]] = {
            "deployment": self.deployments.sync,
            "job": self.jobs.sync,
            "pod": self._sync_pod,
            "service": self.endpoints.sync,
        }
        self._dirty: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self.runtime.start()
        self.store.subscribe(self._on_change)
        for kind, plural, group in (
            ("deployment", "deployments", "apps"),
            ("job", "jobs", "batch"),
            ("pod", "pods", ""),
            ("service", "services", ""),
        ):
            for obj in self.store.objects(group, plural):
                self._dirty.put_nowait((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self._worker = asyncio.create_task(self._work(), name="sandbox-kubelet")

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for timer in list(self._timers):
            timer.cancel()
        await self.runtime.close()

    def _on_change(self, change: Change) -> None:
        group, plural = change.key
        meta = change.obj["metadata"]
        namespace = meta.get("namespace", "")
        if (group, plural) == ("", "pods"):
            self._dirty.put_nowait(("pod", namespace, meta["name"]))
            for ref in meta.get("ownerReferences") or ():
                kind = {"Deployment": "deployment", "Job": "job"}.get(ref.get("kind", ""))
                if kind:
                    self._dirty.put_nowait((kind, namespace, ref["name"]))
            for service in self.store.objects("", "services", namespace):
                self._dirty.put_nowait(("service", namespace, service["metadata"]["name"]))
        elif (group, plural) == ("apps", "deployments"):
            self._dirty.put_nowait(("deployment", namespace, meta["name"]))
        elif (group, plural) == ("batch", "jobs"):
            self._dirty.put_nowait(("job", namespace, meta["name"]))
        elif (group, plural) == ("", "services"):
            self._dirty.put_nowait(("service", namespace, meta["name"]))

    def _later(self, delay: float, item: tuple[str, str, str]) -> None:
        async def fire() -> None:
            await asyncio.sleep(delay)
            self._dirty.put_nowait(item)

        task = asyncio.create_task(fire())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _sync_job_later(self, delay: float, namespace: str, name: str) -> None:
        self._later(delay, ("job", namespace, name))

    async def _work(self) -> None:
        while True:
            batch = {await self._dirty.get()}
            while not self._dirty.empty():
                batch.add(self._dirty.get_nowait())
            for kind, namespace, name in sorted(batch, key=lambda i: ORDER.index(i[0])):
                try:
                    await self._syncs[kind](namespace, name)
                except ApiError as error:
                    if error.code not in (404, 409):
                        logger.warning("sandbox %s %s/%s: %s", kind, namespace, name, error.message)
                    if error.code == 409:
                        self._dirty.put_nowait((kind, namespace, name))
                except Exception:
                    logger.exception("sandbox %s %s/%s failed", kind, namespace, name)
            if self.on_pods_changed and any(kind == "pod" for kind, _, _ in batch):
                self.on_pods_changed(self.store.objects("", "pods"))

    # -- pods -> the runtime --------------------------------------------------

    async def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.store.try_get("", "pods", namespace, name)
        running = self.runtime.pod(namespace, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            if running is not None:
                self.runtime.forget(namespace, name)
                # As a real cluster: the pod leaves its Services' endpoints
                # before its process is told to stop, not after.
                for service in self.store.objects("", "services", namespace):
                    await self.endpoints.sync(namespace, service["metadata"]["name"])
                await self.runtime.stop_pod(
                    running, grace=float((pod or {}).get("spec", {}).get("terminationGracePeriodSeconds", 5))
                )
                if pod is not None and pod["metadata"].get("deletionTimestamp"):
                    # Graceful deletion done: the kubelet releases the pod.
                    delete_pod(self.store, namespace, name)
            return
        if running is not None and running.uid != pod["metadata"]["uid"]:
            self.runtime.forget(namespace, name)
            await self.runtime.stop_pod(running, grace=1.0)
            running = None
        if (
            running is None
            and pod_phase(pod) in ("Pending", "Running")
            and not pod.get("status", {}).get("containerStatuses")
        ):
            await self.runtime.start_pod(pod)

    def kill(self, namespace: str, name: str) -> bool:
        """A fault: SIGKILL the process groups of a pod's running containers."""
        return self.runtime.kill(namespace, name)

    def logs(self, namespace: str, name: str, options: LogOptions) -> AsyncIterator[bytes]:
        """A container's output for ``kubectl logs`` (:meth:`.runtime.ProcessRuntime.logs`)."""
        return self.runtime.logs(namespace, name, options)
