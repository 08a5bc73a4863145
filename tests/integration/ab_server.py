"""The experiment tests' served model and load, and their shared parts.

The server is :mod:`relearn_sandbox.servers.ab` (a local process per pod):
it answers ``/predict`` and ``/feedback`` like the reference server, with a
known accuracy per version (``ACCURACY``, JSON ``{"1.0.0": 0.85, ...}``),
``POST /fault`` for rollback tests, and paired scoring of requests with an
``id`` (``PAIR_OFFSET`` shifts a version's region) for the shadow stage. The
loads are :mod:`relearn_sandbox.servers.load` (a separate process, so the
sandbox's gateway in the test process keeps its CPU): labelled feedback
(:func:`load`), paired requests (:func:`paired_load`) and cookie-keeping
clients (:func:`sticky_load`).
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
from relearn_sandbox.manifests import served_model
from relearn_sandbox.ports import pod_url
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, wait_for

LOAD = [sys.executable, "-m", "relearn_sandbox.servers.load"]  # its modes: feedback, paired, sticky, paced


def sticky_load(gateway: str, host: str, *, clients: int, requests: int) -> list[list[str]]:
    """Each client's versions, in order, for ``requests`` GETs from ``clients`` cookie-keeping clients."""
    out = subprocess.run(
        [*LOAD, "sticky", gateway, host, str(clients), str(requests)],
        capture_output=True,
        text=True,
        timeout=600,  # one request after another: a loaded machine answers each slowly
        check=True,
    ).stdout
    result: list[list[str]] = json.loads(out)
    return result


def paired_load(gateway: str, host: str, *, requests: int = 0, seconds: float = 120) -> subprocess.Popen[str]:
    """Requests each followed by its label (with the answer the client got), as ``load`` does otherwise."""
    return subprocess.Popen(
        [*LOAD, "paired", gateway, host, str(requests), str(seconds)],
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
        "command": [sys.executable, "-m", "relearn_sandbox.servers.ab"],
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
        [*LOAD, "feedback", gateway, host, str(requests), str(seconds)], stdout=subprocess.PIPE, text=True
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


def started(
    custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any], *, stage: str | None = None
) -> dict[str, Any]:
    """Create the experiment ``body``; it once Progressing (or in ``stage``)."""
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)

    def there(experiment: dict[str, Any]) -> bool:
        status = experiment.get("status") or {}
        return bool(status.get("stage") == stage if stage else status.get("phase") == "Progressing")

    return experiments(custom, namespace, there)


def under_load(
    generator: subprocess.Popen[str], custom: client.CustomObjectsApi, namespace: str, phase: str, timeout: float
) -> dict[str, Any]:
    """The experiment once in ``phase`` while ``generator`` sends it traffic;
    the load stopped (and reaped) whatever happens."""
    try:
        return experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == phase, timeout)
    finally:
        finish(generator, stop=True)


def phase_of(custom: client.CustomObjectsApi, namespace: str, version: str) -> str:
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-{version}")
    return str((mv.get("status") or {}).get("phase"))


def recorded_champion(custom: client.CustomObjectsApi, namespace: str) -> tuple[str, int]:
    """(version, transitions) of the model's champion record, the one source of truth of its champion."""
    lease = custom.get_namespaced_custom_object(
        "coordination.k8s.io", "v1", namespace, "leases", f"relearn-champion-{MODEL}"
    )
    return str(lease["spec"]["holderIdentity"]), int(lease["spec"].get("leaseTransitions") or 0)


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
