"""A model server whose traffic drifts on request, for the drift tests.

    python -m relearn_sandbox.servers.drifting      (MODEL, PORT, SHIFT from the environment)

It generates its own traffic, 200 observations a second: ``amount`` ~
N(shift, 1) and ``channel`` in a/b/c with :data:`SHARES`, with feedback 90 %
correct, and exports them as model ``$MODEL`` version 1.0.0 on ``/metrics``.
``POST`` (any path) shifts ``amount`` by 3 from then on. :data:`EDGES`,
:data:`CATEGORIES` and :data:`SHARES` are the training-time shape a test's
baseline is built from.
"""

from __future__ import annotations

import http.server
import os
import random
import threading
import time

import numpy as np
from prometheus_client import generate_latest
from relearn.serving import CategoricalFeature, ModelMetrics, NumericFeature
from scipy import stats

EDGES = [float(e) for e in stats.norm.ppf(np.linspace(0.1, 0.9, 9))]
CATEGORIES = ["a", "b", "c"]
SHARES = [0.5, 0.3, 0.2]
SHIFTED = 3.0  # the mean of ``amount`` after a POST
OBSERVATIONS_PER_SECOND = 200  # at most: 40 every 0.2 s


class Traffic:
    """The server's own traffic, observed into the metric contract."""

    def __init__(self, model: str, shift: float) -> None:
        features: list[NumericFeature | CategoricalFeature] = [
            NumericFeature("amount", EDGES),
            CategoricalFeature("channel", CATEGORIES),
        ]
        self.metrics = ModelMetrics(model, "1.0.0", features)
        self.shift = shift
        self.rng = random.Random(11)

    def run(self) -> None:
        while True:
            for _ in range(OBSERVATIONS_PER_SECOND // 5):
                channel = self.rng.choices(CATEGORIES, weights=SHARES)[0]
                self.metrics.observe({"amount": self.rng.gauss(self.shift, 1.0), "channel": channel}, confidence=0.9)
                self.metrics.feedback(correct=self.rng.random() < 0.9)
            time.sleep(0.2)


def handler(traffic: Traffic) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest() if self.path == "/metrics" else b"ok"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            traffic.shift = SHIFTED
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"shifted")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    traffic = Traffic(os.environ["MODEL"], float(os.environ.get("SHIFT", "0")))
    threading.Thread(target=traffic.run, daemon=True).start()
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), handler(traffic)).serve_forever()


if __name__ == "__main__":
    main()
