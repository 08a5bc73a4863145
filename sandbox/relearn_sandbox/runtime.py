"""The sandbox's process runtime: a pod's containers run as local processes.

- A container runs from its ``command``/``args``/``env`` (:mod:`.environment`).
  The image is recorded, not pulled; a container without ``command`` takes
  its entrypoint from the sandbox's image table (:attr:`ProcessRuntime.images`),
  else it waits with ``ImageNotEmulated``. ``torchrun`` (torch's launcher) and
  ``python`` as a command run with this Python (:data:`PROGRAMS`: what the
  trainer image has on its PATH).
- Each ``containerPort`` is mapped to a free loopback port and recorded in the
  pod's annotation (:mod:`.ports`); the pods of one subdomain share one
  loopback port per declared ``containerPort``.
- Readiness comes from the HTTP ``readinessProbe`` (or from running, when
  there is none); restarts back off 1 s, 2 s, 4 s ... up to ``max_backoff``.
- A container's output comes through a pipe into ``output.log``, with the
  time each line arrived (:mod:`.podlogs`: ``kubectl logs --timestamps``,
  ``--since``); a restart moves it to ``previous.log`` (``--previous``).
- ``terminationMessagePath`` is a file per container, named to the process
  by ``RELEARN_TERMINATION_MESSAGE_PATH``; its content (4 KiB at most)
  becomes ``state.terminated.message``.

The pod's status (phase, conditions, container states) is written from its
containers through the store. :class:`relearn_sandbox.kubelet.Kubelet`
decides which pods run here (:meth:`ProcessRuntime.start_pod`,
:meth:`ProcessRuntime.stop_pod`); the API server reads their logs
(:meth:`ProcessRuntime.logs`) and the chaos faults kill them
(:meth:`ProcessRuntime.kill`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from relearn_sandbox.environment import environment, expand
from relearn_sandbox.errors import ApiError
from relearn_sandbox.podlogs import LogOptions, TimedLog, select
from relearn_sandbox.ports import PORTS_ANNOTATION, container_port
from relearn_sandbox.processes import die_with_parent, free_port, kill_tree, terminate_group
from relearn_sandbox.store import Store, now_rfc3339

MAX_TERMINATION_MESSAGE = 4096
# Programs the trainer image has on its PATH, run here with this Python.
PROGRAMS = {"torchrun": [sys.executable, "-m", "torch.distributed.run"], "python": [sys.executable]}


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


class ProcessRuntime:
    """The pods running on this machine, by (namespace, name)."""

    def __init__(
        self, store: Store, workdir: Path, *, images: Mapping[str, list[str]] | None = None, max_backoff: float = 30.0
    ) -> None:
        self.store = store
        self.workdir = workdir
        self.images = dict(images or {})
        self.max_backoff = max_backoff
        self._shared_ports: dict[tuple[str, str, int], int] = {}  # (namespace, subdomain, containerPort)
        self._pods: dict[tuple[str, str], PodRuntime] = {}
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))

    async def close(self) -> None:
        """Stop every pod's processes (2 s of grace) and the probes' HTTP session."""
        await asyncio.gather(*(self.stop_pod(runtime, grace=2.0) for runtime in list(self._pods.values())))
        self._pods.clear()
        if self._http:
            await self._http.close()

    def pod(self, namespace: str, name: str) -> PodRuntime | None:
        """The pod of that name whose containers run here, if any."""
        return self._pods.get((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        """The pod no longer runs here (:meth:`stop_pod` stops its processes)."""
        self._pods.pop((namespace, name), None)

    async def start_pod(self, pod: dict[str, Any]) -> None:
        """Run a pod's containers, each in a folder of its own, at loopback ports written to its annotation."""
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

    async def _run_container(self, runtime: PodRuntime, container: Container, pod: Mapping[str, Any]) -> None:
        env = environment(self.store, pod, container.spec, container.ports, container.termination_path)
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
                self.store.patch(
                    self.store.type_for("", "pods"),
                    runtime.namespace,
                    runtime.name,
                    "application/merge-patch+json",
                    {"status": pod_status},
                    subresource="status",
                )

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

    async def stop_pod(self, runtime: PodRuntime, grace: float) -> None:
        """Stop a pod's probes and processes: SIGTERM, then SIGKILL after ``grace`` seconds."""
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
