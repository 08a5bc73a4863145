"""Manifests of a model served behind the gateway, as the demo and the tests
deploy it: a Deployment whose pods carry ``relearn.dev/model`` and
``relearn.dev/version`` and ask to be scraped, a Service over the model's
pods, and an HTTPRoute sending every request for ``host`` to it."""

from __future__ import annotations

from typing import Any


def served_model(
    model: str, container: dict[str, Any], *, host: str, version: str = "1.0.0", replicas: int = 1
) -> list[dict[str, Any]]:
    """[Deployment, Service, HTTPRoute]; ``container`` serves HTTP on containerPort 8080 (named http)."""
    labels = {"app": model, "relearn.dev/model": model}
    server = {
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        **container,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": model, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": {**labels, "relearn.dev/version": version},
                        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                    },
                    "spec": {"containers": [server]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": model, "labels": {"relearn.dev/model": model}},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": model},
            "spec": {"hostnames": [host], "rules": [{"backendRefs": [{"name": model, "port": 80, "weight": 100}]}]},
        },
    ]
