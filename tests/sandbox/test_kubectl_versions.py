"""What a user of kubectl 1.30, 1.31, 1.32 or 1.33 sees against the sandbox:
create (1.32+ sends protobuf bodies), apply, server-side dry-run, sorted
events, scale, logs (of a Job, with --previous/--tail/--timestamps/--since/
--limit-bytes), describe, a custom resource before its CRD, and port-forward.

The versioned binaries are the Google Cloud SDK's ``kubectl.1.NN`` beside the
file ``kubectl`` resolves to; a missing one skips its tests with the path.
Each version gets one namespace for the module, so the whole file costs one
sandbox (the session's) and a few kubectl calls per test.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from relearn_sandbox.testing import ControlPlane, wait_for

VERSIONS = ("1.30", "1.31", "1.32", "1.33")
RFC3339_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")


def kubectl_directory() -> Path | None:
    found = shutil.which("kubectl")
    return Path(os.path.realpath(found)).parent if found else None


@dataclass
class Kubectl:
    """One kubectl release, against the sandbox, in its own namespace."""

    version: str
    binary: Path
    kubeconfig: Path
    cache: Path
    namespace: str

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> Any:
        command = [str(self.binary), f"--cache-dir={self.cache}", "-n", self.namespace, *args]
        result = subprocess.run(
            command,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            input=stdin,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {self.version} {' '.join(args)} failed:\n{result.stderr}")
        return result

    def apply(self, *documents: dict[str, Any]) -> str:
        return str(self("apply", "-f", "-", stdin=yaml.safe_dump_all(documents)).stdout)


@pytest.fixture(scope="module", params=VERSIONS)
def kubectl_at(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Kubectl]:
    version: str = request.param
    directory = kubectl_directory()
    if directory is None:
        pytest.skip("kubectl is not installed")
    binary = directory / f"kubectl.{version}"
    if not binary.exists():
        pytest.skip(f"kubectl {version} is not installed: {binary} is absent")
    namespace = f"kubectl-{version.replace('.', '-')}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        yield Kubectl(version, binary, control_plane.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"), namespace)
    finally:
        core.delete_namespace(namespace)


def deployment(name: str, command: list[str], port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "python:3.11", "command": command}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


# Binds where the sandbox says (its free port, on loopback); 8000 in a real pod.
HTTP_SERVER = [
    "sh",
    "-c",
    'exec python3 -m http.server "${PORT:-8000}" --bind "${RELEARN_BIND:-0.0.0.0}"',
]


@pytest.fixture(scope="module")
def web(kubectl_at: Kubectl) -> str:
    """A Deployment of one HTTP server pod behind a Service, rolled out."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    kubectl_at.apply(deployment("web", HTTP_SERVER, port=8000), service)
    kubectl_at("rollout", "status", "deployment/web", "--timeout=30s")
    kubectl_at("wait", "endpoints/web", "--for=jsonpath={.subsets[0].addresses[0].ip}", "--timeout=30s")
    return "web"


# -- create, apply, dry-run --------------------------------------------------------


def test_create_configmap_secret_namespace_and_job(kubectl_at: Kubectl) -> None:
    namespace = f"{kubectl_at.namespace}-made"
    for args, shown in (
        (("create", "configmap", "settings", "--from-literal=mode=fast"), "configmap/settings created"),
        (("create", "secret", "generic", "token", "--from-literal=value=s3cret"), "secret/token created"),
        (("create", "namespace", namespace), f"namespace/{namespace} created"),
        (("create", "job", "hello", "--image=busybox", "--", "echo", "hello"), "job.batch/hello created"),
    ):
        assert kubectl_at(*args).stdout.strip() == shown
    assert kubectl_at("get", "configmap", "settings", "-o", "jsonpath={.data.mode}").stdout == "fast"
    secret = kubectl_at("get", "secret", "token", "-o", "jsonpath={.data.value}").stdout
    assert base64.b64decode(secret) == b"s3cret"
    assert kubectl_at("get", "namespace", namespace, "-o", "jsonpath={.status.phase}").stdout == "Active"
    assert kubectl_at("get", "job", "hello", "-o", "jsonpath={.spec.template.spec.containers[0].command}").stdout == (
        '["echo","hello"]'
    )
    kubectl_at("delete", "namespace", namespace)


def test_apply_twice_is_unchanged_and_secret_string_data_becomes_data(kubectl_at: Kubectl) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prometheus-auth"},
        "stringData": {"password": "hunter2"},
    }
    assert kubectl_at.apply(secret).strip() == "secret/prometheus-auth created"
    data = kubectl_at("get", "secret", "prometheus-auth", "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(data) == b"hunter2"
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "twice"}, "data": {"k": "v"}}
    assert kubectl_at.apply(configmap).strip() == "configmap/twice created"
    assert kubectl_at.apply(configmap).strip() == "configmap/twice unchanged"


def test_server_dry_run_changes_nothing(kubectl_at: Kubectl) -> None:
    kubectl_at("create", "configmap", "keep", "--from-literal=k=v")
    deleted = kubectl_at("delete", "configmap", "keep", "--dry-run=server")
    assert deleted.stdout.strip() == 'configmap "keep" deleted (server dry run)'
    assert kubectl_at("get", "configmap", "keep", "-o", "name").stdout.strip() == "configmap/keep"
    created = kubectl_at("create", "configmap", "ghost", "--from-literal=k=v", "--dry-run=server")
    assert created.stdout.strip() == "configmap/ghost created (server dry run)"
    assert kubectl_at("get", "configmap", "ghost", check=False).returncode != 0
    kubectl_at("label", "configmap", "keep", "tier=gold", "--dry-run=server")
    assert kubectl_at("get", "configmap", "keep", "-o", "jsonpath={.metadata.labels}").stdout == ""


# -- get --sort-by, scale ----------------------------------------------------------


def event(name: str, reason: str, last: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": {"kind": "Pod", "name": "p", "apiVersion": "v1"},
        "reason": reason,
        "message": f"{reason} happened",
        "type": "Normal",
        "firstTimestamp": last,
        "lastTimestamp": last,
    }


def test_get_events_sorted_by_last_timestamp(kubectl_at: Kubectl) -> None:
    kubectl_at.apply(
        event("b-late", "Late", "2026-01-03T00:00:00Z"),
        event("a-early", "Early", "2026-01-01T00:00:00Z"),
        event("c-middle", "Middle", "2026-01-02T00:00:00Z"),
    )
    lines = kubectl_at("get", "events", "--sort-by=.lastTimestamp").stdout.splitlines()
    assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert [line.split()[2] for line in lines[1:]] == ["Early", "Middle", "Late"]


def test_scale_a_deployment(kubectl_at: Kubectl) -> None:
    kubectl_at("create", "deployment", "scaled", "--image=busybox")
    assert kubectl_at("scale", "deployment/scaled", "--replicas=3").stdout.strip() == "deployment.apps/scaled scaled"
    assert kubectl_at("get", "deployment", "scaled", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    dry = kubectl_at("scale", "deployment/scaled", "--replicas=5", "--dry-run=server")
    assert dry.stdout.strip() == "deployment.apps/scaled scaled (server dry run)"
    assert kubectl_at("get", "deployment", "scaled", "-o", "jsonpath={.spec.replicas}").stdout == "3"


# -- logs --------------------------------------------------------------------------


def test_logs_of_a_job_are_its_own_pods(kubectl_at: Kubectl) -> None:
    for name in ("first", "second"):
        kubectl_at("create", "job", name, "--image=busybox", "--", "echo", f"from {name}")
    for name in ("first", "second"):
        kubectl_at("wait", f"job/{name}", "--for=condition=complete", "--timeout=30s")
        assert kubectl_at("logs", f"job/{name}").stdout == f"from {name}\n"


def test_logs_of_a_container_that_cannot_start_say_why(kubectl_at: Kubectl, sandbox: Any) -> None:
    kubectl_at("create", "deployment", "idle", "--image=busybox")  # no command: no entrypoint in the sandbox
    kubectl_at(
        "wait",
        "pods",
        "-l",
        "app=idle",
        "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImageNotEmulated",
        "--timeout=30s",
    )
    result = kubectl_at("logs", "deployment/idle", check=False)
    assert result.returncode != 0
    assert 'container "busybox" in pod "idle-' in result.stderr
    assert "is waiting to start: ImageNotEmulated: image 'busybox' has no entrypoint" in result.stderr


CRASHER = (
    "import os, time\n"
    "runs = len(open('runs').read()) if os.path.exists('runs') else 0\n"
    "open('runs', 'a').write('x')\n"
    "print(f'run {runs + 1}', flush=True)\n"
    "print('line 2', flush=True)\n"
    "print('line 3', flush=True)\n"
    "time.sleep(60 if runs else 0)\n"
    "raise SystemExit(1)\n"
)


def test_logs_previous_tail_timestamps_since_and_limit(kubectl_at: Kubectl, api_client: client.ApiClient) -> None:
    """The first run prints three lines and crashes; the second prints and stays up."""
    kubectl_at.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crasher"},
            "spec": {
                # The run count survives restarts in an emptyDir (in the sandbox: the container's own folder).
                "volumes": [{"name": "state", "emptyDir": {}}],
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11",
                        "command": ["python3", "-c", CRASHER],
                        "workingDir": "/state",
                        "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                    }
                ],
            },
        }
    )

    def second_run_started(pod: dict[str, Any]) -> bool:
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return (
            pod["metadata"]["name"] == "crasher"
            and statuses[0].get("restartCount") == 1
            and ("running" in statuses[0].get("state", {}))
        )

    wait_for(client.CoreV1Api(api_client).list_namespaced_pod, second_run_started, namespace=kubectl_at.namespace)
    # -f with --limit-bytes returns as soon as the second run has said "run 2".
    assert kubectl_at("logs", "crasher", "-f", "--limit-bytes=6").stdout == "run 2\n"
    assert kubectl_at("logs", "crasher", "--previous").stdout == "run 1\nline 2\nline 3\n"
    assert kubectl_at("logs", "crasher", "--previous", "--tail=1").stdout == "line 3\n"
    assert kubectl_at("logs", "crasher", "--previous", "--limit-bytes=3").stdout == "run"
    stamped = kubectl_at("logs", "crasher", "--previous", "--timestamps").stdout.encode().splitlines()
    assert len(stamped) == 3
    assert all(RFC3339_LINE.match(line) for line in stamped)
    assert kubectl_at("logs", "crasher", "--previous", "--since=1h").stdout == "run 1\nline 2\nline 3\n"
    assert kubectl_at("logs", "crasher", "--previous", "--since-time=2100-01-01T00:00:00Z").stdout == ""


# -- describe, CRD-less custom resources, port-forward -------------------------------


def test_describe_service_shows_its_endpoints(kubectl_at: Kubectl, web: str) -> None:
    described = kubectl_at("describe", "service", web).stdout
    endpoints = next(line for line in described.splitlines() if line.startswith("Endpoints:"))
    assert re.fullmatch(r"Endpoints:\s+[\d.]+:\d+", endpoints), described


def test_custom_resource_before_its_crd_says_no_matches_for_kind(kubectl_at: Kubectl) -> None:
    widget = {"apiVersion": "widgets.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    result = kubectl_at("apply", "-f", "-", stdin=yaml.safe_dump(widget), check=False)
    assert result.returncode != 0
    assert 'no matches for kind "Widget" in version "widgets.example.com/v1"' in result.stderr
    assert "ensure CRDs are installed first" in result.stderr


def test_port_forward_names_the_pods_local_address(kubectl_at: Kubectl, web: str, sandbox: Any) -> None:
    result = kubectl_at("port-forward", f"deployment/{web}", "18080:8000", check=False, timeout=30)
    assert result.returncode != 0
    pod = kubectl_at("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}").stdout
    assert re.search(
        rf"pod {pod} is a process on this machine; its container port 8000 is 127\.0\.0\.1:\d+: connect there directly",
        result.stderr,
    ), result.stderr
