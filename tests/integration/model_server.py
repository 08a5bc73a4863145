"""A model server for the integration tests: a local process that exports
the metric contract for synthetic traffic (``amount`` ~ N(shift, 1),
``channel`` in a/b/c), with feedback, and shifts ``amount`` by 3 on POST."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from relearn.serving import histogram_counts
from scipy import stats

EDGES = [float(e) for e in stats.norm.ppf(np.linspace(0.1, 0.9, 9))]
CATEGORIES = ["a", "b", "c"]
SHARES = [0.5, 0.3, 0.2]


SERVER = f"""
import http.server, os, random, threading, time
from prometheus_client import generate_latest
from relearn.serving import CategoricalFeature, ModelMetrics, NumericFeature

metrics = ModelMetrics(os.environ["MODEL"], "1.0.0", [NumericFeature("amount", {EDGES!r}),
                                          CategoricalFeature("channel", {CATEGORIES!r})])
shift = float(os.environ.get("SHIFT", "0"))
rng = random.Random(11)

def traffic():
    while True:
        for _ in range(40):
            channel = rng.choices({CATEGORIES!r}, weights={SHARES!r})[0]
            metrics.observe({{"amount": rng.gauss(shift, 1.0), "channel": channel}}, confidence=0.9)
            metrics.feedback(correct=rng.random() < 0.9)
        time.sleep(0.2)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = generate_latest() if self.path == "/metrics" else b"ok"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        global shift
        shift = 3.0
        self.send_response(200); self.end_headers(); self.wfile.write(b"shifted")
    def log_message(self, *args): pass

threading.Thread(target=traffic, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def model_server(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment whose pod serves the metric contract of model ``name``."""
    variables = {"MODEL": name, **(env or {})}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": f"example/{name}:1.0.0",
                            "command": [sys.executable, "-c", SERVER],
                            "env": [{"name": k, "value": v} for k, v in variables.items()],
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def baseline_features() -> list[dict[str, Any]]:
    """The training-time histograms of the server's unshifted traffic."""
    draws = stats.norm.ppf((np.arange(100_000) + 0.5) / 100_000)
    return [
        {"name": "amount", "type": "numeric", "edges": EDGES, "counts": histogram_counts(EDGES, draws)},
        {"name": "channel", "type": "categorical", "categories": CATEGORIES, "counts": [100_000 * s for s in SHARES]},
    ]
