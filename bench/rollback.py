"""Time to roll back a failing champion, with the default health-check settings.

    .venv/bin/python bench/rollback.py [--runs 1]

In the sandbox (real Prometheus scraping every 1 s, the operator as its own
process, live traffic through the gateway): an experiment promotes a better
challenger, then the new champion's server is switched to fail every request.
Measured per run:

- detection to revert: from the first scrape that shows failed requests (read
  back from Prometheus' own samples) to the HTTPRoute sending 100% to the
  previous champion (watched on the API);
- the routing change itself: from the rollback decision in status to that route change.

Printed beside the original specification's target (5 minutes) and Flagger's
detection time (interval x threshold failed checks; its tutorials use
1m x 5). Relearn's defaults: rollback.interval 10s, failureThreshold 2,
checkWindow 1m. Target (issue 7): <= 30 s, the routing change <= 1 s.
Bounded: each run stops after 5 minutes at most.
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

from kubernetes import client, config, watch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ab_server import GROUP, MODEL, VERSION, experiment, finish, load, serving, versions
from relearn_sandbox.cluster import SandboxConfig, SandboxThread
from relearn_sandbox.kubelet import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import install_crds, wait_for

SPEC_TARGET_S = 300.0
FLAGGER_S = 60.0 * 5


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


def one_run(api: client.ApiClient, sandbox: Any, kubeconfig: Path, namespace: str, workdir: Path) -> dict[str, float]:
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
        body = experiment(sandbox.prometheus_url, minSamplesPerArm=200)  # rollback: every default
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    runs = []
    for number in range(args.runs):  # a fresh sandbox each run: no series left from the last one
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            thread = SandboxThread(SandboxConfig(workdir=workdir, prometheus=True, bookmark_interval=1.0))
            sandbox = thread.start()
            try:
                api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
                install_crds(api)
                runs.append(one_run(api, sandbox, sandbox.kubeconfig, f"bench-{number}", workdir))
                print(f"run {number + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), flush=True)
            finally:
                thread.stop()
    detect = statistics.median(r["detect_to_revert"] for r in runs)
    routing = statistics.median(r["routing_change"] for r in runs)
    print(f"runs: {args.runs} (median)")
    print(f"first failing scrape -> traffic reverted:  {detect:6.1f} s   (target <= 30 s)")
    print(f"rollback decision -> route changed:        {routing:6.2f} s   (target <= 1 s)")
    print(f"original specification's target:          {SPEC_TARGET_S:6.0f} s   (ratio {SPEC_TARGET_S / detect:.0f}x)")
    print(f"Flagger, interval 1m x threshold 5:        {FLAGGER_S:6.0f} s   (ratio {FLAGGER_S / detect:.0f}x)")
    print("Relearn defaults: rollback.interval 10s x failureThreshold 2, checkWindow 1m; previous champion kept warm")


if __name__ == "__main__":
    main()
