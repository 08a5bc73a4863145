"""Requests lost to champion/challenger switches, with a data plane that learns of changes late.

    .venv/bin/python bench/zero_downtime.py [--lags 0 1] [--rate 40]

In the sandbox (real Prometheus, the operator as its own process), a load
generator in its own process sends steady traffic through the gateway
(``--rate`` requests/s, paced) and records every request's outcome. For each
gateway propagation lag (the gateway sees HTTPRoute, Service and Endpoints
changes that many seconds late, as a proxy fed by xDS does), three model
set-ups run one after another, each switch in its own time window:

- start and promotion: an experiment starts (the challenger takes 40%), and
  the far better challenger is promoted;
- warm rollback: a rollback by annotation while the previous champion still
  runs (bake time not passed);
- release and cold rollback: promotion with a 2 s bake time, the previous
  champion is released (route entry removed, then scaled to 0), then a
  rollback scales it up again;
- rejection: a far worse (but healthy) challenger is rejected and removed.

No version is faulty here, so every failed request (an HTTP status other
than 200, or no answer) inside a switch's window (from the action to its end
state plus lag + 3 s) is a request lost to switching; "quiet" is the rest of
the run, the baseline measured alongside. Goal: 0 in every window. The
window's own requests are printed beside it, so a 0 says how many requests
it covers. Bounded: each set-up stops after a few minutes at most.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ab_server import GROUP, MODEL, VERSION, experiment, serving, versions
from relearn_sandbox.cluster import SandboxConfig, SandboxThread
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import install_crds, wait_for


class Run:
    """One model set-up in its own namespace, with its switch windows."""

    def __init__(self, api: client.ApiClient, sandbox: Any, workdir: Path, namespace: str, lag: float) -> None:
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.sandbox, self.workdir, self.namespace, self.lag = sandbox, workdir, namespace, lag
        self.windows: list[tuple[str, float, float]] = []
        self.host = f"{namespace}.test"
        self.took: dict[str, float] = {}  # rollback: seconds from the decision to the routing change
        self.load_args: list[str] = []
        self.load: subprocess.Popen[bytes] | None = None

    def stop_load(self) -> None:
        if self.load is not None and self.load.stdin is not None:
            self.load.stdin.close()
            self.load.wait(20)

    def setup(self, accuracy: dict[str, float]) -> None:
        deployment, service, route = serving(MODEL, accuracy)
        route["spec"]["hostnames"] = [self.host]  # each set-up its own host: the gateway serves every namespace
        self.apps.create_namespaced_deployment(self.namespace, deployment)
        self.core.create_namespaced_service(self.namespace, service)
        self.custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", route
        )
        for body in versions(self.namespace):
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelversions", body)
        wait_for(
            self.apps.list_namespaced_deployment,
            lambda d: (d.get("status") or {}).get("readyReplicas") == 1,
            namespace=self.namespace,
            timeout=60,
        )
        # The load starts once the champion serves and the gateway (lag s late)
        # knows its endpoints: requests before that are no switch's.
        time.sleep(self.lag + 2)
        self.load = subprocess.Popen(self.load_args, stdin=subprocess.PIPE)
        time.sleep(1)

    def abx(self, predicate: Any, timeout: float = 180) -> dict[str, Any]:
        return wait_for(
            self.custom.list_namespaced_custom_object,
            lambda a: a["metadata"]["name"] == f"{MODEL}-1.1.0" and predicate(a),
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural="abexperiments",
            timeout=timeout,
        )

    def window(self, name: str, start: float) -> None:
        self.windows.append((name, start, time.time() + self.lag + 3.0))

    def annotate(self, key: str, value: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "abexperiments",
            f"{MODEL}-1.1.0",
            {"metadata": {"annotations": {key: value}}},
        )

    def start_and_promote(self, **rollback: Any) -> None:
        body = experiment(self.sandbox.prometheus_url, minSamplesPerArm=150)
        body["spec"]["rollback"] = {"interval": "2s", "bakeTime": "10m", **rollback}
        began = time.time()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "abexperiments", body)
        self.abx(lambda a: (a.get("status") or {}).get("phase") == "Progressing")
        self.window("start", began)
        decided = self.abx(lambda a: (a.get("status") or {}).get("decision", {}).get("outcome") == "Promote")
        promoting = time.time()
        self.abx(lambda a: a["status"].get("phase") == "Promoted")
        assert decided
        self.window("promotion", promoting)

    def rollback(self, name: str) -> None:
        began = time.time()
        self.annotate("relearn.dev/rollback", "previous")
        self.abx(lambda a: a["status"].get("phase") == "RolledBack", timeout=120)
        self.window(name, began)
        event = wait_for(
            self.core.list_namespaced_event, lambda e: e["reason"] == "RolledBack", namespace=self.namespace
        )
        took = re.search(r"([0-9.]+)s after the decision", event["message"])
        if took:
            self.took[name] = float(took.group(1))


def scenario(kind: str, run: Run) -> None:
    if kind == "warm":
        run.setup({"1.0.0": 0.7, "1.1.0": 0.98})
        run.start_and_promote()
        time.sleep(2)
        run.rollback("rollback warm")
    elif kind == "cold":
        run.setup({"1.0.0": 0.7, "1.1.0": 0.98})
        run.start_and_promote(bakeTime="2s")
        began = time.time()
        run.abx(lambda a: (a["status"].get("health") or {}).get("previousChampionWarm") is False, timeout=60)
        wait_for(
            run.apps.list_namespaced_deployment,
            lambda d: d["metadata"]["name"] == MODEL and not (d.get("status") or {}).get("readyReplicas"),
            namespace=run.namespace,
            timeout=60,
        )
        run.window("release", began)
        time.sleep(2)
        run.rollback("rollback cold")
    else:
        run.setup({"1.0.0": 0.98, "1.1.0": 0.6})
        body = experiment(run.sandbox.prometheus_url, minSamplesPerArm=150)
        began = time.time()
        run.custom.create_namespaced_custom_object(GROUP, VERSION, run.namespace, "abexperiments", body)
        run.abx(lambda a: (a.get("status") or {}).get("phase") == "Progressing")
        run.window("start", began)
        run.abx(lambda a: (a.get("status") or {}).get("decision", {}).get("outcome") == "Reject")
        rejecting = time.time()
        run.abx(lambda a: a["status"].get("phase") == "Rejected")
        run.window("rejection", rejecting)


def one_lag(lag: float, rate: float, kinds: list[str], keep: Path | None) -> dict[str, list[int]]:
    """{window name: [failed, requests]} over every set-up, and 'quiet' for the rest."""
    totals: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep / f"lag-{lag:g}" if keep else Path(tmp)
        config_ = SandboxConfig(workdir=workdir, prometheus=True, bookmark_interval=1.0, gateway_lag=lag)
        thread = SandboxThread(config_)
        sandbox = thread.start()
        try:
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            install_crds(api)
            for number, kind in enumerate(kinds):
                namespace = f"zdt-{kind}-{number}"
                run = Run(api, sandbox, workdir, namespace, lag)
                log = workdir / f"{namespace}.jsonl"
                run.core.create_namespace({"metadata": {"name": namespace}})  # before the operator watches it
                operator = start_operator(sandbox.kubeconfig, [namespace], workdir / f"{namespace}-operator.log")
                run.load_args = [
                    *(sys.executable, "-m", "relearn_sandbox.servers.load", "paced"),  # every request a JSON line
                    sandbox.gateway_url,
                    run.host,
                    str(rate),
                    str(log),
                ]
                try:
                    scenario(kind, run)
                    time.sleep(lag + 3)
                finally:
                    run.stop_load()
                    stop_operator(operator)
                records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                in_window = [False] * len(records)
                for name, start, end in run.windows:
                    entry = totals.setdefault(name, [0, 0])
                    for i, (sent, _, status, _) in enumerate(records):
                        if start <= sent <= end:
                            in_window[i] = True
                            entry[1] += 1
                            entry[0] += status != 200
                quiet = totals.setdefault("quiet", [0, 0])
                for i, (_, _, status, _) in enumerate(records):
                    if not in_window[i]:
                        quiet[1] += 1
                        quiet[0] += status != 200
                failed = [r for r in records if r[2] != 200]
                for name, seconds in run.took.items():
                    totals.setdefault(f"{name}: decision to route (s)", []).append(round(seconds * 1000))
                print(
                    f"  lag {lag:g} s, {kind}: {len(records)} requests, {len(failed)} failed "
                    f"({', '.join(f'{n} {e - s:.1f}s' for n, s, e in run.windows)})",
                    flush=True,
                )
                for sent, _, status, backend in failed[:5]:
                    print(f"    failed at {sent:.2f}: status {status} from {backend}", flush=True)
        finally:
            thread.stop()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lags", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--kinds", nargs="+", default=["warm", "cold", "reject"], choices=["warm", "cold", "reject"])
    parser.add_argument("--keep", type=Path, help="keep the sandbox's files (logs, every request) in this folder")
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    results = {lag: one_lag(lag, args.rate, args.kinds, args.keep) for lag in args.lags}
    names = ["start", "promotion", "rollback warm", "release", "rollback cold", "rejection", "quiet"]
    print(f"\nfailed / requests in each switch's window, {args.rate:g} requests/s (goal: 0 failed)")
    print(f"{'window':<16}" + "".join(f"{f'lag {lag:g} s':>18}" for lag in args.lags))
    for name in names:
        cells = []
        for lag in args.lags:
            failed, total = results[lag].get(name, [0, 0])
            cells.append(f"{failed:>8} / {total:<7}")
        print(f"{name:<16}" + "".join(f"{c:>18}" for c in cells))
    print("quiet: every request outside a switch's window (the baseline measured in the same run)")
    for name in ("rollback warm", "rollback cold"):
        took = [f"{max(results[lag].get(f'{name}: decision to route (s)', [0])) / 1000:.2f} s" for lag in args.lags]
        print(
            f"{name}: decision to routing change "
            + ", ".join(f"lag {lag:g} s: {t}" for lag, t in zip(args.lags, took, strict=True))
        )
    print("(goal: the warm one within 1 s; the cold one adds the previous champion's start-up)")


if __name__ == "__main__":
    main()
