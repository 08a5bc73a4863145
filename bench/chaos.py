"""Whole loops under chaos: drift -> retraining Job -> ModelVersion ->
experiment -> promotion -> fault -> rollback, in the sandbox with its real
Prometheus, while the operator is SIGKILLed at random and at targeted
moments (right after a retraining is requested, right after a rollback is
decided) and restarted at once.

    .venv/bin/python bench/chaos.py [--loops 20] [--kill-every 20] [--timeout 900]

Each loop runs in a fresh namespace of one sandbox (queries are scoped by
namespace, so loops never see each other's series) with the demo's tiny
document classifier (the trainer extra). Printed per loop, against the goals:

- Jobs per trigger (goal exactly 1): retraining Jobs / requests recorded;
- ModelVersions per version (1): ModelVersion objects / distinct versions;
- promotions and rollbacks recorded (1 each): history entries on the new version;
- Champions per model, min and max over the loop (1 always), sampled every 0.5 s;
- stuck experiments (0): not ended at the end of the loop;
- doubled Events (0): decision Events (RetrainingRequested ... RolledBack) posted more than once;
- orphans (0): challenger Deployments or Services left without a running experiment;
- kills: random and targeted SIGKILLs of the operator.

Not emulated here (the sandbox cannot yet): API server restarts and failing
status writes; those are covered by tests/unit/test_daemons.py (a 3 s
outage pauses a daemon <= 5 s; a request gets one Job while status writes
fail).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from relearn import demo_loop
from relearn.demo import kubectl
from relearn.sandbox.cluster import SandboxConfig, SandboxThread
from relearn.sandbox.kubelet import pod_url
from relearn.sandbox.processes import start_operator, stop_operator
from relearn.sandbox.testing import install_crds

GROUP, VERSION, MODEL = "relearn.dev", "v1alpha1", demo_loop.MODEL


@dataclass
class Chaos:
    """The operator process, killed and restarted on demand or at random."""

    kubeconfig: Path
    namespace: str
    log: Path
    every: float
    process: subprocess.Popen[bytes] | None = None
    kills: dict[str, int] = field(default_factory=lambda: {"random": 0, "targeted": 0})
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.process = start_operator(self.kubeconfig, [self.namespace], self.log)
        threading.Thread(target=self._random, daemon=True).start()

    def kill(self, why: str) -> None:
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                self.kills[why] += 1
            self.process = start_operator(self.kubeconfig, [self.namespace], self.log)

    def _random(self) -> None:
        rng = random.Random(self.namespace)
        while not self._stop.wait(rng.uniform(0.3, 1.7) * self.every):
            self.kill("random")

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self.process is not None:
                stop_operator(self.process)


def condition(obj: dict[str, Any], type_: str) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def poll(read: Callable[[], Any], predicate: Callable[[Any], bool], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = read()
            if predicate(value):
                return value
        except client.ApiException:
            pass
        time.sleep(every)
    raise TimeoutError(f"not reached within {timeout:.0f}s")


def one_loop(api: client.ApiClient, sandbox: Any, kubeconfig: Path, workdir: Path, number: int, args: Any) -> dict:
    from relearn_trainer import synthetic

    namespace = f"chaos-{number}"
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    demo_loop.HOST = f"documents-{number}.chaos.local"  # one route per loop on the shared gateway
    loop_dir = workdir / namespace
    kube_objects, relearn_objects = demo_loop.objects(loop_dir, sandbox.prometheus_url)
    synthetic.build_tiny_model(loop_dir / "model" / "base", pretrain_on=synthetic.samples(400, seed=1))
    (loop_dir / "model" / "data").mkdir(parents=True, exist_ok=True)
    for body in kube_objects + relearn_objects:
        kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))

    def policy() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", MODEL)

    def versions() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")["items"]

    def experiments() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments")["items"]

    champions: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.5):
            try:
                listed = versions()
                promoted = sum((v.get("status") or {}).get("phase") == "Champion" for v in listed)
                # Before any promotion the champion is the one declared from Git (as the operator reads it).
                champions.append(promoted or sum(bool(v["spec"].get("declaredChampion")) for v in listed))
            except Exception:  # the API answered nothing this time
                continue

    chaos = Chaos(kubeconfig, namespace, workdir / f"{namespace}-operator.log", args.kill_every)
    chaos.start()
    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    outcome = "RolledBack"
    try:
        with synthetic.Traffic(sandbox.gateway_url, host=demo_loop.HOST) as traffic:
            poll(policy, lambda p: condition(p, "Drifted") == "False", 180)
            traffic.drifted = True
            poll(policy, lambda p: ((p.get("status") or {}).get("lastRetraining") or {}).get("outcome"), 240)
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
            pod = core.list_namespaced_pod(
                namespace, label_selector=f"relearn.dev/version={record['modelVersion']}"
            ).items[0]
            fault = urllib.request.Request(
                f"{pod_url(pod.metadata.annotations)}/admin/fault",
                data=b'{"failing": true}',
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(fault, timeout=10)
            poll(
                experiments,
                lambda xs: any(
                    ((x.get("status") or {}).get("decision") or {}).get("outcome") == "RollBack" for x in xs
                ),
                240,
            )
            chaos.kill("targeted")  # right after the rollback was decided
            poll(experiments, lambda xs: any((x.get("status") or {}).get("phase") == "RolledBack" for x in xs), 240)
    except (TimeoutError, RuntimeError) as error:
        outcome = f"not finished: {error}"
    finally:
        sampling.set()
        chaos.stop()
    time.sleep(1)
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    requests = ((policy().get("status") or {}).get("lastRetraining") or {}).get("sequence") or 0
    mvs = versions()
    distinct = {v["spec"]["version"] for v in mvs}
    new = [v for v in mvs if v["spec"]["version"] != "1.0.0"]
    history = [h["action"] for v in new for h in (v.get("status") or {}).get("history") or ()]
    ended = ("Promoted", "Rejected", "Inconclusive", "Aborted", "RolledBack", "Failed")
    running = {x["metadata"]["name"] for x in experiments() if (x.get("status") or {}).get("phase") not in ended}
    stuck = len(running)
    orphans = [
        d.metadata.name
        for d in apps.list_namespaced_deployment(namespace, label_selector="relearn.dev/experiment").items
        if d.metadata.labels.get("relearn.dev/experiment") not in running
        and any(
            x["metadata"]["name"] == d.metadata.labels.get("relearn.dev/experiment")
            and x["status"].get("phase") != "Promoted"
            for x in experiments()
        )
    ]
    decisions = (
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
    posted = [e.reason for e in core.list_namespaced_event(namespace).items if e.reason in decisions]
    return {
        "doubled": sum(posted.count(reason) > 1 for reason in set(posted)),
        "outcome": outcome,
        "seconds": time.monotonic() - started,
        "jobs_per_trigger": len(jobs) / requests if requests else float("nan"),
        "mv_per_version": len(mvs) / len(distinct),
        "promotions": history.count("Promoted"),
        "rollbacks": history.count("RolledBack"),
        "champions": (min(champions, default=-1), max(champions, default=-1)),
        "stuck": stuck,
        "orphans": len(orphans),
        "kills": dict(chaos.kills),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--kill-every", type=float, default=20.0, help="mean seconds between random SIGKILLs")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds a loop's retraining and experiment may take"
    )
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        thread = SandboxThread(SandboxConfig(workdir=workdir, prometheus=True, bookmark_interval=1.0))
        sandbox = thread.start()
        try:
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            install_crds(api)
            print(
                "loop  outcome     s  jobs/trigger  mv/version  promotions  rollbacks  "
                "champions(min,max)  stuck  orphans  doubled  kills"
            )
            results = []
            for number in range(args.loops):
                r = one_loop(api, sandbox, sandbox.kubeconfig, workdir, number, args)
                results.append(r)
                print(
                    f"{number:4d}  {r['outcome'][:10]:10s} {r['seconds']:5.0f}  {r['jobs_per_trigger']:12.2f}  "
                    f"{r['mv_per_version']:10.2f}  {r['promotions']:10d}  {r['rollbacks']:9d}  "
                    f"{r['champions']!s:18s}  {r['stuck']:5d}  {r['orphans']:7d}  {r['doubled']:7d}  {r['kills']}",
                    flush=True,
                )
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
                for r in results
            )
            print(f"{good} of {len(results)} loops met every goal (goals: 1, 1, 1, 1, (1, 1), 0, 0, 0)")
        finally:
            thread.stop()


if __name__ == "__main__":
    sys.exit(main())
