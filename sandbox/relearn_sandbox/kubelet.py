"""The sandbox's process kubelet and the controllers it needs: Deployments and
Jobs get pods, pods run as local processes, Services get Endpoints and
EndpointSlices.

- A pod's containers run from their ``command``/``args``/``env`` (``$(VAR)``
  expanded as the kubelet does). The image is recorded, not pulled; a
  container without ``command`` takes its entrypoint from the sandbox's image
  table (:attr:`Kubelet.images`), else it fails with ``ImageNotEmulated``.
- Each ``containerPort`` is mapped to a free loopback port, given to the
  process as ``RELEARN_SANDBOX_PORT_<containerPort>`` (and ``PORT`` for the
  first one) and recorded in the pod's annotation ``sandbox.relearn.dev/ports``.
- Readiness comes from the HTTP ``readinessProbe`` (or from running, when
  there is none); restarts back off 1 s, 2 s, 4 s ... up to 30 s.
- A container's output comes through a pipe into ``output.log``, with the
  time each line arrived (:mod:`.podlogs`: ``kubectl logs --timestamps``,
  ``--since``); a restart moves it to ``previous.log`` (``--previous``).
- ``terminationMessagePath`` is a file per container, named to the process
  by ``RELEARN_TERMINATION_MESSAGE_PATH``; its content (4 KiB at most)
  becomes ``state.terminated.message``.
- Deployments: pods labelled with ``pod-template-hash`` and owned by the
  Deployment (no ReplicaSets); a template change replaces pods as new ones
  become ready (``Recreate``: at once). Jobs: one pod at a time until a
  success, a failure past ``backoffLimit``, or ``activeDeadlineSeconds``.
- Indexed Jobs (``completionMode: Indexed``): a pod per completion index
  not yet succeeded (``parallelism`` at once), each with the index in its
  annotation and label ``batch.kubernetes.io/job-completion-index`` and in
  ``JOB_COMPLETION_INDEX``, and the hostname ``<job>-<index>``; complete
  when every index has succeeded, failed past ``backoffLimit`` (failed pods
  of all indexes). With ``spec.subdomain`` (a headless Service) every pod is
  on loopback, as a cluster's DNS would give them addresses: an env value
  naming a pod there (``<host>.<subdomain>``, with or without
  ``.<namespace>.svc``) is 127.0.0.1, the pods of one subdomain share one
  loopback port per declared ``containerPort``, and an env value that is such
  a port number is that loopback port (so ``MASTER_ADDR``/``MASTER_PORT`` of a
  torchrun rendezvous reach worker 0).
- ``torchrun`` (torch's launcher) and ``python`` as a container's command run with this
  Python (:data:`PROGRAMS`: what the trainer image has on its PATH).

The Deployment, Job and Endpoints controllers are :mod:`.controllers`; this
module runs them on its work queue. It runs on the API server's event loop
and writes through :class:`Store`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from relearn_sandbox.controllers.deployments import DeploymentController
from relearn_sandbox.controllers.endpoints import EndpointsController
from relearn_sandbox.controllers.jobs import JobController
from relearn_sandbox.controllers.objects import delete_pod, patch_status, pod_phase
from relearn_sandbox.errors import ApiError
from relearn_sandbox.podlogs import LogOptions, TimedLog, select
from relearn_sandbox.ports import PORTS_ANNOTATION, container_port
from relearn_sandbox.processes import die_with_parent, free_port, kill_tree, terminate_group
from relearn_sandbox.store import Change, Store, now_rfc3339

logger = logging.getLogger(__name__)

TERMINATION_ENV = "RELEARN_TERMINATION_MESSAGE_PATH"
MAX_TERMINATION_MESSAGE = 4096
# Controllers first, so pods they create are started in the same pass.
ORDER = ("deployment", "job", "pod", "service")
# Programs the trainer image has on its PATH, run here with this Python.
PROGRAMS = {"torchrun": [sys.executable, "-m", "torch.distributed.run"], "python": [sys.executable]}
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR", "SSL_CERT_FILE")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; ``$$(VAR)`` stays literal."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


@dataclass
class Container:
    """One running (or waiting) container process of a pod."""

    name: str
    spec: dict[str, Any]
    directory: Path
    ports: dict[int, int]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    ready: bool = False
    started_at: str | None = None
    last_terminated: dict[str, Any] | None = None
    terminated: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # This run's output, and the previous run's (``kubectl logs --previous``).
    log: TimedLog = field(default_factory=TimedLog)
    previous_log: TimedLog | None = None
    pump: asyncio.Task[None] | None = None

    @property
    def pump_running(self) -> bool:
        return self.pump is not None and not self.pump.done()

    @property
    def log_path(self) -> Path:
        return self.directory / "output.log"

    @property
    def previous_log_path(self) -> Path:
        return self.directory / "previous.log"

    @property
    def termination_path(self) -> Path:
        return self.directory / "termination-log"


@dataclass
class PodRuntime:
    namespace: str
    name: str
    uid: str
    restart_policy: str
    containers: dict[str, Container]
    stopping: bool = False


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
        self.workdir = workdir
        self.images = dict(images or {})
        self.on_pods_changed = on_pods_changed
        self.max_backoff = max_backoff
        self._shared_ports: dict[tuple[str, str, int], int] = {}  # (namespace, subdomain, containerPort)
        self._pods: dict[tuple[str, str], PodRuntime] = {}
        self._dirty: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.deployments = DeploymentController(store)
        self.jobs = JobController(store, job_backoff=job_backoff, later=self._sync_job_later)
        self.endpoints = EndpointsController(store)
        self._syncs: dict[str, Callable[[str, str], Awaitable[None]]] = {
            "deployment": self.deployments.sync,
            "job": self.jobs.sync,
            "pod": self._sync_pod,
            "service": self.endpoints.sync,
        }

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
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
        await asyncio.gather(*(self._kill_pod(runtime, grace=2.0) for runtime in list(self._pods.values())))
        self._pods.clear()
        if self._http:
            await self._http.close()

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

    # -- pods -> processes -----------------------------------------------------------

    async def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.store.try_get("", "pods", namespace, name)
        runtime = self._pods.get((namespace, name))
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            if runtime is not None:
                self._pods.pop((namespace, name), None)
                # As a real cluster: the pod leaves its Services' endpoints
                # before its process is told to stop, not after.
                for service in self.store.objects("", "services", namespace):
                    await self.endpoints.sync(namespace, service["metadata"]["name"])
                await self._kill_pod(
                    runtime, grace=float((pod or {}).get("spec", {}).get("terminationGracePeriodSeconds", 5))
                )
                if pod is not None and pod["metadata"].get("deletionTimestamp"):
                    # Graceful deletion done: the kubelet releases the pod.
                    delete_pod(self.store, namespace, name)
            return
        if runtime is not None and runtime.uid != pod["metadata"]["uid"]:
            self._pods.pop((namespace, name), None)
            await self._kill_pod(runtime, grace=1.0)
            runtime = None
        if (
            runtime is None
            and pod_phase(pod) in ("Pending", "Running")
            and not pod.get("status", {}).get("containerStatuses")
        ):
            await self._start_pod(pod)

    async def _start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        directory = self.workdir / "pods" / namespace / name
        if directory.exists():
            shutil.rmtree(directory)
        containers = {}
        port_map: dict[str, int] = {}
        for spec in pod["spec"].get("containers") or ():
            subdomain = pod["spec"].get("subdomain")
            ports = {
                int(p["containerPort"]): (
                    # One loopback port for the pods of a subdomain: they reach one another there.
                    self._shared_ports.setdefault((namespace, subdomain, int(p["containerPort"])), free_port())
                    if subdomain
                    else free_port()
                )
                for p in spec.get("ports") or ()
                if "containerPort" in p
            }
            port_map.update({str(k): v for k, v in ports.items()})
            container_dir = directory / spec["name"]
            container_dir.mkdir(parents=True)
            containers[spec["name"]] = Container(spec["name"], spec, container_dir, ports)
        runtime = PodRuntime(namespace, name, meta["uid"], pod["spec"].get("restartPolicy", "Always"), containers)
        self._pods[(namespace, name)] = runtime
        pods_rt = self.store.type_for("", "pods")
        self.store.patch(
            pods_rt,
            namespace,
            name,
            "application/merge-patch+json",
            {"metadata": {"annotations": {PORTS_ANNOTATION: json.dumps(port_map)}}},
        )
        for container in containers.values():
            await self._run_container(runtime, container, pod)
        self._report(runtime)

    def _environment(self, pod: Mapping[str, Any], container: Container) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
        for declared, host_port in container.ports.items():
            env[f"RELEARN_SANDBOX_PORT_{declared}"] = str(host_port)
        if container.ports:
            env["PORT"] = str(next(iter(container.ports.values())))
        for item in container.spec.get("env") or ():
            value = item.get("value")
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                path = source["fieldRef"].get("fieldPath", "")
                keyed = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", path)
                value = {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": pod["metadata"]["namespace"],
                    "metadata.uid": pod["metadata"]["uid"],
                    "status.podIP": "127.0.0.1",
                    "spec.nodeName": "sandbox",
                }.get(path, "")
                if keyed is not None:
                    value = (pod["metadata"].get(keyed.group(1)) or {}).get(keyed.group(2), "")
            for ref_key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                if ref_key in source:
                    ref = source[ref_key]
                    obj = self.store.try_get("", plural, pod["metadata"]["namespace"], ref.get("name", "")) or {}
                    data = obj.get("data") or {}
                    value = data.get(ref.get("key", ""), "")
                    if plural == "secrets" and value:
                        value = base64.b64decode(value).decode()
            env[item["name"]] = self._on_loopback(pod, container, expand(str(value or ""), env))
        # Set last: the pod's terminationMessagePath is this file here, whatever
        # the spec says, and servers that honour RELEARN_BIND stay on loopback.
        env[TERMINATION_ENV] = str(container.termination_path)
        env["RELEARN_BIND"] = "127.0.0.1"
        return env

    def _on_loopback(self, pod: Mapping[str, Any], container: Container, value: str) -> str:
        """In a pod of a subdomain: a peer's DNS name is 127.0.0.1, a declared port its shared loopback port."""
        subdomain = pod["spec"].get("subdomain")
        if not subdomain:
            return value
        namespace = re.escape(pod["metadata"]["namespace"])
        peer = rf"[a-z0-9]([-a-z0-9]*[a-z0-9])?\.{re.escape(subdomain)}(\.{namespace}(\.svc(\.cluster\.local)?)?)?"
        match = re.fullmatch(rf"{peer}(:(?P<port>\d+))?", value)
        if match is not None:
            port = match.group("port")
            return "127.0.0.1" + (f":{container.ports.get(int(port), port)}" if port else "")
        if value.isdecimal() and int(value) in container.ports:
            return str(container.ports[int(value)])
        return value

    async def _run_container(self, runtime: PodRuntime, container: Container, pod: Mapping[str, Any]) -> None:
        env = self._environment(pod, container)
        spec = container.spec
        command = list(spec.get("command") or ())
        if not command:
            image = str(spec.get("image", "")).rsplit("@", 1)[0]
            repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            entrypoint = self.images.get(image) or self.images.get(repository)
            if entrypoint is None:
                container.waiting = {
                    "reason": "ImageNotEmulated",
                    "message": (
                        f"image {spec.get('image')!r} has no entrypoint in the sandbox image table and the "
                        "container sets no command"
                    ),
                }
                return
            command = list(entrypoint)
        elif command[0] in PROGRAMS:
            command = PROGRAMS[command[0]] + command[1:]
        argv = [expand(str(part), env) for part in command + list(spec.get("args") or ())]
        container.termination_path.write_text("")
        if container.restarts and container.log_path.exists():
            # A restart starts a new log; the kubelet keeps the last run's for --previous.
            container.log_path.replace(container.previous_log_path)
            container.previous_log, container.log = container.log, TimedLog()
        try:
            container.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=container.directory,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as error:
            container.waiting = {"reason": "StartError", "message": str(error)}
            return
        assert container.process.stdout is not None
        container.pump = asyncio.create_task(self._pump(container, container.process.stdout, container.log))
        container.waiting = None
        container.terminated = None
        container.started_at = now_rfc3339()
        container.ready = "readinessProbe" not in spec
        container.tasks = [asyncio.create_task(self._watch_exit(runtime, container))]
        if "readinessProbe" in spec:
            container.tasks.append(asyncio.create_task(self._probe(runtime, container)))

    async def _pump(self, container: Container, stream: asyncio.StreamReader, log: TimedLog) -> None:
        """Copy a run's output to its log file, noting when each line arrived (``--timestamps``, ``--since``)."""
        with container.log_path.open("ab", buffering=0) as handle:
            while chunk := await stream.read(65536):
                handle.write(chunk)
                log.append(chunk, datetime.datetime.now(datetime.UTC))

    async def _watch_exit(self, runtime: PodRuntime, container: Container) -> None:
        assert container.process is not None
        code = await container.process.wait()
        if container.pump is not None:
            # The last output may still be in the pipe; a daemon child may hold it open.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(container.pump)
        if runtime.stopping:
            return
        message = container.termination_path.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and code != 0 and container.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = container.log_path.read_bytes()[-2048:].decode(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)
        state = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now_rfc3339(),
        }
        if message:
            state["message"] = message
        container.ready = False
        container.process = None
        restart = runtime.restart_policy == "Always" or (runtime.restart_policy == "OnFailure" and code != 0)
        if not restart:
            container.terminated = state
            self._report(runtime)
            return
        container.last_terminated = state
        delay = min(self.max_backoff, 2.0**container.restarts)
        container.restarts += 1
        container.waiting = {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {delay:.0f}s restarting failed container {container.name}",
        }
        self._report(runtime)
        await asyncio.sleep(delay)
        pod = self.store.try_get("", "pods", runtime.namespace, runtime.name)
        if runtime.stopping or pod is None:
            return
        await self._run_container(runtime, container, pod)
        self._report(runtime)

    async def _probe(self, runtime: PodRuntime, container: Container) -> None:
        probe = container.spec["readinessProbe"]
        http = probe.get("httpGet")
        period = float(probe.get("periodSeconds", 10))
        failures_allowed = int(probe.get("failureThreshold", 3))
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        failures = 0
        while container.process is not None and not runtime.stopping:
            ok = False
            if http is None:
                ok = True  # exec/tcp probes are not emulated: running counts as ready
            else:
                port = container_port(container.spec, container.ports, http.get("port"))
                url = f"http://127.0.0.1:{port}{http.get('path', '/')}"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    assert self._http is not None
                    async with self._http.get(url) as response:
                        ok = 200 <= response.status < 400
            failures = 0 if ok else failures + 1
            ready = ok or (container.ready and failures < failures_allowed)
            if ready != container.ready:
                container.ready = ready
                self._report(runtime)
            await asyncio.sleep(min(period, 1.0) if not container.ready else period)

    def _report(self, runtime: PodRuntime) -> None:
        """Write the pod's status from its containers."""
        if runtime.stopping:
            return
        statuses = []
        for container in runtime.containers.values():
            if container.terminated:
                state: dict[str, Any] = {"terminated": container.terminated}
            elif container.waiting:
                state = {"waiting": container.waiting}
            else:
                state = {"running": {"startedAt": container.started_at}}
            status: dict[str, Any] = {
                "name": container.name,
                "image": container.spec.get("image", ""),
                "imageID": "",
                "ready": container.ready,
                "restartCount": container.restarts,
                "started": container.process is not None,
                "state": state,
            }
            if container.process is not None:
                status["containerID"] = f"sandbox://{container.process.pid}"
            if container.last_terminated:
                status["lastState"] = {"terminated": container.last_terminated}
            statuses.append(status)
        terminated = [c.terminated for c in runtime.containers.values()]
        if all(terminated):
            phase = "Succeeded" if all(t and t["exitCode"] == 0 for t in terminated) else "Failed"
        elif any(c.process is not None for c in runtime.containers.values()):
            phase = "Running"
        else:
            phase = "Pending"
        ready = phase == "Running" and all(c.ready for c in runtime.containers.values())
        stamp = now_rfc3339()
        pod_status: dict[str, Any] = {
            "phase": phase,
            "podIP": "127.0.0.1",
            "hostIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "containerStatuses": statuses,
            "conditions": [
                {"type": t, "status": "True" if ok else "False", "lastTransitionTime": stamp}
                for t, ok in (
                    ("PodScheduled", True),
                    ("Initialized", True),
                    ("ContainersReady", ready),
                    ("Ready", ready),
                )
            ],
        }
        with contextlib.suppress(ApiError):
            pod = self.store.try_get("", "pods", runtime.namespace, runtime.name)
            if pod is not None and pod["metadata"]["uid"] == runtime.uid:
                pod_status.setdefault("startTime", (pod.get("status") or {}).get("startTime") or stamp)
                patch_status(self.store, "", "pods", runtime.namespace, runtime.name, pod_status)

    def kill(self, namespace: str, name: str) -> bool:
        """A fault: SIGKILL the process groups of a pod's running containers."""
        runtime = self._pods.get((namespace, name))
        killed = False
        for container in runtime.containers.values() if runtime is not None else ():
            process = container.process
            if process is not None and process.returncode is None:
                kill_tree(process.pid)
                killed = True
        return killed

    async def _kill_pod(self, runtime: PodRuntime, grace: float) -> None:
        runtime.stopping = True
        for container in runtime.containers.values():
            for task in container.tasks:
                task.cancel()
            if container.process is not None:
                await terminate_group(container.process, grace)
            if container.pump is not None:
                container.pump.cancel()

    # -- logs ------------------------------------------------------------------

    async def logs(self, namespace: str, name: str, options: LogOptions) -> AsyncIterator[bytes]:
        """A container's output for ``kubectl logs``: ``--previous``, ``--tail``,
        ``--since``/``--since-time``, ``--timestamps``, ``--limit-bytes``, and
        ``-f``, which follows until the container exits."""
        runtime = self._pods.get((namespace, name))
        if runtime is None:
            pod = self.store.try_get("", "pods", namespace, name) or {}
            specs: list[dict[str, Any]] = list((pod.get("spec") or {}).get("containers") or ())
            first = str(specs[0].get("name", "")) if specs else ""
            raise _waiting(options.container or first, name, "ContainerCreating")
        names = list(runtime.containers)
        chosen = options.container or (names[0] if names else None)
        container = runtime.containers.get(chosen or "")
        if container is None:
            raise ApiError(400, "BadRequest", f"container {chosen} is not valid for pod {name}; choose one of: {names}")
        if not options.previous and container.started_at is None and container.waiting:
            # Never started (ImageNotEmulated, StartError): the kubelet's answer, with why.
            waiting = container.waiting
            raise _waiting(container.name, name, f"{waiting.get('reason')}: {waiting.get('message', '')}")
        log = container.previous_log if options.previous else container.log
        if log is None:
            raise ApiError(400, "BadRequest", f'previous terminated container "{chosen}" in pod "{name}" not found')
        budget = options.limit_bytes
        index = 0
        while True:
            # Read after deciding: output that arrives once the run is over is already in `log`.
            active = container.log is log and (container.process is not None or container.pump_running)
            data, index = select(log, options, index, complete_only=options.follow and active)
            if budget is not None:
                data, budget = data[:budget], budget - min(budget, len(data))
            if data:
                yield data
            if not options.follow or options.previous or budget == 0 or not active:
                return
            await asyncio.sleep(0.2)


def _waiting(container: str, pod: str, why: str) -> ApiError:
    return ApiError(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start: {why}')
