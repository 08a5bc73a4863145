"""The loop part of ``relearn demo``: a tiny document classifier served by
the reference model server, live traffic with human corrections through the
gateway, drift injected (a supplier's new document template), the
DriftPolicy noticing, a LoRA Job retraining on the corrections, the new
ModelVersion registered, its ABExperiment on live traffic promoting it with
the lift and its interval, then a fault injected into the new champion and
the automatic rollback to the previous one.

Runs in the sandbox the demo started; needs the ``trainer`` extra (torch,
transformers, peft) to build the tiny model.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from relearn.sandbox.cluster import TRAINER_IMAGE
from relearn.sandbox.kubelet import pod_url
from relearn.sandbox.manifests import served_model
from relearn.sandbox.waiting import condition, wait_for
from relearn.serving import histogram_counts

GROUP, VERSION = "relearn.dev", "v1alpha1"
MODEL = "documents"
HOST = "documents.demo.local"
LENGTH_EDGES = [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]  # the reference server's `length` edges


def objects(workdir: Path, prometheus: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Kubernetes objects, Relearn objects) of the demo's model."""
    base, data, out = workdir / "model" / "base", workdir / "model" / "data", workdir / "model" / "adapters"
    env = {
        "RELEARN_MODEL": MODEL,
        "RELEARN_MODEL_VERSION": "1.0.0",
        "RELEARN_BASE_MODEL_URI": str(base),
        "RELEARN_DATASET_URI": str(data),
        "RELEARN_FAULT_INJECTION": "true",  # the rollback drill's fault switch (POST /admin/fault)
    }
    server = {
        "name": "server",
        "image": f"{TRAINER_IMAGE}:0.1.0",
        "args": ["serve"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    kubernetes_objects = served_model(MODEL, server, host=HOST)
    relearn_objects = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": f"{MODEL}-1.0.0"},
            "spec": {
                "model": MODEL,
                "version": "1.0.0",
                "declaredChampion": True,
                "baseModel": {"uri": str(base)},
                "metrics": {"accuracy": 0.95, "samples": 1000},
                "baseline": {
                    "features": [
                        {
                            "name": "length",
                            "type": "numeric",
                            "edges": LENGTH_EDGES,
                            "counts": histogram_counts(LENGTH_EDGES, [9.0] * 1000),
                        }
                    ]
                },
            },
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DriftPolicy",
            "metadata": {"name": MODEL},
            "spec": {
                "model": MODEL,
                "prometheus": {"url": prometheus, "timeout": "2s"},
                "interval": "3s",
                "window": "20s",
                "features": [{"name": "length"}],
                "accuracy": {"enabled": False},
                "thresholds": {"minSamples": 100, "pValue": 0.001},
                "trigger": {"consecutiveChecks": 2, "cooldown": "1h"},
                "retraining": {
                    "image": f"{TRAINER_IMAGE}:0.1.0",
                    "dataset": {"uri": str(data)},
                    "output": {"uri": str(out)},
                    "backoffLimit": 1,
                    "lora": {"targetModules": ["query", "value"], "epochs": 8, "learningRate": 0.005},
                },
                "experiment": {
                    "workload": {"name": MODEL},
                    "routing": {"provider": "gateway-api", "target": MODEL},
                    "traffic": {"weight": 50},
                    "analysis": {"interval": "2s", "minSamplesPerArm": 100},
                    "rollback": {"interval": "2s", "failureThreshold": 2, "checkWindow": "10s"},
                },
            },
        },
    ]
    return kubernetes_objects, relearn_objects


def build_champion(workdir: Path) -> None:
    """The champion 1.0.0's base model and an empty served-data folder, under ``workdir/model``."""
    from relearn_trainer import synthetic

    synthetic.build_tiny_model(workdir / "model" / "base", pretrain_on=synthetic.samples(400, seed=1))
    (workdir / "model" / "data").mkdir(parents=True, exist_ok=True)


def traffic_deployment(gateway: str, clean_seconds: float) -> dict[str, Any]:
    """Live traffic as a pod (``relearn_trainer traffic``): documents and human corrections through the
    gateway, unchanged wording for ``clean_seconds``, then the supplier's new template (drift)."""
    labels = {"app": "traffic"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "traffic", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "traffic",
                            "image": f"{TRAINER_IMAGE}:0.1.0",
                            "args": [
                                "traffic",
                                f"--url={gateway}",
                                f"--host={HOST}",
                                f"--clean-seconds={clean_seconds:g}",
                                "--seconds=86400",
                            ],
                        }
                    ]
                },
            },
        },
    }


def write_example(directory: Path, state: dict[str, Any], clean_seconds: float = 30.0) -> Path:
    """The demo's model as files a user applies by hand to a running sandbox (``relearn sandbox up
    --example``): its champion built under ``directory``, and a kustomization of the served model,
    its ModelVersion and DriftPolicy (with this sandbox's Prometheus) and a traffic pod that brings
    drift after ``clean_seconds``. The loop then runs by itself: ``kubectl get relearn -w``."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    directory = directory.resolve()
    build_champion(directory)
    kube_objects, relearn_objects = objects(directory, state["prometheus"])
    files = {
        "serving.yaml": kube_objects,
        "relearn.yaml": relearn_objects,
        "traffic.yaml": [traffic_deployment(state["gateway"], clean_seconds)],
    }
    for name, docs in files.items():
        (directory / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "default",
        "resources": list(files),
    }
    header = "# The demo's model for this sandbox, written by `relearn sandbox up --example`.\n"
    (directory / "kustomization.yaml").write_text(header + yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def run_loop(
    step: Callable[[str], AbstractContextManager[None]],
    say: Callable[[str], None],
    api: client.ApiClient,
    kubectl: Callable[..., Any],
    kubeconfig: Path,
    workdir: Path,
    state: dict[str, Any],
    namespace: str,
) -> dict[str, Any]:
    """The drift -> retrain -> register part of the demo; returns what it measured."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress bars in the timeline
    from relearn_trainer import synthetic

    custom = client.CustomObjectsApi(api)

    def policy(predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 180) -> dict[str, Any]:
        return wait_for(
            custom.list_namespaced_custom_object,
            lambda p: p["metadata"]["name"] == MODEL and predicate(p),
            what=f"DriftPolicy {MODEL}: {what}",
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="driftpolicies",
            timeout=timeout,
        )

    kube_objects, relearn_objects = objects(workdir, state["prometheus"])
    with step("champion 1.0.0 served: a tiny document classifier behind the reference server and the gateway"):
        build_champion(workdir)
        for body in kube_objects + relearn_objects[:1]:
            kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        wait_for(
            client.AppsV1Api(api).list_namespaced_deployment,
            lambda d: d["metadata"]["name"] == MODEL and d.get("status", {}).get("availableReplicas") == 1,
            what=f"Deployment {MODEL} to have 1 available replica (the champion's server)",
            namespace=namespace,
            timeout=120,
        )
    with synthetic.Traffic(state["gateway"], host=HOST) as traffic:
        with step("DriftPolicy watching live traffic (predictions, human corrections): no drift"):
            kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(relearn_objects[1]))
            policy(lambda p: condition(p, "Drifted", "False"), "a first check, Drifted=False")
        with step("drift injected: a supplier switches to a new document template"):
            traffic.drifted = True
            drifted = policy(lambda p: condition(p, "Drifted"), "Drifted=True")
        message = next(c["message"] for c in drifted["status"]["conditions"] if c["type"] == "Drifted")
        say(f"Drifted=True: {message}")
        with step("LoRA Job retrains on the corrections and confident predictions"):
            running = policy(
                lambda p: (p["status"].get("lastRetraining") or {}).get("outcome") == "Running",
                "a retraining Job running (status.lastRetraining.outcome=Running)",
            )
            done = policy(
                lambda p: (p["status"].get("lastRetraining") or {}).get("outcome") in ("Succeeded", "Failed"),
                "the retraining Job to end (status.lastRetraining.outcome Succeeded or Failed)",
                timeout=300,
            )
        record = done["status"]["lastRetraining"]
        if record["outcome"] != "Succeeded":
            reason = next(c["message"] for c in done["status"]["conditions"] if c["type"] == "Retraining")
            raise RuntimeError(f"the retraining failed: {reason}")
        version = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelversions", f"{MODEL}-{record['modelVersion']}"
        )
        metrics = version["spec"]["metrics"]
        say(
            f"Job {running['status']['lastRetraining']['job']}: {MODEL} {record['modelVersion']} "
            f"{version['status']['phase']}, held-out accuracy {metrics['accuracy']:.2f} vs champion "
            f"{metrics['championAccuracy']:.2f} on {metrics['samples']} samples"
        )
        name = f"{MODEL}-{record['modelVersion']}"

        def experiment(predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 240) -> dict[str, Any]:
            return wait_for(
                custom.list_namespaced_custom_object,
                lambda a: a["metadata"]["name"] == name and predicate(a.get("status") or {}),
                what=f"ABExperiment {name}: {what}",
                group=GROUP,
                version=VERSION,
                namespace=namespace,
                plural="abexperiments",
                timeout=timeout,
            )

        with step(f"ABExperiment {name} created from the policy's template"):
            experiment(lambda s: True, "to be created by the DriftPolicy", timeout=60)
        with step(f"challenger {record['modelVersion']} runs beside champion 1.0.0 and takes live traffic"):
            started = experiment(lambda s: s.get("phase") == "Progressing", "phase Progressing")
        say(
            f"Deployment {started['status']['workloads']['challenger']} (a copy of {MODEL} with the new adapter); "
            f"weights {started['status']['weights']}"
        )
        with step("sequential test on human feedback decides: promotion"):
            promoted = experiment(lambda s: s.get("phase") == "Promoted", "phase Promoted")
        statistic, arms = promoted["status"]["statistic"], promoted["status"]["arms"]
        say(
            f"promoted {record['modelVersion']}: lift {statistic['lift']:+.3f} "
            f"[{statistic['ciLower']:+.3f}, {statistic['ciUpper']:+.3f}], p={statistic['pValue']:.2g}; "
            f"champion {arms['champion']['rate']:.2f} on {arms['champion']['samples']:.0f}, "
            f"challenger {arms['challenger']['rate']:.2f} on {arms['challenger']['samples']:.0f} samples"
        )
        with step(f"fault injected: the new champion {record['modelVersion']} fails every request"):
            experiment(
                lambda s: (s.get("health") or {}).get("lastCheckTime") is not None, "a first health check", timeout=60
            )
            pod = (
                client.CoreV1Api(api)
                .list_namespaced_pod(namespace, label_selector=f"relearn.dev/version={record['modelVersion']}")
                .items[0]
            )
            url = pod_url(pod.metadata.annotations)
            fault = urllib.request.Request(
                f"{url}/admin/fault",
                data=b'{"failing": true}',
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(fault, timeout=10)
            injected = time.monotonic()
        with step("health checks fail: automatic rollback to 1.0.0"):
            rolled = experiment(lambda s: s.get("phase") == "RolledBack", "phase RolledBack", timeout=120)
            reverted = time.monotonic() - injected
        say(rolled["status"]["decision"]["message"])
        return {
            "requests": traffic.sent,
            "corrections": traffic.corrections,
            "version": record["modelVersion"],
            "accuracy": metrics["accuracy"],
            "championAccuracy": metrics["championAccuracy"],
            "lift": statistic["lift"],
            "ciLower": statistic["ciLower"],
            "ciUpper": statistic["ciUpper"],
            "samples": arms["challenger"]["samples"],
            "rollbackSeconds": reverted,
            "decisions": [
                ("retrain", f"Job {running['status']['lastRetraining']['job']}"),
                (
                    "register",
                    f"{record['modelVersion']} at {metrics['accuracy']:.2f} vs {metrics['championAccuracy']:.2f}",
                ),
                ("promote", promoted["status"]["decision"]["message"]),
                ("roll back", rolled["status"]["decision"]["message"]),
            ],
        }
