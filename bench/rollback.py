"""Time to roll back a failing champion, and false rollbacks of healthy ones:
the sequential health checks (the defaults) against today's threshold rule.

    .venv/bin/python bench/rollback.py [--runs 1] [--champions 200] [--skip-sandbox]

In the sandbox (real Prometheus scraping every 1 s, the operator as its own
process, live traffic through the gateway): an experiment promotes a better
challenger, then the new champion's server is switched to fail every request.
Measured per run:

- detection to revert: from the first scrape that shows failed requests (read
  back from Prometheus' own samples) to the HTTPRoute sending 100% to the
  previous champion (watched on the API);
- the routing change itself: from the rollback decision in status to that route change.

Each run is done twice in the same invocation: with the defaults
(``rollback.method: sequential``, ``bakeInterval`` 2s: an always-valid test on
the counters' growth since the previous look, decisive at the first look with
the evidence) and with today's threshold rule (``method: threshold``,
``bakeInterval`` = ``interval`` 10s, failureThreshold 2, checkWindow 1m).
Goal (issue 18): <= 5 s under total failure at the defaults.

Then false rollbacks, by simulation of the core verdicts
(:func:`relearn.core.health.sequential_check` and
:func:`relearn.core.health.judge_check` + :func:`relearn.core.health.assess`):
``--champions`` healthy champions, each watched for ``--minutes`` at
``--rps`` requests per second with an error rate of 0.9 x the max (0.045
against 0.05), Poisson traffic; each rule looks at its default cadence. The
share of champions falsely rolled back is printed for both with its Monte
Carlo standard error, and the healthy looks behind it.

Printed beside the original specification's target (5 minutes) and Flagger's
detection time (interval x threshold failed checks; its tutorials use 1m x 5).
Bounded: each sandbox run stops after 5 minutes at most.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes import client, config, watch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ab_server import GROUP, MODEL, VERSION, experiment, finish, load, serving, versions
from relearn.core import health
from relearn_sandbox.cluster import SandboxConfig, SandboxThread
from relearn_sandbox.ports import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import install_crds, wait_for

SPEC_TARGET_S = 300.0
FLAGGER_S = 60.0 * 5
GOAL_S = 5.0
# The two rules compared: the defaults, and today's rule as it was before issue 18.
RULES: dict[str, dict[str, str]] = {
    "sequential (defaults)": {},
    "threshold (today's rule)": {"method": "threshold", "bakeInterval": "10s"},
}


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def first_failing_scrape(prometheus: str, after: float) -> float:
    """Timestamp of the first sample of the champion's error counter that rose after ``after``."""
    query = f'relearn_model_errors_total{{model="{MODEL}",version="1.1.0"}}[5m]'
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    data = json.loads(urllib.request.urlopen(url, timeout=10).read())["data"]["result"]
    previous = None
    for series in data:
        for stamp, value in series["values"]:
            if previous is not None and float(value) > previous and float(stamp) >= after:
                return float(stamp)
            previous = float(value)
    raise RuntimeError("no failing scrape found")


def one_run(
    api: client.ApiClient, sandbox: Any, kubeconfig: Path, namespace: str, workdir: Path, rollback: dict[str, str]
) -> dict[str, float]:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    deployment, service, route = serving(MODEL, {"1.0.0": 0.8, "1.1.0": 0.97})
    apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    for body in versions(namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    operator = start_operator(kubeconfig, [namespace], workdir / f"{namespace}-operator.log")
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=300)
    try:
        body = experiment(sandbox.prometheus_url, minSamplesPerArm=200)
        body["spec"]["rollback"] = dict(rollback)  # every other rollback setting at its default
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)

        def abx(predicate: Any, timeout: float = 180) -> dict[str, Any]:
            return wait_for(
                custom.list_namespaced_custom_object,
                predicate,
                group=GROUP,
                version=VERSION,
                namespace=namespace,
                plural="abexperiments",
                timeout=timeout,
            )

        abx(lambda a: (a.get("status") or {}).get("health", {}).get("lastCheckTime") is not None)
        pod = core.list_namespaced_pod(namespace, label_selector="relearn.dev/version=1.1.0").items[0]
        url = pod_url(pod.metadata.annotations)
        listing = custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes")
        injected = time.time()
        urllib.request.urlopen(urllib.request.Request(f"{url}/fault", method="POST"), timeout=5)
        stream = watch.Watch()
        reverted = None
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            "gateway.networking.k8s.io",
            "v1",
            namespace,
            "httproutes",
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=120,
        ):
            refs = event["raw_object"]["spec"]["rules"][0]["backendRefs"]
            if any(r["name"] == MODEL and r.get("weight") == 100 for r in refs):
                reverted = time.time()
                stream.stop()
        if reverted is None:
            raise RuntimeError("traffic was not reverted within 120 s")
        rolled = abx(lambda a: (a.get("status") or {}).get("phase") == "RolledBack", timeout=60)
        decided = parse_time(rolled["status"]["decision"]["time"])
        scrape = first_failing_scrape(sandbox.prometheus_url, injected)
        return {
            "detect_to_revert": reverted - scrape,
            "routing_change": reverted - decided,
            "fault_to_scrape": scrape - injected,
        }
    finally:
        finish(generator, stop=True)
        stop_operator(operator)


def time_to_revert(runs: int) -> dict[str, list[dict[str, float]]]:
    """Both rules, ``runs`` each, alternating, a fresh sandbox each run (no series left from the last one)."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in RULES}
    for number in range(runs):
        for index, (name, rollback) in enumerate(RULES.items()):
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                thread = SandboxThread(SandboxConfig(workdir=workdir, prometheus=True, bookmark_interval=1.0))
                sandbox = thread.start()
                try:
                    api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
                    install_crds(api)
                    run = one_run(api, sandbox, sandbox.kubeconfig, f"bench-{number}-{index}", workdir, rollback)
                    results[name].append(run)
                    print(
                        f"{name}, run {number + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.items()), flush=True
                    )
                finally:
                    thread.stop()
    return results


def false_rollbacks(
    rule: str, *, champions: int, minutes: float, rps: float, rate: float, seed: int
) -> tuple[float, float, int]:
    """Share of healthy champions rolled back (with its Monte Carlo SE) and the looks taken, for one rule,
    at the defaults: max 0.05, alpha 0.0001, bakeTime 10m at 2 s then 10 s (sequential); 10 s looks at the
    1m window's rate, failureThreshold 2 (threshold)."""
    rng = np.random.default_rng(seed)
    seconds = int(minutes * 60)
    limit, alpha, threshold, window, bake = 0.05, health.DEFAULT_ALPHA, 2, 60, 600
    rolled, looks = 0, 0
    for _ in range(champions):
        requests = rng.poisson(rps, seconds).astype(float)
        errors = rng.binomial(requests.astype(int), rate).astype(float)
        cum_requests, cum_errors = np.cumsum(requests), np.cumsum(errors)
        failures, state, rolled_back = 0, None, False
        if rule.startswith("sequential"):
            moments = [*range(2, min(bake, seconds), 2), *range(bake, seconds, 10)]
        else:
            moments = list(range(10, seconds, 10))
        for t in moments:
            looks += 1
            if rule.startswith("sequential"):
                result = health.sequential_check(
                    health.ERROR_RATE, health.Counts(cum_errors[t - 1], cum_requests[t - 1]), state, limit, alpha
                )
                state = result.sequential
            else:
                start = max(0, t - window)
                n = cum_requests[t - 1] - (cum_requests[start - 1] if start else 0.0)
                e = cum_errors[t - 1] - (cum_errors[start - 1] if start else 0.0)
                result = health.judge_check(health.ERROR_RATE, e / n if n > 0 else None, limit, False)
            verdict = health.assess([result], failures, threshold)
            failures = verdict.failures
            if verdict.roll_back:
                rolled_back = True
                break
        rolled += rolled_back
    share = rolled / champions
    return share, float(np.sqrt(share * (1 - share) / champions)), looks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="sandbox runs per rule")
    parser.add_argument("--skip-sandbox", action="store_true", help="only the false-rollback simulation")
    parser.add_argument("--champions", type=int, default=200, help="simulated healthy champions per rule")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long each is watched")
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    if not args.skip_sandbox:
        if shutil.which("prometheus") is None:
            raise SystemExit("prometheus is not installed (apt-get install prometheus)")
        results = time_to_revert(args.runs)
        print(f"\ntime to revert under total failure, median of {args.runs} run(s) per rule:")
        detects = {}
        for name, runs in results.items():
            detects[name] = statistics.median(r["detect_to_revert"] for r in runs)
            routing = statistics.median(r["routing_change"] for r in runs)
            print(
                f"  {name:26s} first failing scrape -> traffic reverted {detects[name]:6.1f} s, "
                f"decision -> route changed {routing:5.2f} s"
            )
        sequential, threshold = detects.values()
        print(
            f"  ratio threshold / sequential: {threshold / sequential:.1f}x   (goal <= {GOAL_S:.0f} s at the defaults)"
        )
        print(f"  original specification's target {SPEC_TARGET_S:.0f} s; Flagger 1m x 5 = {FLAGGER_S:.0f} s")
    print(
        f"\nfalse rollbacks of healthy champions: {args.champions} per rule, {args.minutes:g} min each, "
        f"{args.rps:g} req/s, error rate 0.045 (max 0.05), seed {args.seed}:"
    )
    for name in RULES:
        share, se, looks = false_rollbacks(
            name, champions=args.champions, minutes=args.minutes, rps=args.rps, rate=0.045, seed=args.seed
        )
        print(f"  {name:26s} {share:.3f} +- {se:.3f} of champions rolled back, over {looks} healthy looks")
        if share == 0:
            print(f"  {'':26s} (none in {args.champions}: below {3 / args.champions:.3f} at 95 %, the rule of three)")


if __name__ == "__main__":
    main()
