"""The operator's cost as the number of objects grows: N DriftPolicies, then
N ABExperiments, each with a champion ModelVersion, on one operator in the
sandbox; the per-check cost at the largest N against the smallest, measured
in the same run (goal <= 1.2: the cost of a check does not grow with N).

    .venv/bin/python bench/scale.py [--drift 100,300,1000] [--experiments 100,300,1000]
        [--interval 30] [--window 120] [--together 1000] [--together-interval 300]
        [--together-window 0] [--first-status-timeout 300]

Then the goal case: ``--together`` N DriftPolicies (``--together-interval``
300 s) and N ABExperiments on one operator, measured over 2.5 intervals (so
every policy's second and third checks fall in it), with the goal printed:
at most 0.5 core and 400 MB, check periods within 10 % of the interval.

Each case gets a namespace of its own in one sandbox (``relearn sandbox serve
--no-prometheus``, its own process) and an operator of its own (``relearn run
-n NS --metrics-port``, its own process), started after the case's objects
exist. Prometheus is a stub in this process that answers every query at once
with the same two categorical buckets (the champion's baseline: no drift),
so a drift check does all its work (the champion lookup, the query, the
drift statistics, the status write) and Prometheus costs nothing to measure.
ABExperiments are Pending on a workload that does not exist
(``WorkloadNotFound``), so each turns after 10, 20 and 40 s, then every
60 s (the backed-off wait for a missing workload; "asked" counts the 60 s):
the champion and challenger ModelVersions looked up, the one experiment per
model gate, one Deployment read, the status write.

Printed per case: the operator's CPU (process CPU seconds of the operator's
process, from /proc; the API server and this process are apart) per minute
over ``--window`` seconds after every object has its first status; its RSS;
checks done / asked in the window (from the operator's
``relearn_handler_duration_seconds_count``); the check period p50/p95 against
the interval (DriftPolicies: successive ``status.lastCheckTime`` changes seen
by a watch, the first period after a first check left out: it is between
half and one and a half intervals by design, relearn.core.schedule); the
time from the operator's start to the N-th object's first status; and the
operator's CPU per check. Bounded: every wait has a timeout and the sandbox
and operators stop with this process.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from relearn_sandbox import control
from relearn_sandbox.processes import free_port, start_operator, stop_operator
from relearn_sandbox.testing import install_crds

GROUP, VERSION = "relearn.dev", "v1alpha1"
EXPERIMENT_POLL = 60.0  # seconds: a missing workload's wait, backed off to (10, 20, 40, then 60 s)
BUCKETS = [("a", 5000.0), ("b", 5000.0)]
PLURALS = {"DriftPolicy": "DriftPolicies", "ABExperiment": "ABExperiments"}


class StubPrometheus(BaseHTTPRequestHandler):
    """Every instant query answers the champion's baseline shape: no drift."""

    def do_GET(self) -> None:
        now = time.time()
        result = [
            {"metric": {"feature": "channel", "category": category}, "value": [now, str(count)]}
            for category, count in BUCKETS
        ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def handle(self) -> None:
        # A client that gave up (its timeout) is the operator's to report, not this stub's.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def champion(model: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-1.0.0", "labels": {"relearn.dev/model": model}},
        "spec": {
            "model": model,
            "version": "1.0.0",
            "declaredChampion": True,
            "baseModel": {"uri": "/models/base"},
            "baseline": {
                "features": [{"name": "channel", "type": "categorical", "categories": ["a", "b"], "counts": [5e3, 5e3]}]
            },
        },
    }


def challenger(model: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-1.1.0", "labels": {"relearn.dev/model": model}},
        "spec": {
            "model": model,
            "version": "1.1.0",
            "baseModel": {"uri": "/models/base"},
            "adapter": {"uri": f"/models/adapters/{model}/1.1.0", "sha256": "ab" * 32},
        },
    }


def drift_policy(model: str, prometheus: str, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": model, "labels": {"relearn.dev/model": model}},
        "spec": {
            "model": model,
            "prometheus": {"url": prometheus, "timeout": "5s"},
            "interval": f"{interval}s",
            "window": "1h",
            "features": [{"name": "channel", "type": "categorical"}],
            "accuracy": {"enabled": False},
            "trigger": {"consecutiveChecks": 3, "cooldown": "6h"},
        },
    }


def experiment(model: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ABExperiment",
        "metadata": {"name": model, "labels": {"relearn.dev/model": model}},
        "spec": {
            "model": model,
            "challenger": "1.1.0",
            "workload": {"name": model},
            "routing": {"provider": "gateway-api", "target": model},
            "traffic": {"steps": [5], "weight": 10},
            "analysis": {"interval": "1m", "minSamplesPerArm": 1000},
            "prometheus": {"url": prometheus},
        },
    }


@dataclass
class Seen:
    """What the case's watch saw: first status and check times per object (monotonic)."""

    first: dict[str, float] = field(default_factory=dict)
    checks: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    last_check: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def follow(api: client.ApiClient, namespace: str, plural: str, seen: Seen, stop: threading.Event) -> None:
    custom = client.CustomObjectsApi(api)
    while not stop.is_set():
        stream = watch.Watch()
        for event in stream.stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, timeout_seconds=5
        ):
            obj = event["object"]
            status = obj.get("status") or {}
            name = obj["metadata"]["name"]
            now = time.monotonic()
            with seen.lock:
                if any(c.get("type") != "Ready" for c in status.get("conditions") or ()):
                    seen.first.setdefault(name, now)
                checked = status.get("lastCheckTime")
                if checked and seen.last_check.get(name) != checked:
                    seen.last_check[name] = checked
                    seen.checks[name].append(now)
            if stop.is_set():
                stream.stop()
                break


def handler_count(metrics_port: int, handler: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("relearn_handler_duration_seconds_count{") and f'handler="{handler}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


@dataclass
class Result:
    """One case: one operator over ``counts`` objects of each kind."""

    counts: dict[str, int]
    interval: float  # the DriftPolicies' interval, seconds
    cpu_per_min: float
    rss: float
    done: dict[str, float]
    asked: dict[str, float]
    p50: float  # DriftPolicies' check period (nan without them)
    p95: float
    first_status: float
    per_check_ms: float  # the operator's CPU over every check and turn done

    @property
    def name(self) -> str:
        return " + ".join(f"{n} {PLURALS[kind]}" for kind, n in self.counts.items())


HANDLERS = {"DriftPolicy": ("driftpolicies", "drift-check"), "ABExperiment": ("abexperiments", "experiment")}


def run_case(
    api: client.ApiClient,
    kubeconfig: Path,
    counts: dict[str, int],
    interval: int,
    prometheus: str,
    args: argparse.Namespace,
    logs: Path,
) -> Result:
    namespace = "scale-" + "-".join(f"{kind.lower()}-{n}" for kind, n in counts.items())
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    objects: list[tuple[str, dict[str, Any]]] = []
    for i in range(max(counts.values())):
        model = f"m{i:04d}"
        objects.append(("modelversions", champion(model)))
        if i < counts.get("DriftPolicy", 0):
            objects.append(("driftpolicies", drift_policy(model, prometheus, interval)))
        if i < counts.get("ABExperiment", 0):
            objects.append(("modelversions", challenger(model)))
            objects.append(("abexperiments", experiment(model, prometheus)))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda o: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, *o), objects))

    seen = {kind: Seen() for kind in counts}
    stop = threading.Event()
    followers = [
        threading.Thread(target=follow, args=(api, namespace, HANDLERS[kind][0], seen[kind], stop), daemon=True)
        for kind in counts
    ]
    for follower in followers:
        follower.start()
    metrics_port = free_port()
    started = time.monotonic()
    operator = start_operator(
        kubeconfig, [namespace], logs / f"{namespace}.log", with_parent=True, metrics_port=metrics_port
    )

    def handled() -> dict[str, float]:
        return {kind: handler_count(metrics_port, HANDLERS[kind][1]) for kind in counts}

    def all_seen() -> bool:
        return all(len(seen[kind].first) >= n for kind, n in counts.items())

    try:
        deadline = started + args.first_status_timeout
        while not all_seen() and time.monotonic() < deadline:
            time.sleep(0.2)
        last_first = max(max(s.first.values(), default=started) for s in seen.values())
        first_status = (last_first - started) if all_seen() else float("inf")
        cpu0, count0, window_start = cpu_seconds(operator.pid), handled(), time.monotonic()
        time.sleep(args.window if args.window > 0 else 2.5 * interval)
        cpu1, count1, window_end = cpu_seconds(operator.pid), handled(), time.monotonic()
        rss = rss_mb(operator.pid)
    finally:
        stop.set()
        stop_operator(operator)
        for follower in followers:
            follower.join(10)
    elapsed = window_end - window_start
    done = {kind: count1[kind] - count0[kind] for kind in counts}
    periods = []
    if "DriftPolicy" in counts:
        with seen["DriftPolicy"].lock:
            for times in seen["DriftPolicy"].checks.values():
                # From the second check on: the first period is half to one and a half intervals by design.
                periods += [b - a for a, b in itertools.pairwise(times[1:]) if window_start <= b <= window_end]
    waits = {"DriftPolicy": float(interval), "ABExperiment": EXPERIMENT_POLL}
    total = sum(done.values())
    return Result(
        counts=counts,
        interval=float(interval),
        cpu_per_min=(cpu1 - cpu0) / elapsed * 60,
        rss=rss,
        done=done,
        asked={kind: n * elapsed / waits[kind] for kind, n in counts.items()},
        p50=quantile(periods, 0.5),
        p95=quantile(periods, 0.95),
        first_status=first_status,
        per_check_ms=(cpu1 - cpu0) / total * 1000 if total else float("inf"),
    )


GOAL_CORES, GOAL_RSS, GOAL_PERIOD = 0.5, 400.0, 0.10


def report(results: list[Result]) -> None:
    print(
        f"{'objects':>38} | {'CPU s/min':>9} | {'RSS MB':>6} | {'checks done/asked':>24} | "
        f"{'period p50/p95 (interval)':>26} | {'N-th first status':>17} | {'CPU per check':>13}"
    )
    for r in results:
        if r.p50 == r.p50:
            period = f"{r.p50:.1f}/{r.p95:.1f} s ({r.interval:.0f} s)"
        elif "DriftPolicy" in r.counts:
            period = f"- ({r.interval:.0f} s)"
        else:
            period = f"({EXPERIMENT_POLL:.0f} s wait)"
        done = " + ".join(f"{r.done[kind]:.0f}/{r.asked[kind]:.0f}" for kind in r.counts)
        print(
            f"{r.name:>38} | {r.cpu_per_min:9.2f} | {r.rss:6.0f} | {done:>24} | {period:>26} | "
            f"{r.first_status:15.1f} s | {r.per_check_ms:10.2f} ms"
        )
    for kind in ("DriftPolicy", "ABExperiment"):
        of_kind = sorted((r for r in results if list(r.counts) == [kind]), key=lambda r: r.counts[kind])
        if len(of_kind) >= 2:
            low, high = of_kind[0], of_kind[-1]
            print(
                f"{kind}: CPU per check at {high.counts[kind]} / at {low.counts[kind]} = "
                f"{high.per_check_ms / low.per_check_ms:.2f} (goal <= 1.2)"
            )
    for r in results:
        if len(r.counts) < 2:
            continue
        cores = r.cpu_per_min / 60
        within = max(abs(r.p50 - r.interval), abs(r.p95 - r.interval)) / r.interval
        met = cores <= GOAL_CORES and r.rss <= GOAL_RSS and within <= GOAL_PERIOD
        print(
            f"{r.name} on one operator: {cores:.2f} core (goal <= {GOAL_CORES}), {r.rss:.0f} MB "
            f"(goal <= {GOAL_RSS:.0f}), check periods within {within:.1%} of {r.interval:.0f} s "
            f"(goal <= {GOAL_PERIOD:.0%}): {'met' if met else 'NOT met'}"
        )


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drift", type=sizes, default=sizes("100,300,1000"), help="DriftPolicy counts")
    parser.add_argument("--experiments", type=sizes, default=sizes("100,300,1000"), help="ABExperiment counts")
    parser.add_argument("--interval", type=int, default=30, help="DriftPolicy interval in seconds (%(default)s)")
    parser.add_argument(
        "--together",
        type=sizes,
        default=sizes("1000"),
        help="N DriftPolicies and N ABExperiments on one operator, the goal case (%(default)s; '' for none)",
    )
    parser.add_argument(
        "--together-interval", type=int, default=300, help="their DriftPolicies' interval, seconds (%(default)s)"
    )
    parser.add_argument(
        "--window", type=float, default=120.0, help="measured seconds per case (%(default)s; 0: 2.5 intervals)"
    )
    parser.add_argument(
        "--together-window", type=float, default=0.0, help="measured seconds of a together case (0: 2.5 intervals)"
    )
    parser.add_argument("--first-status-timeout", type=float, default=300.0, help="seconds (%(default)s)")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), StubPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prometheus = f"http://127.0.0.1:{server.server_address[1]}"
    cases: list[tuple[dict[str, int], int, float]] = [
        ({"DriftPolicy": n}, args.interval, args.window) for n in args.drift
    ]
    cases += [({"ABExperiment": n}, args.interval, args.window) for n in args.experiments]
    cases += [
        ({"DriftPolicy": n, "ABExperiment": n}, args.together_interval, args.together_window) for n in args.together
    ]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="relearn-scale-") as tmp:
        directory = Path(tmp)
        state = control.up(directory / "sandbox", ["--no-prometheus"], with_parent=True)
        try:
            kubeconfig = Path(state["kubeconfig"])
            api = config.new_client_from_config(config_file=str(kubeconfig))
            install_crds(api)
            for counts, interval, window in cases:
                args.window = window
                result = run_case(api, kubeconfig, counts, interval, prometheus, args, directory)
                results.append(result)
                print(f"done: {result.name}", file=sys.stderr, flush=True)
        finally:
            control.down(directory / "sandbox")
            server.shutdown()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
