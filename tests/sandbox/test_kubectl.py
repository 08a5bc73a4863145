"""The real kubectl works against the control plane: apply, get with printer
columns, label selectors, describe, status patches, deletion with
finalizers, watches and logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from relearn_sandbox.testing import Kubectl

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "invoice-classifier"
RELEARN_EXAMPLES = ["modelversion-1.0.0.yaml", "modelversion-1.1.0.yaml", "driftpolicy.yaml", "abexperiment.yaml"]


def crown(kubectl: Kubectl, namespace: str) -> None:
    """Set the 1.0.0 ModelVersion's phase through the status subresource, as the operator would."""
    kubectl(
        "patch",
        "mv",
        "invoice-classifier-1.0.0",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Champion"}}',
    )


@pytest.fixture
def applied(kubectl: Kubectl, namespace: str, relearn_crds: None) -> str:
    for name in RELEARN_EXAMPLES:
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))
    return namespace


def test_apply_crds_and_examples(kubectl: Kubectl, namespace: str) -> None:
    crds = kubectl("apply", "-f", str(REPO / "crds"))
    assert "modelversions.relearn.dev" in crds.stdout
    applied = kubectl("apply", "-n", namespace, "-k", str(EXAMPLES))
    for line in (
        "modelversion.relearn.dev/invoice-classifier-1.0.0",
        "driftpolicy.relearn.dev/invoice-classifier",
        "abexperiment.relearn.dev/invoice-classifier-1.1.0",
        "deployment.apps/invoice-classifier",
        "httproute.gateway.networking.k8s.io/invoice-classifier",
    ):
        assert line in applied.stdout
    again = kubectl("apply", "-n", namespace, "-k", str(EXAMPLES))
    assert "modelversion.relearn.dev/invoice-classifier-1.0.0 unchanged" in again.stdout


def test_get_shows_printer_columns(kubectl: Kubectl, applied: str) -> None:
    out = kubectl("get", "mv,dp,abx", "-n", applied).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "VERSION", "PHASE", "ACCURACY", "READY", "AGE"]
    mv = next(line for line in lines if "invoice-classifier-1.0.0" in line).split()
    assert mv[1:4] == ["invoice-classifier", "1.0.0", "0.87"]
    assert any(line.split()[:4] == ["NAME", "MODEL", "DRIFTED", "REASON"] for line in lines)
    assert any(line.split()[:5] == ["NAME", "MODEL", "CHAMPION", "CHALLENGER", "WEIGHT"] for line in lines)
    category = kubectl("get", "relearn", "-n", applied, "-o", "name").stdout.split()
    assert len(category) == 4


def test_get_by_label(kubectl: Kubectl, applied: str) -> None:
    kubectl("label", "mv", "invoice-classifier-1.1.0", "-n", applied, "stage=candidate")
    out = kubectl(
        "get", "mv", "-n", applied, "-l", "relearn.dev/model=invoice-classifier,stage=candidate", "-o", "name"
    ).stdout.split()
    assert out == ["modelversion.relearn.dev/invoice-classifier-1.1.0"]


def test_describe_shows_spec(kubectl: Kubectl, applied: str) -> None:
    out = kubectl("describe", "dp", "invoice-classifier", "-n", applied).stdout
    assert "Kind:         DriftPolicy" in out
    assert "Consecutive Checks:" in out


def test_patch_status_subresource(kubectl: Kubectl, applied: str) -> None:
    crown(kubectl, applied)
    phase = kubectl("get", "mv", "invoice-classifier-1.0.0", "-n", applied, "-o", "jsonpath={.status.phase}")
    assert phase.stdout == "Champion"


def test_invalid_cr_is_rejected_with_the_field_and_not_stored(
    kubectl: Kubectl, namespace: str, relearn_crds: None
) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(REPO / "tests/fixtures/broken/weight-150.yaml"), check=False)
    assert result.returncode != 0
    assert "spec.traffic.weight" in result.stderr
    assert kubectl("get", "abx", "-n", namespace, "-o", "name").stdout == ""


def test_delete_waits_for_finalizers(kubectl: Kubectl, applied: str, control_plane: Any) -> None:
    kubectl(
        "patch",
        "mv",
        "invoice-classifier-1.1.0",
        "-n",
        applied,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["test.relearn.dev/hold"]}}',
    )
    env_kubeconfig = {"KUBECONFIG": str(control_plane.kubeconfig), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    deleting = subprocess.Popen(
        ["kubectl", "delete", "mv", "invoice-classifier-1.1.0", "-n", applied, "--timeout=30s"],
        env=env_kubeconfig,
        stdout=subprocess.PIPE,
        text=True,
    )
    marked = kubectl(
        "wait",
        "mv/invoice-classifier-1.1.0",
        "-n",
        applied,
        "--for=jsonpath={.metadata.deletionTimestamp}",
        "--timeout=20s",
        check=False,
    )
    assert marked.returncode == 0, marked.stderr
    assert deleting.poll() is None, "kubectl delete returned while a finalizer held the object"
    kubectl(
        "patch",
        "mv",
        "invoice-classifier-1.1.0",
        "-n",
        applied,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    assert deleting.wait(timeout=30) == 0
    assert kubectl("get", "mv", "invoice-classifier-1.1.0", "-n", applied, check=False).returncode != 0


def test_get_watch_streams_a_change(kubectl: Kubectl, applied: str, control_plane: Any) -> None:
    env = {"KUBECONFIG": str(control_plane.kubeconfig), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    watching = subprocess.Popen(
        ["kubectl", "get", "mv", "-n", applied, "-w", "--output-watch-events", "--request-timeout=20s"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watching.stdout is not None
    try:
        header = watching.stdout.readline()
        assert header.split()[:3] == ["EVENT", "NAME", "MODEL"]
        for _ in range(2):  # the two listed versions
            assert watching.stdout.readline().split()[0] == "ADDED"
        crown(kubectl, applied)
        changed = watching.stdout.readline().split()
        assert changed[:2] == ["MODIFIED", "invoice-classifier-1.0.0"]
        assert "Champion" in changed
    finally:
        watching.terminate()
        watching.wait()


def test_logs_of_a_pod(kubectl: Kubectl, namespace: str, sandbox: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11",
                    "command": [sys.executable, "-c", "print('hello from the sandbox')"],
                }
            ],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
    kubectl("wait", "pod/talker", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "--timeout=30s")
    assert kubectl("logs", "talker", "-n", namespace).stdout == "hello from the sandbox\n"
