"""The reference model server: a base model plus a LoRA adapter behind HTTP,
exporting the metric contract and logging what it serves so pseudo-labels
and corrections exist for the next retraining.

    POST /predict   {"input": "text"}               -> {"prediction", "confidence", "version"}
    POST /feedback  {"input": "text", "label": "x"}  a human correction: logged, counted correct/incorrect
                    (+ "served": {"version", "prediction"}: the answer the client got; when
                    another version served it, this server is a shadow and also counts the pair)
    GET  /metrics   the metric contract (relearn.serving)
    GET  /healthz   200 once the model is loaded

Configured by the environment the operator sets on the serving Deployment
(flags of ``python -m relearn_trainer serve`` override it):
``RELEARN_MODEL``, ``RELEARN_MODEL_VERSION``, ``RELEARN_BASE_MODEL_URI``,
``RELEARN_ADAPTER_URI`` and ``RELEARN_ADAPTER_SHA256`` (before anything
loads, the adapter's manifest must match that sha256 and every file in the
adapter folder must match the manifest, or the server refuses to start with
exit code 4; an adapter without a sha256 is refused too, unless
``RELEARN_ALLOW_UNVERIFIED_ADAPTER=true`` / ``--allow-unverified-adapter``,
for local development only),
``RELEARN_DATASET_URI`` (where served predictions and corrections are
appended as JSONL), ``RELEARN_MODEL_TASK`` (``sequence-classification`` or
``causal-lm``; a causal LM takes its labels from the adapter's
``labels.json`` or ``RELEARN_LABELS``) and ``PORT``.
``RELEARN_FAULT_INJECTION=true`` adds ``POST /admin/fault {"failing": true}``,
which makes every request answer 500 (counted as errors) until switched off:
a rollback drill.

Features for drift monitoring are computed from the input text: ``length``
(words) and ``unknown_ratio`` (the share of words the tokenizer does not
know, which rises when wording drifts).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

import fsspec
import torch
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from relearn.serving import ModelMetrics, NumericFeature

from relearn_trainer.failures import ArtifactError, ModelError
from relearn_trainer.modeling import load_base, local_path, with_adapter
from relearn_trainer.publishing import verify
from relearn_trainer.tasks import TASKS, Reader

LENGTH_EDGES = [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
UNKNOWN_EDGES = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75]


@dataclass(frozen=True)
class ServerConfig:
    model: str
    version: str
    base_model_uri: str
    adapter_uri: str | None = None
    adapter_sha256: str | None = None
    allow_unverified_adapter: bool = False
    dataset_uri: str | None = None
    port: int = 8080
    task: str = "sequence-classification"
    labels: tuple[str, ...] = ()
    fault_injection: bool = False

    @classmethod
    def from_environment(cls, **overrides: Any) -> ServerConfig:
        env = os.environ
        values = {
            "model": env.get("RELEARN_MODEL"),
            "version": env.get("RELEARN_MODEL_VERSION"),
            "base_model_uri": env.get("RELEARN_BASE_MODEL_URI"),
            "adapter_uri": env.get("RELEARN_ADAPTER_URI") or None,
            "adapter_sha256": env.get("RELEARN_ADAPTER_SHA256") or None,
            "allow_unverified_adapter": env.get("RELEARN_ALLOW_UNVERIFIED_ADAPTER", "").lower() in ("1", "true", "yes"),
            "dataset_uri": env.get("RELEARN_DATASET_URI") or None,
            "port": int(env.get("PORT", "8080")),
            "task": env.get("RELEARN_MODEL_TASK") or "sequence-classification",
            "labels": tuple(label for label in env.get("RELEARN_LABELS", "").split(",") if label),
            "fault_injection": env.get("RELEARN_FAULT_INJECTION", "").lower() in ("1", "true", "yes"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        missing = [k for k in ("model", "version", "base_model_uri") if not values[k]]
        if missing:
            raise ModelError(
                f"missing configuration: {', '.join(missing)} (RELEARN_MODEL, RELEARN_MODEL_VERSION, "
                "RELEARN_BASE_MODEL_URI)"
            )
        return cls(**values)  # type: ignore[arg-type]


def verify_adapter(config: ServerConfig) -> None:
    """Refuse (ArtifactError, exit 4) an adapter that is not the ModelVersion's:
    its manifest against the sha256, every file against the manifest."""
    if not config.adapter_uri:
        return
    if config.adapter_sha256 is None:
        if not config.allow_unverified_adapter:
            raise ArtifactError(
                f"adapter {config.adapter_uri} has no sha256 to verify it against (RELEARN_ADAPTER_SHA256, the "
                "ModelVersion's spec.adapter.sha256); for local development only, "
                "RELEARN_ALLOW_UNVERIFIED_ADAPTER=true serves it unverified"
            )
        print(f"relearn_trainer serve: WARNING: serving the unverified adapter {config.adapter_uri}", file=sys.stderr)
        return
    verify(str(local_path(config.adapter_uri)), config.adapter_sha256)


class DatasetLog:
    """Appends served predictions and corrections as JSON lines."""

    def __init__(self, uri: str | None, version: str) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        if uri:
            protocol, _, root = uri.rpartition("://")
            self.fs = fsspec.filesystem(protocol or "file")
            self.fs.makedirs(root, exist_ok=True)
            self.path = f"{root.rstrip('/')}/served-{version}-{socket.gethostname()}.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        if not self.uri:
            return
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, self.fs.open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)


class ModelServer:
    def __init__(self, config: ServerConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        verify_adapter(config)  # before anything is loaded from it
        if config.task not in TASKS:
            raise ModelError(f"unknown task {config.task!r}; known: {sorted(TASKS)}")
        self.task = TASKS[config.task]
        names = self._label_names(config)
        base, self.tokenizer = load_base(config.base_model_uri, self.device, self.task, names)
        self.model = with_adapter(base, config.adapter_uri).eval()
        self.label_ids = self.task.labels(base, names)  # the head's order, or (causal LM) the labels sorted
        if not self.label_ids:
            raise ModelError("no labels: a causal-lm server needs the adapter's labels.json or RELEARN_LABELS")
        self.labels = {i: label for label, i in self.label_ids.items()}
        self.vocabulary = set(self.tokenizer.get_vocab())
        self.metrics = ModelMetrics(
            config.model,
            config.version,
            [NumericFeature("length", LENGTH_EDGES), NumericFeature("unknown_ratio", UNKNOWN_EDGES)],
            registry=self.registry,
        )
        self.log = DatasetLog(config.dataset_uri, config.version)
        self._served: collections.OrderedDict[str, str] = collections.OrderedDict()  # input hash -> prediction
        self.failing = False  # the fault switch (RELEARN_FAULT_INJECTION): every request answers 500
        self._lock = threading.Lock()

    @staticmethod
    def _label_names(config: ServerConfig) -> list[str]:
        """Classes in score order: the adapter's labels.json, else RELEARN_LABELS
        (else, returned empty, the classification head's)."""
        if config.adapter_uri:
            saved = local_path(config.adapter_uri) / "labels.json"
            if saved.exists():
                try:
                    return [str(name) for name in json.loads(saved.read_text())["labels"]]
                except (OSError, ValueError, KeyError, TypeError) as error:
                    raise ModelError(f"the adapter's {saved} is unreadable: {error}") from None
        return list(config.labels)

    def features(self, text: str) -> dict[str, float]:
        words = text.split()
        unknown = sum(1 for w in words if w not in self.vocabulary and w.lower() not in self.vocabulary)
        return {"length": float(len(words)), "unknown_ratio": unknown / len(words) if words else 0.0}

    @torch.no_grad()
    def predict(self, text: str) -> dict[str, Any]:
        scores = self.task.scores(Reader(self.model, self.tokenizer, self.label_ids, self.device, 128), [text])
        probabilities = torch.softmax(scores[0], dim=-1)
        confidence, index = (float(v) for v in probabilities.max(dim=-1))
        label = self.labels.get(int(index), str(int(index)))
        features = self.features(text)
        self.metrics.observe(features, prediction=label, confidence=confidence)
        with self._lock:
            self._served[_key(text)] = label
            while len(self._served) > 100_000:
                self._served.popitem(last=False)
        self.log.append(
            {
                "kind": "prediction",
                "input": text,
                "prediction": label,
                "confidence": confidence,
                "version": self.config.version,
                "timestamp": _now(),
                "features": features,
            }
        )
        return {"prediction": label, "confidence": confidence, "version": self.config.version}

    def feedback(self, text: str, label: str, answered: dict[str, Any] | None = None) -> dict[str, Any]:
        """A label for ``text``; ``answered`` is what the client was served
        (``version``, ``prediction``): from another version, this server
        answered as a shadow, and the pair of outcomes is counted for the
        shadow stage's paired test."""
        with self._lock:
            served = self._served.get(_key(text))
        if served is None:
            served = self.predict(text)["prediction"]
        correct = served == label
        self.metrics.feedback(correct)
        answered = answered or {}
        champion = answered.get("version")
        if isinstance(champion, str) and champion and champion != self.config.version:
            self.metrics.paired_feedback(champion, answered.get("prediction") == label, correct)
        self.log.append(
            {
                "kind": "correction",
                "input": text,
                "label": label,
                "timestamp": _now(),
                "version": self.config.version,
                "features": self.features(text),
            }
        )
        return {"correct": correct, "served": served}

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/predict", self._predict)
        app.router.add_post("/feedback", self._feedback)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        if self.config.fault_injection:
            app.router.add_post("/admin/fault", self._fault)
        app.middlewares.append(self._inject_faults)
        return app

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.failing and request.path in ("/predict", "/feedback"):
            with self.metrics.time_request():
                self.metrics.error()
            return web.json_response({"error": "fault injected"}, status=500)
        response: web.StreamResponse = await handler(request)
        return response

    async def _fault(self, request: web.Request) -> web.Response:
        """``POST /admin/fault {"failing": true|false}``: rollback drills; only with RELEARN_FAULT_INJECTION."""
        self.failing = bool((await _json(request)).get("failing", True))
        return web.json_response({"failing": self.failing})

    async def _predict(self, request: web.Request) -> web.Response:
        body = await _json(request)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return web.json_response({"error": 'body must be {"input": "<text>"}'}, status=400)
        with self.metrics.time_request():
            answer = await asyncio.to_thread(self.predict, text)
        return web.json_response(answer)

    async def _feedback(self, request: web.Request) -> web.Response:
        body = await _json(request)
        text, label = body.get("input"), body.get("label")
        if not isinstance(text, str) or not isinstance(label, str):
            return web.json_response({"error": 'body must be {"input": "<text>", "label": "<label>"}'}, status=400)
        if label not in self.labels.values():
            return web.json_response(
                {"error": f"unknown label {label!r}; known: {sorted(self.labels.values())}"}, status=400
            )
        answered = body.get("served")
        return web.json_response(
            await asyncio.to_thread(self.feedback, text, label, answered if isinstance(answered, dict) else None)
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"model": self.config.model, "version": self.config.version})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def serve(config: ServerConfig) -> None:
    server = ModelServer(config)
    web.run_app(server.application(), host=os.environ.get("RELEARN_BIND", "0.0.0.0"), port=config.port, print=None)
