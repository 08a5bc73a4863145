"""The Deployment of :mod:`relearn_sandbox.servers.drifting` for the
integration tests (a local process that exports the metric contract for its
own traffic, ``amount`` ~ N(shift, 1) and ``channel`` in a/b/c, with
feedback, and shifts ``amount`` by 3 on POST), and the baseline of its
unshifted traffic."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from relearn.serving import histogram_counts
from relearn_sandbox.servers.drifting import CATEGORIES, EDGES, SHARES
from scipy import stats


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
                            "command": [sys.executable, "-m", "relearn_sandbox.servers.drifting"],
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
