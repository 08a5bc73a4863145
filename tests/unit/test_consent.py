"""No confused deputy: a Secret a DriftPolicy or ABExperiment names is used
only when it opts in for that use, credentials go only to the Prometheus
URLs and webhook hosts the operator allows, and a refused use is a condition
and an Event, never a request."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fake_kube import FakeKube, condition
from kubernetes import client
from relearn.adapters.kube import KubeClient
from relearn.core import consent
from relearn.core.consent import Allowlist, UseRefused
from relearn.handlers import drift
from relearn.handlers.experiments import daemon
from test_daemons import champion_version, drift_policy, run_daemon

ALLOWED = {consent.CONSENT_ANNOTATION: "prometheus"}


class Recorder:
    """Any HTTP endpoint (Prometheus, a webhook) that records who called it and with which credentials."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "auth": request.headers.get("Authorization")})
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield recorder, str(server.make_url("")).rstrip("/")
    await server.close()


def policy_with_secret(kube: FakeKube, url: str, annotations: dict[str, str]) -> dict[str, Any]:
    kube.secrets[("default", "prom-token")] = ({"token": "s3cret"}, annotations)
    champion_version(kube)
    body = drift_policy(kube, url, retraining=None)
    body["spec"]["prometheus"]["authSecretRef"] = {"name": "prom-token"}
    kube.objects[("driftpolicies", "default", "ranker-drift")]["spec"] = copy.deepcopy(body["spec"])
    return body


def checked(kube: FakeKube) -> bool:
    return any(plural == "driftpolicies" for _, plural, _, _ in kube.status_writes)


async def test_a_secret_without_consent_is_never_sent_and_the_policy_says_why(
    endpoint: tuple[Recorder, str],
) -> None:
    prometheus, url = endpoint
    kube = FakeKube()
    body = policy_with_secret(kube, url, annotations={})  # e.g. the namespace's database password
    await run_daemon(drift.monitor, body, kube, lambda: checked(kube), timeout=10)
    policy = kube.objects[("driftpolicies", "default", "ranker-drift")]
    available = condition(policy, "MetricsAvailable")
    assert available is not None
    assert (available["status"], available["reason"]) == ("False", "PrometheusNotAllowed")
    assert "relearn.dev/allowed-uses=prometheus" in available["message"]
    assert [e["reason"] for e in kube.events] == ["MetricsUnavailable"]
    assert "s3cret" not in str(policy) + str(kube.events)
    assert prometheus.requests == []  # not even a query without the token


async def test_a_consenting_secret_is_sent_to_an_allowed_prometheus(endpoint: tuple[Recorder, str]) -> None:
    prometheus, url = endpoint
    kube = FakeKube()
    body = policy_with_secret(kube, url, annotations=ALLOWED)
    await run_daemon(drift.monitor, body, kube, lambda: checked(kube), timeout=10)
    assert prometheus.requests
    assert {r["auth"] for r in prometheus.requests} == {"Bearer s3cret"}


async def test_a_prometheus_outside_the_allowed_urls_gets_no_request(endpoint: tuple[Recorder, str]) -> None:
    prometheus, url = endpoint
    kube = FakeKube()
    body = policy_with_secret(kube, url, annotations=ALLOWED)
    stopped_memo = {"allowed": Allowlist(prometheus_urls=("https://prometheus.monitoring.svc:9090",))}
    await run_daemon(drift.monitor, body, kube, lambda: checked(kube), timeout=10, memo=stopped_memo)
    available = condition(kube.objects[("driftpolicies", "default", "ranker-drift")], "MetricsAvailable")
    assert available is not None
    assert available["reason"] == "PrometheusNotAllowed"
    assert prometheus.requests == []
    assert kube.secret_reads == []  # refused before the Secret is even read


async def test_a_webhook_secret_without_consent_is_refused_with_a_condition_and_an_event(
    endpoint: tuple[Recorder, str],
) -> None:
    hook, url = endpoint
    kube = FakeKube()
    kube.secrets[("default", "slack")] = ({"url": f"{url}/hook"}, {})
    body = kube.add(
        "abexperiments",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "metadata": {"name": "ranker-1.1.0", "annotations": {"relearn.dev/abort": "true"}},
            "spec": {
                "model": "ranker",
                "challenger": "1.1.0",
                "workload": {"name": "ranker"},
                "notifications": {"webhooks": [{"name": "team", "urlSecretRef": {"name": "slack"}}]},
            },
        },
    )
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]
    await run_daemon(
        daemon.run, copy.deepcopy(body), kube, lambda: condition(stored, "NotificationsAllowed") is not None, 10
    )
    await asyncio.sleep(0.5)  # a background send, had there been one, would have arrived
    refused = condition(stored, "NotificationsAllowed")
    assert refused is not None
    assert (refused["status"], refused["reason"]) == ("False", "SecretNotAllowed")
    assert "WebhookRefused" in [e["reason"] for e in kube.events]
    assert hook.requests == []


def test_the_adapter_hands_out_a_secret_only_for_the_use_it_allows() -> None:
    kube = KubeClient(client.ApiClient())
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="prom", annotations={consent.CONSENT_ANNOTATION: "prometheus"}),
        data={"token": "czNjcmV0"},
    )
    kube.core.read_namespaced_secret = lambda *a, **k: secret  # type: ignore[method-assign]
    assert asyncio.run(kube.read_secret("ml", "prom", "prometheus")) == {"token": "s3cret"}
    with pytest.raises(UseRefused, match="does not allow Relearn to use it for webhook"):
        asyncio.run(kube.read_secret("ml", "prom", "webhook"))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://prometheus.monitoring.svc:9090", True),
        ("https://prometheus.monitoring.svc:9090/api/prom", True),
        ("https://prometheus.monitoring.svc:9090.evil.example", False),
        ("http://prometheus.monitoring.svc:9090", False),
        ("https://evil.example/?u=https://prometheus.monitoring.svc:9090", False),
    ],
)
def test_allowed_prometheus_urls_are_prefixes_of_scheme_host_port_and_path(url: str, allowed: bool) -> None:
    prefixes = ("https://prometheus.monitoring.svc:9090",)
    if allowed:
        consent.check_prometheus_url(url, prefixes)
    else:
        with pytest.raises(UseRefused):
            consent.check_prometheus_url(url, prefixes)


def test_allowed_webhook_hosts_match_the_host_or_a_subdomain() -> None:
    assert consent.host_allowed("https://hooks.slack.com/services/T0/B0/x", ["hooks.slack.com"])
    assert consent.host_allowed("https://a.chat.example.com/x", ["*.example.com"])
    assert not consent.host_allowed("https://example.com.evil.io/x", ["*.example.com"])
    assert not consent.host_allowed("https://evil.io/hooks.slack.com", ["hooks.slack.com"])
