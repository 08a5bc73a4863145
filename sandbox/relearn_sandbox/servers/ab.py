"""A model server for the experiment tests and benches whose arms' true
success rates are known.

    python -m relearn_sandbox.servers.ab    (RELEARN_MODEL, RELEARN_MODEL_VERSION, ACCURACY, PORT, ...)

It answers ``/predict`` and ``/feedback`` like the reference server, but
whether an answer is right is a coin with the accuracy its version has in
``ACCURACY`` (JSON ``{"1.0.0": 0.85, ...}``). ``POST /fault`` makes every
request fail with 500 from then on (for rollback tests); ``STARTUP_DELAY``
seconds pass before it listens (a slow-starting model). It exports the
metric contract on ``/metrics``.

A request with an ``"id"`` (the paired load of :mod:`.load`) is scored as a
function of the id, the same for every copy, so both versions are scored on
the same requests: right when ``(u - offset) mod 1 < accuracy``, ``u``
uniform from the id and ``offset`` the version's in ``PAIR_OFFSET``. Its
feedback, carrying the answer the client was served by another version,
counts a pair (:meth:`relearn.serving.ModelMetrics.paired_feedback`).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import threading
import time
from typing import Any

from prometheus_client import generate_latest
from relearn.serving import ModelMetrics, NumericFeature


class Model:
    """One version's coin, counters and fault switch."""

    def __init__(self, model: str, version: str, accuracy: float, offset: float) -> None:
        self.version, self.accuracy, self.offset = version, accuracy, offset
        self.metrics = ModelMetrics(model, version, [NumericFeature("length", [5.0, 10.0, 20.0])])
        self.rng, self.lock, self.fault = random.Random(), threading.Lock(), threading.Event()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """A request without an id: a coin decides the feedback."""
        with self.lock, self.metrics.time_request():
            if self.fault.is_set():
                self.metrics.error()
                return 500, {"error": "fault injected"}
            self.metrics.observe({"length": 7.0}, prediction="a", confidence=0.9)
            if path == "/feedback":
                self.metrics.feedback(correct=self.rng.random() < self.accuracy)
        return 200, {"version": self.version}

    def paired(self, path: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A request with an id: right or wrong by the id, the same for every copy."""
        u = int(hashlib.sha256(str(request["id"]).encode()).hexdigest()[:12], 16) / 16**12
        right = (u - self.offset) % 1.0 < self.accuracy
        prediction = "a" if right else "b"
        with self.lock, self.metrics.time_request():
            self.metrics.observe({"length": 7.0}, prediction=prediction, confidence=0.9)
            if path == "/feedback":
                self.metrics.feedback(correct=right)
                served = request.get("served") or {}
                if served.get("version") not in (None, self.version):
                    self.metrics.paired_feedback(str(served["version"]), served.get("prediction") == "a", right)
        return 200, {"version": self.version, "prediction": prediction}


def handler(model: Model) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/metrics":
                return self.reply(200, {"version": model.version})
            data = generate_latest()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            if isinstance(request, dict) and isinstance(request.get("id"), str):
                return self.reply(*model.paired(self.path, request))
            if self.path == "/fault":
                model.fault.set()
                return self.reply(200, {"fault": True})
            self.reply(*model.answer(self.path))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))  # a slow-starting model
    version = os.environ["RELEARN_MODEL_VERSION"]
    accuracy = float(json.loads(os.environ["ACCURACY"])[version])
    offset = float(json.loads(os.environ.get("PAIR_OFFSET") or "{}").get(version, 0.0))
    model = Model(os.environ["RELEARN_MODEL"], version, accuracy, offset)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), handler(model)).serve_forever()


if __name__ == "__main__":
    main()
