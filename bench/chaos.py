"""Whole loops under chaos: drift -> retraining Job -> ModelVersion ->
experiment -> promotion -> fault -> rollback, in the sandbox with its real
Prometheus, while the operator is SIGKILLed at random and at targeted
moments (right after a retraining is requested, after a promotion and after
a rollback is decided) and restarted at once, the API server restarts
(connections refused for 2-5 s, then the same state on the same port) and
status writes fail (503 for 8 s at a time).

    .venv/bin/python bench/chaos.py [--loops 20] [--parallel 4] [--kill-every 30]
        [--outage-every 60] [--status-failures-every 75] [--timeout 900] [--seed 1]

Each loop runs in a namespace of its own with an operator of its own
(``relearn run -n NS``), several loops at a time in one sandbox (queries are
scoped by namespace, so loops never see each other's series), with the
demo's tiny document classifier (the trainer extra). API restarts and status
write failures hit every loop running at that moment. Printed per loop,
against the goals:

- Jobs per trigger (goal exactly 1): retraining Jobs / requests recorded;
- ModelVersions per version (1): ModelVersion objects / distinct versions;
- promotions and rollbacks recorded (1 each): history entries on the new version;
- Champions per model, min and max over the loop (1 always), sampled every 0.5 s,
  as every reader takes them: the version the model's champion record (its
  Lease, ``relearn.core.model_versions``) names, else (before the first
  hand-over) the Champion phase; and the longest stretch of samples with two
  Champion *phases* (``overlap_s``: a hand-over between its two phase writes,
  which follow the record);
- stuck experiments (0): not ended at the end of the loop;
- orphans (0): challenger Deployments left behind by an ended experiment;
- doubled and lost Events (0, 0): decision Events (RetrainingRequested ...
  RolledBack) posted more than once, or not at all for a decision taken;
- daemon pause after an API outage (goal <= 5 s): for each daemon (of a
  DriftPolicy or an ABExperiment) turning before an outage (its object read
  by name in the 10 s before, as every turn's status write does), the time
  from the API serving again to its next read, the worst over the loop's
  outages; left out where that loop's operator was killed or restarting
  between 5 s before the outage and that read (``-``: none left to measure);
- kills, outages and status-write failures the loop went through.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from relearn.core import model_versions
from relearn_sandbox import demo_loop
from relearn_sandbox.audit import OPERATOR
from relearn_sandbox.cluster import SandboxConfig, SandboxThread
from relearn_sandbox.demo import kubectl
from relearn_sandbox.ports import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.servers import fail_requests
from relearn_sandbox.testing import install_crds

GROUP, VERSION, MODEL = "relearn.dev", "v1alpha1", demo_loop.MODEL
DECISIONS = (
    "RetrainingRequested",
    "RetrainingStarted",
    "ModelVersionRegistered",
    "ExperimentCreated",
    "ExperimentStarted",
    "PromotionStarted",
    "Promoted",
    "RollbackStarted",
    "RolledBack",
)
HOST_LOCK = threading.Lock()  # demo_loop.objects reads its module's HOST
BUILD_LOCK = threading.Lock()  # transformers' lazy imports are not thread-safe


def retrying(action: Callable[[], Any], timeout: float = 120) -> Any:
    """``action`` again until it works: the API may be restarting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Chaos:
    """One loop's operator process, killed and restarted on demand or at random."""

    kubeconfig: Path
    namespace: str
    log: Path
    every: float
    process: subprocess.Popen[bytes] | None = None
    kills: dict[str, int] = field(default_factory=lambda: {"random": 0, "targeted": 0})
    killed_at: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.process = retrying(lambda: start_operator(self.kubeconfig, [self.namespace], self.log))
        threading.Thread(target=self._random, daemon=True).start()

    def kill(self, why: str) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                self.kills[why] += 1
                self.killed_at.append(time.monotonic())
            self.process = retrying(lambda: start_operator(self.kubeconfig, [self.namespace], self.log))
            self.killed_at.append(time.monotonic())

    def _random(self) -> None:
        rng = random.Random(self.namespace)
        while not self._stop.wait(rng.uniform(0.3, 1.7) * self.every):
            self.kill("random")

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            if self.process is not None:
                stop_operator(self.process)


@dataclass
class Faults:
    """API restarts and failing status writes for the whole sandbox, at random."""

    thread: SandboxThread
    outage_every: float
    failures_every: float
    seed: int
    outages: list[tuple[float, float]] = field(default_factory=list)  # (down, serving again), monotonic
    failures: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.outage_every > 0:
            threading.Thread(target=self._outages, daemon=True).start()
        if self.failures_every > 0:
            threading.Thread(target=self._failures, daemon=True).start()

    def _outages(self) -> None:
        rng = random.Random(self.seed)
        while not self._stop.wait(rng.uniform(0.5, 1.5) * self.outage_every):
            down = time.monotonic()
            self.thread.restart_api(rng.uniform(2.0, 5.0))
            self.outages.append((down, time.monotonic()))

    def _failures(self) -> None:
        rng = random.Random(self.seed + 1)
        while not self._stop.wait(rng.uniform(0.5, 1.5) * self.failures_every):
            self.thread.fail_status_writes(8.0, 503)
            self.failures.append((time.monotonic(), time.monotonic() + 8.0))

    def stop(self) -> None:
        self._stop.set()


def condition(obj: dict[str, Any], type_: str) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def poll(read: Callable[[], Any], predicate: Callable[[Any], bool], timeout: float, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = read()
            if predicate(value):
                return value
        except Exception:  # an API error, or the API restarting
            pass
        time.sleep(every)
    raise TimeoutError(f"not reached within {timeout:.0f}s")


def daemon_pauses(sandbox: Any, namespace: str, outages: list[tuple[float, float]], kills: list[float]) -> list[float]:
    """For each outage, the longest time from the API serving again to a
    daemon's next read of its object, over the daemons turning before it."""
    reads = [
        c
        for c in sandbox.api_calls(OPERATOR)
        if c.namespace == namespace
        and c.verb == "get"
        and c.group == GROUP
        and c.resource in ("driftpolicies", "abexperiments")  # the kinds with daemons (not ModelVersions)
        and c.subresource is None
        and c.name
        and c.code == 200
    ]
    pauses = []
    for down, up in outages:
        active = {(c.resource, c.name) for c in reads if down - 10 <= c.at < down}
        for resource, name in active:
            after = [c.at for c in reads if (c.resource, c.name) == (resource, name) and c.at >= up]
            pause = (min(after) - up) if after else math.inf
            if any(down - 5 <= k <= up + pause for k in kills):
                continue  # the operator itself was killed or restarting meanwhile: the kill's pause, not the outage's
            pauses.append(pause)
    return pauses


class ChampionSampler:
    """Every 0.5 s until stopped: the model's champions as every reader takes
    them (the version its champion record names, else the Champion phase or
    the version declared from Git), and stretches of two Champion phases."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom = custom
        self.namespace = namespace
        self.champions: list[int] = []
        self.phases: list[int] = []  # versions in phase Champion
        self.overlaps: list[float] = []  # seconds each stretch of two Champion phases lasted, as sampled
        self.stopped = threading.Event()

    def record(self) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = self.custom.get_namespaced_custom_object(
                "coordination.k8s.io", "v1", self.namespace, "leases", model_versions.record_name(MODEL)
            )
            return lease
        except client.ApiException as error:
            if error.status == 404:
                return None  # no hand-over yet
            raise

    def take(self) -> None:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelversions")["items"]
        holder = model_versions.holder_of(self.record())
        promoted = sum((v.get("status") or {}).get("phase") == "Champion" for v in listed)
        self.phases.append(promoted)
        if model_versions.find(listed, holder or "") is not None:
            self.champions.append(1)  # the champion record names one version: the champion
        else:  # no hand-over yet: the Champion phase, else the version declared from Git
            self.champions.append(promoted or sum(bool(v["spec"].get("declaredChampion")) for v in listed))
        if promoted > 1:  # a hand-over between its phase writes (the record moved first)
            if len(self.phases) < 2 or self.phases[-2] < 2:
                self.overlaps.append(0.0)
            self.overlaps[-1] += 0.5

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            try:
                self.take()
            except Exception:  # the API answered nothing this time
                continue


def one_loop(api: client.ApiClient, sandbox: Any, faults: Faults, workdir: Path, number: int, args: Any) -> dict:
    from relearn_trainer import synthetic

    namespace = f"chaos-{number}"
    kubeconfig = sandbox.kubeconfig
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    retrying(lambda: core.create_namespace({"metadata": {"name": namespace}}))
    host = f"documents-{number}.chaos.local"  # one route per loop on the shared gateway
    loop_dir = workdir / namespace
    with BUILD_LOCK:  # the demo's MiniLM champion: built by the first loop, then from its cache
        champion = demo_loop.build_champion(loop_dir)
    with HOST_LOCK:
        demo_loop.HOST = host
        kube_objects, relearn_objects = demo_loop.objects(loop_dir, sandbox.prometheus_url, champion)
    for body in kube_objects + relearn_objects:
        retrying(lambda body=body: kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body)))

    def policy() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", MODEL)

    def versions() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")["items"]

    def experiments() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments")["items"]

    sampler = ChampionSampler(custom, namespace)
    # Its own kubeconfig: the sandbox logs its calls as the operator's (the daemon pauses come from that log).
    chaos = Chaos(sandbox.operator_kubeconfig, namespace, workdir / f"{namespace}-operator.log", args.kill_every)
    chaos.start()
    threading.Thread(target=sampler.run, daemon=True).start()
    started = time.monotonic()
    outcome = "RolledBack"
    try:
        with synthetic.Traffic(sandbox.gateway_url, host=host) as traffic:
            poll(policy, lambda p: condition(p, "Drifted") == "False", 240)
            traffic.drifted = True
            poll(policy, lambda p: ((p.get("status") or {}).get("lastRetraining") or {}).get("outcome"), 300)
            chaos.kill("targeted")  # right after the request was recorded
            done = poll(
                policy,
                lambda p: (
                    ((p.get("status") or {}).get("lastRetraining") or {}).get("outcome") in ("Succeeded", "Failed")
                ),
                args.timeout,
            )
            record = done["status"]["lastRetraining"]
            if record["outcome"] != "Succeeded":
                raise RuntimeError(f"retraining failed: {record}")
            name = f"{MODEL}-{record['modelVersion']}"
            poll(
                experiments,
                lambda xs: any(
                    x["metadata"]["name"] == name and (x.get("status") or {}).get("phase") == "Promoted" for x in xs
                ),
                args.timeout,
            )
            chaos.kill("targeted")  # right after the promotion
            pod = poll(
                lambda: (
                    core.list_namespaced_pod(
                        namespace, label_selector=f"relearn.dev/version={record['modelVersion']}"
                    ).items
                ),
                bool,
                120,
            )[0]
            fail_requests(pod_url(pod.metadata.annotations))
            poll(
                experiments,
                lambda xs: any(
                    ((x.get("status") or {}).get("decision") or {}).get("outcome") == "RollBack" for x in xs
                ),
                300,
            )
            chaos.kill("targeted")  # right after the rollback was decided
            poll(experiments, lambda xs: any((x.get("status") or {}).get("phase") == "RolledBack" for x in xs), 300)
    except (TimeoutError, RuntimeError) as error:
        outcome = f"not finished: {error}"
    finally:
        sampler.stopped.set()
        ended_at = time.monotonic()
        chaos.stop()
    time.sleep(1)
    jobs = retrying(lambda: client.BatchV1Api(api).list_namespaced_job(namespace).items)
    requests = ((retrying(policy).get("status") or {}).get("lastRetraining") or {}).get("sequence") or 0
    mvs = retrying(versions)
    distinct = {v["spec"]["version"] for v in mvs}
    new = [v for v in mvs if v["spec"]["version"] != "1.0.0"]
    history = [h["action"] for v in new for h in (v.get("status") or {}).get("history") or ()]
    ended = ("Promoted", "Rejected", "Inconclusive", "Aborted", "RolledBack", "Failed")
    listed = retrying(experiments)
    running = {x["metadata"]["name"] for x in listed if (x.get("status") or {}).get("phase") not in ended}
    phases = {x["metadata"]["name"]: (x.get("status") or {}).get("phase") for x in listed}
    orphans = [  # a challenger's Deployment left by an experiment that ended without promoting it
        d.metadata.name
        for d in retrying(
            lambda: apps.list_namespaced_deployment(namespace, label_selector="relearn.dev/experiment").items
        )
        if d.metadata.labels.get("relearn.dev/experiment") not in running
        and phases.get(d.metadata.labels.get("relearn.dev/experiment"), "Promoted") != "Promoted"
    ]
    posted = [e.reason for e in retrying(lambda: core.list_namespaced_event(namespace).items) if e.reason in DECISIONS]
    expected = DECISIONS if outcome == "RolledBack" else ()
    window = [(d, u) for d, u in faults.outages if started <= d <= ended_at]
    failures = [(s, e) for s, e in faults.failures if started <= s <= ended_at]
    pauses = daemon_pauses(sandbox, namespace, window, chaos.killed_at)
    return {
        "doubled": sum(posted.count(reason) > 1 for reason in set(posted)),
        "doubled_reasons": sorted(reason for reason in set(posted) if posted.count(reason) > 1),
        "lost": sum(reason not in posted for reason in expected),
        "outcome": outcome,
        "seconds": ended_at - started,
        "jobs_per_trigger": len(jobs) / requests if requests else float("nan"),
        "mv_per_version": len(mvs) / len(distinct),
        "promotions": history.count("Promoted"),
        "rollbacks": history.count("RolledBack"),
        "champions": (min(sampler.champions, default=-1), max(sampler.champions, default=-1)),
        "overlap": max(sampler.overlaps, default=0.0),
        "stuck": len(running),
        "orphans": len(orphans),
        "pause": max(pauses) if pauses else float("nan"),
        "outages": len(window),
        "failures": len(failures),
        "kills": dict(chaos.kills),
    }


HEADER = (
    "loop  outcome     s  jobs/trigger  mv/version  promotions  rollbacks  champions(min,max)  "
    "overlap_s  stuck  orphans  doubled  lost  pause_s  outages  503s  kills"
)


def row(number: int, r: dict[str, Any]) -> str:
    kills = f"{r['kills']['random']}+{r['kills']['targeted']}"
    pause = "-" if math.isnan(r["pause"]) else f"{r['pause']:.1f}"
    return (
        f"{number:4d}  {r['outcome'][:10]:10s} {r['seconds']:5.0f}  {r['jobs_per_trigger']:12.2f}  "
        f"{r['mv_per_version']:10.2f}  {r['promotions']:10d}  {r['rollbacks']:9d}  "
        f"{r['champions']!s:18s}  {r['overlap']:9.1f}  {r['stuck']:5d}  {r['orphans']:7d}  "
        f"{r['doubled']:7d}  {r['lost']:4d}  "
        f"{pause:>7s}  {r['outages']:7d}  {r['failures']:4d}  {kills}"
        + (f"  doubled: {', '.join(r['doubled_reasons'])}" if r["doubled_reasons"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4, help="loops running at once (default %(default)s)")
    parser.add_argument("--kill-every", type=float, default=30.0, help="mean seconds between random SIGKILLs")
    parser.add_argument("--outage-every", type=float, default=60.0, help="mean seconds between API restarts (0: none)")
    parser.add_argument(
        "--status-failures-every", type=float, default=75.0, help="mean seconds between 8 s of failing status writes"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds a loop's retraining and experiment may take"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        thread = SandboxThread(SandboxConfig(workdir=workdir, prometheus=True, bookmark_interval=1.0))
        sandbox = thread.start()
        faults = Faults(thread, args.outage_every, args.status_failures_every, args.seed)
        try:
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            install_crds(api)
            faults.start()
            print(HEADER, flush=True)
            results: dict[int, dict[str, Any]] = {}
            with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                futures = {
                    pool.submit(one_loop, api, sandbox, faults, workdir, number, args): number
                    for number in range(args.loops)
                }
                for future in concurrent.futures.as_completed(futures):
                    number = futures[future]
                    try:
                        results[number] = future.result()
                    except Exception as error:  # the bench's own failure: said, and the other loops go on
                        print(f"{number:4d}  bench error: {error!r}", flush=True)
                        continue
                    print(row(number, results[number]), flush=True)
            faults.stop()
            good = sum(
                r["outcome"] == "RolledBack"
                and r["jobs_per_trigger"] == 1
                and r["mv_per_version"] == 1
                and r["promotions"] == 1
                and r["rollbacks"] == 1
                and r["champions"] == (1, 1)
                and r["stuck"] == 0
                and r["orphans"] == 0
                and r["doubled"] == 0
                and r["lost"] == 0
                and not r["pause"] > 5
                for r in results.values()
            )
            pauses = [r["pause"] for r in results.values() if not math.isnan(r["pause"])]
            print(
                f"{good} of {args.loops} loops met every goal (goals: 1, 1, 1, 1, (1, 1), 0, 0, 0, 0, <= 5 s); "
                f"{len(faults.outages)} API restarts, {len(faults.failures)} status-write failures, "
                f"{sum(sum(r['kills'].values()) for r in results.values())} SIGKILLs; "
                f"worst daemon pause after an outage {max(pauses, default=float('nan')):.1f} s"
            )
        finally:
            faults.stop()
            thread.stop()


if __name__ == "__main__":
    sys.exit(main())
