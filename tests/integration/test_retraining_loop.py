"""Retraining end to end in the sandbox: drift triggers exactly one Job (also
across an operator restart), the Job runs the real trainer as a process on a
tiny model, and a ModelVersion with metrics and lineage appears with an
ABExperiment from the policy's template. A Job that fails leaves its reason
in status and no ModelVersion.

Sandbox-only: the trainer and the model server are local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from model_server import baseline_features, model_server
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, wait_for
from relearn_trainer import synthetic

GROUP, VERSION = "relearn.dev", "v1alpha1"
TRAINER = "ghcr.io/relearn-dev/relearn-trainer:0.1.0"


def policy(name: str, prometheus_url: str, dataset: Path, output: Path) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftPolicy",
        "metadata": {"name": name},
        "spec": {
            "model": "documents",
            "prometheus": {"url": prometheus_url, "timeout": "2s"},
            "interval": "2s",
            "window": "15s",
            "features": [{"name": "amount"}, {"name": "channel", "type": "categorical"}],
            "thresholds": {"pValue": 0.001, "minSamples": 500},
            "trigger": {"consecutiveChecks": 1, "cooldown": "1h"},
            "retraining": {
                "image": TRAINER,
                "dataset": {"uri": str(dataset)},
                "output": {"uri": str(output)},
                "backoffLimit": 0,
                "lora": {"targetModules": ["query", "value"], "epochs": 8, "learningRate": 0.005},
            },
            "experiment": {"workload": {"name": "documents"}, "traffic": {"weight": 20}},
        },
    }


@pytest.fixture
def world(
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    tiny_champion: Path,
) -> Iterator[dict[str, Any]]:
    base, _ = synthetic.workspace(tmp_path, trained=tiny_champion)
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, model_server("documents", {"SHIFT": "3"}))
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelversions",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": "documents-1.0.0"},
            "spec": {
                "model": "documents",
                "version": "1.0.0",
                "declaredChampion": True,
                "baseModel": {"uri": str(base)},
                "metrics": {"accuracy": 0.9, "samples": 1000},
                "baseline": {"features": baseline_features()},
            },
        },
    )
    log = tmp_path / "operator.log"
    state = {
        "namespace": namespace,
        "operator": start_operator(control_plane.kubeconfig, [namespace], log),
        "prometheus": prometheus_url,
        "tmp": tmp_path,
        "log": log,
    }
    yield state
    assert stop_operator(state["operator"]) == 0, log.read_text()


def retraining_of(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    outcome: str | tuple[str, ...],
    timeout: float = 120,
) -> dict[str, Any]:
    """The policy once its last retraining's outcome is ``outcome`` (or one of them)."""
    wanted = (outcome,) if isinstance(outcome, str) else outcome
    return wait_for(
        custom.list_namespaced_custom_object,
        lambda p: (
            p["metadata"]["name"] == name and (p.get("status", {}).get("lastRetraining") or {}).get("outcome") in wanted
        ),
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural="driftpolicies",
        timeout=timeout,
    )


def test_drift_retrains_once_and_registers_the_new_version(
    world: dict[str, Any], api_client: client.ApiClient, control_plane: ControlPlane
) -> None:
    custom, batch, core = (
        client.CustomObjectsApi(api_client),
        client.BatchV1Api(api_client),
        client.CoreV1Api(api_client),
    )
    namespace, tmp = world["namespace"], world["tmp"]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "driftpolicies", policy("documents", world["prometheus"], tmp / "data", tmp / "out")
    )
    running = retraining_of(custom, namespace, "documents", "Running")
    job_name = running["status"]["lastRetraining"]["job"]
    assert running["status"]["lastRetraining"]["modelVersion"] == "1.1.0"

    # The operator restarts while the Job runs: it picks the same Job up, never a second one.
    assert stop_operator(world["operator"]) == 0
    world["operator"] = start_operator(control_plane.kubeconfig, [namespace], world["log"])
    done = retraining_of(custom, namespace, "documents", "Succeeded")
    jobs = batch.list_namespaced_job(namespace, label_selector="relearn.dev/policy=documents").items
    assert [j.metadata.name for j in jobs] == [job_name]

    version = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "documents-1.1.0")
    spec = version["spec"]
    assert spec["metrics"]["accuracy"] >= spec["metrics"]["championAccuracy"] + 0.2
    assert spec["adapter"]["uri"] == str(tmp / "out" / "1.1.0")
    assert len(spec["adapter"]["sha256"]) == 64
    assert spec["source"]["job"] == job_name
    assert spec["source"]["parentVersion"] == "1.0.0"
    assert spec["source"]["triggerReasons"][0].startswith("amount: PSI")
    assert spec["baseModel"]["uri"] == str(tmp / "base")
    assert version["status"]["phase"] == "Registered"
    assert version["status"]["history"][0]["reason"] == "OfflineGate"
    assert done["status"]["lastRetraining"]["modelVersion"] == "1.1.0"

    experiment = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", "documents-1.1.0")
    assert (experiment["spec"]["champion"], experiment["spec"]["challenger"]) == ("1.0.0", "1.1.0")
    assert experiment["spec"]["traffic"]["weight"] == 20
    reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
    assert {"RetrainingRequested", "RetrainingStarted", "ModelVersionRegistered", "ExperimentCreated"} <= reasons


def test_a_failed_job_leaves_its_reason_and_no_model_version(
    world: dict[str, Any], api_client: client.ApiClient
) -> None:
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    namespace, tmp = world["namespace"], world["tmp"]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "driftpolicies", policy("broken", world["prometheus"], tmp / "no-data", tmp / "out")
    )
    failed = retraining_of(custom, namespace, "broken", "Failed")
    (condition,) = [c for c in failed["status"]["conditions"] if c["type"] == "Retraining"]
    assert (condition["status"], condition["reason"]) == ("False", "Failed")
    assert "DatasetError" in condition["message"]
    assert f"dataset not found: {tmp / 'no-data'}" in condition["message"]
    versions = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")["items"]
    assert [v["metadata"]["name"] for v in versions] == ["documents-1.0.0"]
    warning = wait_for(core.list_namespaced_event, lambda e: e["reason"] == "RetrainingFailed", namespace=namespace)
    assert warning["type"] == "Warning"
