"""The experiment's pure parts: the challenger's manifests, one look's
judgement, ModelVersion history, and webhook delivery."""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import Any

import kubernetes_validate
import pytest
from aiohttp import web
from relearn.adapters import webhooks
from relearn.api.abexperiment import ABExperimentSpec, Traffic, Webhook
from relearn.core import experiment, workloads
from relearn.core.durations import parse_duration
from relearn.core.stats import Arm
from relearn.errors import InvalidMetrics

EXPERIMENT = {
    "apiVersion": "relearn.dev/v1alpha1",
    "kind": "ABExperiment",
    "metadata": {"name": "docs-1.1.0", "uid": "u-1"},
}
CHAMPION = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "docs",
        "namespace": "ml",
        "uid": "d-1",
        "resourceVersion": "7",
        "generation": 3,
        "labels": {"app": "docs"},
        "annotations": {"deployment.kubernetes.io/revision": "3", "team": "search"},
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "docs"}},
        "template": {
            "metadata": {"labels": {"app": "docs", "relearn.dev/version": "1.0.0"}},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "proxy:1"},
                    {
                        "name": "server",
                        "image": "server:1",
                        "env": [{"name": "RELEARN_MODEL_VERSION", "value": "1.0.0"}, {"name": "X", "value": "y"}],
                    },
                ]
            },
        },
    },
    "status": {"readyReplicas": 3},
}


def test_challenger_deployment_is_the_champions_copy_with_the_new_version() -> None:
    body = workloads.challenger_deployment(
        CHAMPION,
        name=workloads.workload_name("docs", "1.1.0"),
        model="docs",
        version="1.1.0",
        version_env="RELEARN_MODEL_VERSION",
        adapter={"uri": "s3://b/a", "sha256": "f" * 64},
        experiment=EXPERIMENT,
        replicas=3,
    )
    kubernetes_validate.validate(body, "1.30.0", strict=True)
    meta = body["metadata"]
    assert meta["name"] == "docs-1-1-0"
    assert "uid" not in meta
    assert "resourceVersion" not in meta
    assert "status" not in body
    assert meta["annotations"] == {"team": "search"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "name": "docs-1.1.0",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert body["spec"]["selector"]["matchLabels"] == {"app": "docs", "relearn.dev/version": "1.1.0"}
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["relearn.dev/version"] == "1.1.0"
    assert labels["relearn.dev/model"] == "docs"
    sidecar, server = body["spec"]["template"]["spec"]["containers"]
    assert "env" not in sidecar  # the container that sets the version env is the serving one
    assert {e["name"]: e["value"] for e in server["env"]} == {
        "RELEARN_MODEL_VERSION": "1.1.0",
        "X": "y",
        "RELEARN_ADAPTER_URI": "s3://b/a",
        "RELEARN_ADAPTER_SHA256": "f" * 64,
    }
    assert CHAMPION["spec"]["template"]["metadata"]["labels"]["relearn.dev/version"] == "1.0.0"  # not mutated


def test_challenger_service_selects_only_the_challenger() -> None:
    champion = {
        "metadata": {"name": "docs", "uid": "s"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "docs"},
            "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}],
        },
    }
    body = workloads.challenger_service(champion, name="docs-1-1-0", version="1.1.0", experiment=EXPERIMENT)
    kubernetes_validate.validate(body, "1.30.0", strict=True)
    assert body["spec"] == {
        "selector": {"app": "docs", "relearn.dev/version": "1.1.0"},
        "ports": [{"port": 80, "targetPort": "http"}],
    }
    assert workloads.selects(champion["spec"]["selector"], {"app": "docs", "relearn.dev/version": "1.1.0"})
    assert not workloads.selects(body["spec"]["selector"], {"app": "docs", "relearn.dev/version": "1.0.0"})
    assert not workloads.selects({}, {"app": "docs"})


@pytest.mark.parametrize(
    ("workload", "version", "name"),
    [
        ("docs", "1.1.0", "docs-1-1-0"),
        ("docs", "2.0.0-rc.1+b7", "docs-2-0-0-rc-1-b7"),
        ("x" * 70, "1.0.0", "x" * 57 + "-1-0-0"),
    ],
)
def test_workload_names_are_dns_labels(workload: str, version: str, name: str) -> None:
    assert workloads.workload_name(workload, version) == name


def spec(**analysis: Any) -> ABExperimentSpec:
    return ABExperimentSpec.model_validate(
        {
            "model": "docs",
            "challenger": "1.1.0",
            "workload": {"name": "docs"},
            "analysis": {"minSamplesPerArm": 100, **analysis},
        }
    )


def look(
    champion: tuple[int, int],
    challenger: tuple[int, int],
    guardrails: list[experiment.GuardrailValue] | None = None,
    minutes: float = 10,
) -> experiment.Look:
    return experiment.Look(Arm(*champion), Arm(*challenger), guardrails or [], datetime.timedelta(minutes=minutes))


def test_a_breached_guardrail_rejects_and_missing_data_holds_promotion() -> None:
    better = ((850, 1000), (950, 1000))
    breached = experiment.judge(spec(), look(*better, [experiment.GuardrailValue("error-rate", 0.2, 0.05)]))
    assert breached.outcome == "Reject"
    assert breached.message == "guardrail error-rate: 0.2 > max 0.05"
    held = experiment.judge(spec(), look(*better, [experiment.GuardrailValue("p99-latency", None, 0.5)]))
    assert held.outcome == "Continue"
    assert held.reason == "GuardrailNoData"
    assert held.missing == ("p99-latency",)
    assert experiment.judge(spec(), look(*better)).outcome == "Promote"


def test_max_duration_ends_inconclusive_with_an_eta() -> None:
    tied = look((850, 1000), (860, 1000), minutes=30)
    assert experiment.judge(spec(maxDuration="1h"), tied).outcome == "Continue"
    ended = experiment.judge(spec(maxDuration="20m"), tied)
    assert ended.outcome == "Inconclusive"
    assert ended.message.startswith("no decision within maxDuration 20m")
    # the median and the 90% upper samples still needed, at today's rate, as durations
    assert ended.eta is not None
    assert ended.eta_upper is not None
    assert parse_duration(ended.eta) <= parse_duration(ended.eta_upper)


def test_impossible_counts_and_guardrail_values_are_refused_not_judged() -> None:
    with pytest.raises(InvalidMetrics):
        experiment.judge(spec(), look((-5, 1000), (900, 1000)))
    with pytest.raises(InvalidMetrics):
        experiment.judge(spec(), look((850, 1000), (1200, 1000)))
    with pytest.raises(InvalidMetrics):
        experiment.judge(spec(), look((850, 1000), (950, 1000), [experiment.GuardrailValue("error-rate", math.nan, 1)]))


def test_the_promotion_rule_is_the_users_choice() -> None:
    counts = look((8500, 10000), (8800, 10000))
    assert experiment.settings(spec(promoteWhen="BetterByMinImprovement")).promote_when == "BetterByMinImprovement"
    assert experiment.judge(spec(minImprovement=0.01), counts).outcome == "Promote"
    assert experiment.judge(spec(minImprovement=0.025, promoteWhen="BetterByMinImprovement"), counts).outcome != (
        "Promote"
    )


def test_weight_steps() -> None:
    traffic = Traffic(weight=50, steps=[5, 20])
    assert [experiment.next_weight(traffic, w) for w in (0, 5, 20, 50)] == [5, 20, 50, 50]
    assert experiment.next_weight(Traffic(weight=10), 0) == 10


def test_webhooks_deliver_json_and_slack_and_failures_never_raise(unused_tcp_port: int) -> None:
    received: list[tuple[str, Any]] = []
    attempts = {"flaky": 0}

    async def scenario() -> list[bool]:
        async def hook(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name == "flaky":
                attempts["flaky"] += 1
                if attempts["flaky"] < 2:
                    return web.Response(status=503)
            if name == "broken":
                return web.Response(status=500)
            received.append((name, await request.json()))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{name}", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
        secrets = {n: {"url": f"http://127.0.0.1:{unused_tcp_port}/{n}"} for n in ("plain", "chat", "flaky", "broken")}

        async def read(name: str) -> dict[str, str]:
            return secrets[name]

        decision = {
            "kind": "ABExperiment",
            "namespace": "ml",
            "name": "docs-1.1.0",
            "model": "docs",
            "outcome": "Promote",
            "message": "lift +0.05",
        }
        hooks = [
            Webhook.model_validate({"name": "plain", "urlSecretRef": {"name": "plain"}}),
            Webhook.model_validate({"name": "chat", "format": "slack", "urlSecretRef": {"name": "chat"}}),
            Webhook.model_validate({"name": "flaky", "urlSecretRef": {"name": "flaky"}, "timeout": "2s"}),
            Webhook.model_validate({"name": "broken", "urlSecretRef": {"name": "broken"}}),
            Webhook.model_validate({"name": "missing", "urlSecretRef": {"name": "absent"}}),
        ]
        try:
            return list(await asyncio.gather(*(webhooks.send(h, decision, read) for h in hooks)))
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == [True, True, True, False, False]
    got = dict(received)
    assert got["plain"]["outcome"] == "Promote"
    assert got["chat"] == {"text": "*Promote* ABExperiment `ml/docs-1.1.0` (model docs): lift +0.05"}
    assert attempts["flaky"] == 2  # retried after a 503


def test_health_checks_count_consecutive_failures_and_no_data_is_not_a_failure() -> None:
    from relearn.core import health

    ok = [health.judge_check("error-rate", 0.01, 0.05, False), health.availability(2, 2)]
    bad = [health.judge_check("error-rate", 0.5, 0.05, False), health.availability(2, 2)]
    blind = [health.judge_check("error-rate", None, 0.05, False), health.availability(2, 2)]
    first = health.assess(bad, 0, threshold=2)
    assert (first.failures, first.roll_back) == (1, False)
    second = health.assess(bad, first.failures, threshold=2)
    assert second.roll_back
    assert second.message() == "error-rate: 0.5 > max 0.05"
    assert health.assess(ok, 1, threshold=2).failures == 0  # a healthy check resets the count
    assert health.assess(blind, 1, threshold=2).failures == 0  # no data: reported, not a failure
    assert blind[0].result == "NoData"
    assert health.judge_check("error-rate", None, 0.05, True).result == "Failing"  # rollback.failOnNoData
    down = health.availability(1, 2)
    assert down.result == "Failing"
    assert down.describe() == "availability: 50% of replicas available"
