"""A model server and a load generator for the experiment tests.

The server (a local process per pod) answers ``/predict`` and ``/feedback``
like the reference server, but its correctness is a coin with the
accuracy its version has in ``ACCURACY`` (JSON ``{"1.0.0": 0.85, ...}``), so
the arms' true success rates are known. ``POST /fault`` makes every request
fail with 500 (for rollback tests). It exports the metric contract.

The load generator (a separate process, so the sandbox's gateway in the test
process keeps its CPU) posts labelled feedback through the gateway and
counts which backend answered (``X-Relearn-Backend``). The paired load
(:func:`paired_load`) sends requests with an ``id`` and then their label with
the answer the client got; for those the server's correctness is a function
of the id (``PAIR_OFFSET`` shifts a version's region), so a shadow stage's
paired counts have known discordant rates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from relearn_sandbox.kubelet import pod_url
from relearn_sandbox.manifests import served_model
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, wait_for

SERVER = """
import hashlib, http.server, json, os, random, threading
from prometheus_client import generate_latest
from relearn.serving import ModelMetrics, NumericFeature

import time
time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))  # a slow-starting model
version = os.environ["RELEARN_MODEL_VERSION"]
accuracy = json.loads(os.environ["ACCURACY"])[version]
offset = json.loads(os.environ.get("PAIR_OFFSET") or "{}").get(version, 0.0)
metrics = ModelMetrics(os.environ["RELEARN_MODEL"], version, [NumericFeature("length", [5.0, 10.0, 20.0])])
rng, lock, fault = random.Random(), threading.Lock(), threading.Event()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/metrics":
            data = generate_latest()
            self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
            self.wfile.write(data)
        else:
            self.reply(200, {"version": version})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        if isinstance(request, dict) and isinstance(request.get("id"), str):
            return self.paired(request)
        if self.path == "/fault":
            fault.set()
            return self.reply(200, {"fault": True})
        with lock:
            with metrics.time_request():
                if fault.is_set():
                    metrics.error()
                    return self.reply(500, {"error": "fault injected"})
                metrics.observe({"length": 7.0}, prediction="a", confidence=0.9)
                if self.path == "/feedback":
                    metrics.feedback(correct=rng.random() < accuracy)
        self.reply(200, {"version": version})

    def paired(self, request):
        # Requests with an "id" (the paired load): whether this version is right on a request is a
        # function of the id, the same for every copy, so both versions are scored on the same
        # requests: right when (u - offset) mod 1 < accuracy, u uniform from the id.
        u = int(hashlib.sha256(request["id"].encode()).hexdigest()[:12], 16) / 16**12
        right = (u - offset) % 1.0 < accuracy
        prediction = "a" if right else "b"
        with lock, metrics.time_request():
            metrics.observe({"length": 7.0}, prediction=prediction, confidence=0.9)
            if self.path == "/feedback":
                metrics.feedback(correct=right)
                served = request.get("served") or {}
                if served.get("version") not in (None, version):
                    metrics.paired_feedback(served["version"], served.get("prediction") == "a", right)
        self.reply(200, {"version": version, "prediction": prediction})

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

LOAD = """
import collections, http.client, json, sys, threading, time
gateway, host, total, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
address = gateway.split("//", 1)[1]
counts, statuses, lock = collections.Counter(), collections.Counter(), threading.Lock()
deadline = time.monotonic() + seconds
sent = [0]

def worker():
    connection = http.client.HTTPConnection(address, timeout=10)
    while time.monotonic() < deadline:
        with lock:
            if total and sent[0] >= total:
                return
            sent[0] += 1
        try:
            connection.request("POST", "/feedback", body=b'{"input": "x", "label": "a"}',
                               headers={"Host": host, "Content-Type": "application/json"})
            response = connection.getresponse(); response.read()
            with lock:
                counts[response.getheader("X-Relearn-Backend", "none")] += 1
                statuses[response.status] += 1
        except OSError:
            connection.close(); connection = http.client.HTTPConnection(address, timeout=10); time.sleep(0.05)

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"backends": counts, "statuses": statuses}))
"""


PAIRED_LOAD = """
import collections, http.client, json, sys, threading, time, uuid
gateway, host, total, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
address = gateway.split("//", 1)[1]
counts, backends, lock, sent = collections.Counter(), collections.Counter(), threading.Lock(), [0]
deadline = time.monotonic() + seconds

def post(connection, path, body):
    headers = {"Host": host, "Content-Type": "application/json"}
    connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    response = connection.getresponse()
    return response, json.loads(response.read() or b"{}")

def worker():
    connection = http.client.HTTPConnection(address, timeout=10)
    while time.monotonic() < deadline:
        with lock:
            if total and sent[0] >= total:
                return
            sent[0] += 1
        try:
            request = {"id": uuid.uuid4().hex, "input": "x"}
            response, answer = post(connection, "/predict", request)
            # the label comes later, with what the client was served
            post(connection, "/feedback", {**request, "label": "a", "served": answer})
            with lock:
                counts[answer.get("version", "none")] += 1
                backends[response.getheader("X-Relearn-Backend", "none")] += 1
        except (OSError, ValueError):
            connection.close(); connection = http.client.HTTPConnection(address, timeout=10); time.sleep(0.05)

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"versions": counts, "backends": backends}))
"""


STICKY_LOAD = """
import http.client, json, sys
gateway, host, clients, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
address = gateway.split("//", 1)[1]
seen = []
for _ in range(clients):
    cookies, versions = {}, []  # one browser: it sends back the cookies it was given
    connection = http.client.HTTPConnection(address, timeout=10)
    for _ in range(requests):
        headers = {"Host": host}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        versions.append(json.loads(response.read())["version"])
        for value in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = value.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
    seen.append(versions)
print(json.dumps(seen))
"""


def sticky_load(gateway: str, host: str, *, clients: int, requests: int) -> list[list[str]]:
    """Each client's versions, in order, for ``requests`` GETs from ``clients`` cookie-keeping clients."""
    out = subprocess.run(
        [sys.executable, "-c", STICKY_LOAD, gateway, host, str(clients), str(requests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    result: list[list[str]] = json.loads(out)
    return result


def paired_load(gateway: str, host: str, *, requests: int = 0, seconds: float = 120) -> subprocess.Popen[str]:
    """Requests each followed by its label (with the answer the client got), as ``load`` does otherwise."""
    return subprocess.Popen(
        [sys.executable, "-c", PAIRED_LOAD, gateway, host, str(requests), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def serving(
    model: str, accuracy: dict[str, float], replicas: int = 1, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The champion (1.0.0) Deployment, its Service (not pinned to a version) and an HTTPRoute."""
    server = {
        "name": "server",
        "image": "example/ab-server:1.0.0",
        "command": [sys.executable, "-c", SERVER],
        "env": [
            {"name": "RELEARN_MODEL", "value": model},
            {"name": "RELEARN_MODEL_VERSION", "value": "1.0.0"},
            {"name": "ACCURACY", "value": json.dumps(accuracy)},
            *({"name": k, "value": v} for k, v in (env or {}).items()),
        ],
    }
    return served_model(model, server, host=f"{model}.test", replicas=replicas)


def load(gateway: str, host: str, *, requests: int = 0, seconds: float = 120) -> subprocess.Popen[str]:
    """Feedback through the gateway from a separate process: ``requests`` in all
    (0: until ``seconds`` pass or it is stopped). ``finish`` reads its counts."""
    return subprocess.Popen(
        [sys.executable, "-c", LOAD, gateway, host, str(requests), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], stop: bool = False, timeout: float = 120) -> dict[str, Any]:
    if stop:
        process.terminate()
        process.wait(10)
        return {}
    out, _ = process.communicate(timeout=timeout)
    result: dict[str, Any] = json.loads(out)
    return result


# -- experiment tests' shared parts ------------------------------------------------

GROUP, VERSION = "relearn.dev", "v1alpha1"
MODEL = "ranker"


def versions(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": f"{MODEL}-{v}", "namespace": namespace},
            "spec": {
                "model": MODEL,
                "version": v,
                "baseModel": {"uri": "/m"},
                # The challenger's adapter (ab_server serves none; the operator tests none without a sha256).
                **(
                    {"declaredChampion": True}
                    if v == "1.0.0"
                    else {"adapter": {"uri": f"/adapters/{v}", "sha256": "a" * 64}}
                ),
            },
        }
        for v in ("1.0.0", "1.1.0")
    ]


def experiment(prometheus: str, **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ABExperiment",
        "metadata": {"name": f"{MODEL}-1.1.0"},
        "spec": {
            "model": MODEL,
            "challenger": "1.1.0",
            "workload": {"name": MODEL},
            "prometheus": {"url": prometheus, "timeout": "2s"},
            "traffic": {"weight": 40},
            "analysis": {"interval": "2s", "minSamplesPerArm": 1000, **analysis},
        },
    }


def experiments(
    custom: client.CustomObjectsApi, namespace: str, predicate: Any, timeout: float = 120
) -> dict[str, Any]:
    """The experiment once ``predicate`` holds; on a timeout, the error shows its last status."""
    try:
        return wait_for(
            custom.list_namespaced_custom_object,
            lambda a: a["metadata"]["name"] == f"{MODEL}-1.1.0" and predicate(a),
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="abexperiments",
            timeout=timeout,
        )
    except TimeoutError:
        last = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", f"{MODEL}-1.1.0")
        raise TimeoutError(f"experiment status after {timeout}s: {json.dumps(last.get('status'), indent=1)}") from None


def phase_of(custom: client.CustomObjectsApi, namespace: str, version: str) -> str:
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-{version}")
    return str((mv.get("status") or {}).get("phase"))


def feedback_counters(core: client.CoreV1Api, namespace: str, version: str) -> tuple[float, float]:
    """(correct, total) feedback as the version's server counts it."""
    pod = core.list_namespaced_pod(namespace, label_selector=f"relearn.dev/version={version}").items[0]
    url = pod_url(pod.metadata.annotations)
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    counts = {"correct": 0.0, "incorrect": 0.0}
    for line in text.splitlines():
        if line.startswith("relearn_model_feedback_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts["correct"], counts["correct"] + counts["incorrect"]


def relearn(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relearn", *args, f"--kubeconfig={control_plane.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def deleted(custom: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 60) -> None:
    """Delete an experiment and return once it is gone (its finalizer done)."""
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", name)
    stream = watch.Watch()
    try:
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "abexperiments",
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=int(timeout),
        ):
            if event["type"] == "DELETED" and event["raw_object"]["metadata"]["name"] == name:
                return
    finally:
        stream.stop()
    raise TimeoutError(f"ABExperiment {name} still exists after {timeout}s")


@dataclass
class Served:
    """A served model (1.0.0 champion, 1.1.0 registered) in ``namespace``, and the operator for it."""

    namespace: str
    kubeconfig: Path
    log: Path
    operator: subprocess.Popen[bytes]

    def restart_operator(self) -> None:
        """Stop the operator (SIGTERM, as a rolling update does) and start another."""
        assert stop_operator(self.operator) == 0, self.log.read_text()
        self.operator = start_operator(self.kubeconfig, [self.namespace], self.log)
