"""A/B experiments end to end in the sandbox, with real HTTP traffic through
the gateway: two servers whose true accuracy differs, a load generator
sending labelled feedback, the sandbox's real Prometheus, and the operator
deciding.

Sandbox-only: the servers are local processes, and one test stops and
starts the sandbox's Prometheus."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from ab_server import (
    GROUP,
    MODEL,
    VERSION,
    Served,
    deleted,
    experiment,
    experiments,
    feedback_counters,
    finish,
    load,
    phase_of,
    recorded_champion,
    relearn,
    started,
    under_load,
)
from kubernetes import client
from relearn_sandbox.testing import ControlPlane, condition, wait_for


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.90}], indirect=True)
def test_better_challenger_is_promoted_on_live_traffic(served: str, api_client: client.ApiClient, sandbox: Any) -> None:
    namespace = served.namespace
    custom, core, apps = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    running = started(custom, namespace, experiment(sandbox.prometheus_url))
    assert running["status"]["weights"] == {"champion": 60, "challenger": 40}
    assert condition(running, "ChallengerReady")
    challenger = apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace)
    assert challenger.spec.template.metadata.labels["relearn.dev/version"] == "1.1.0"
    assert {e.name: e.value for e in challenger.spec.template.spec.containers[0].env}[
        "RELEARN_MODEL_VERSION"
    ] == "1.1.0"
    assert challenger.metadata.owner_references[0].kind == "ABExperiment"
    # the champion's Service now selects the champion's pods only
    assert core.read_namespaced_service(MODEL, namespace).spec.selector["relearn.dev/version"] == "1.0.0"

    # The gateway moves real traffic in the reported proportion (2 000 requests; fewer than a decision needs).
    share = finish(load(sandbox.gateway_url, f"{MODEL}.test", requests=2000))
    backends = share["backends"]
    assert sum(backends.values()) == 2000
    measured = 100 * backends.get(f"{MODEL}-1-1-0", 0) / 2000
    assert abs(measured - 40) <= 3, f"challenger got {measured:.1f}% of requests at weight 40"

    promoted = under_load(load(sandbox.gateway_url, f"{MODEL}.test", seconds=180), custom, namespace, "Promoted", 180)
    status = promoted["status"]
    assert status["decision"]["outcome"] == "Promote"
    assert status["weights"] == {"champion": 0, "challenger": 100}
    assert status["statistic"]["method"] == "sequential"
    assert status["statistic"]["pValue"] < 0.05
    assert status["statistic"]["ciLower"] > 0
    assert status["statistic"]["lift"] >= 0.02
    assert "p=" in status["decision"]["message"]
    # status numbers are the servers' own counters (Prometheus extrapolates the window edges a little)
    for arm, version in (("champion", "1.0.0"), ("challenger", "1.1.0")):
        correct, total = feedback_counters(core, namespace, version)
        measured_arm = status["arms"][arm]
        assert measured_arm["samples"] >= 1000
        assert measured_arm["samples"] <= total * 1.05
        assert abs(measured_arm["rate"] - correct / total) < 0.03
    assert phase_of(custom, namespace, "1.1.0") == "Champion"
    assert phase_of(custom, namespace, "1.0.0") == "Archived"
    assert recorded_champion(custom, namespace) == ("1.1.0", 0)  # the record, created at the first hand-over
    mv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", f"{MODEL}-1.1.0")
    (entry,) = mv["status"]["history"]
    assert entry["action"] == "Promoted"
    assert entry["triggeredBy"] == f"abexperiment/{MODEL}-1.1.0"
    # the new champion's workload no longer belongs to the experiment; the old one stays warm
    assert not apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace).metadata.owner_references
    assert apps.read_namespaced_deployment(MODEL, namespace).status.ready_replicas == 1
    reasons = [e.reason for e in core.list_namespaced_event(namespace).items]
    assert {"ChallengerCreated", "ExperimentStarted", "PromotionStarted", "Promoted"} <= set(reasons)


@pytest.mark.parametrize("served", [{"1.0.0": 0.90, "1.1.0": 0.85}], indirect=True)
def test_worse_challenger_is_rejected_and_missing_data_decides_nothing(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served.namespace
    custom, core, apps = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url, minSamplesPerArm=300)
    )
    experiments(custom, namespace, lambda a: condition(a, "MetricsAvailable"))
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        # Prometheus goes away mid-experiment: Inconclusive, weights unchanged, no decision.
        assert control_plane.thread is not None
        control_plane.thread.run(sandbox.prometheus.stop())
        try:
            held = experiments(custom, namespace, lambda a: condition(a, "Inconclusive"), timeout=60)
            assert condition(held, "MetricsAvailable", "False")
            assert held["status"]["phase"] == "Progressing"
            assert held["status"]["weights"] == {"champion": 60, "challenger": 40}
            assert held["status"]["decision"]["outcome"] == "Continue"
        finally:
            control_plane.thread.run(sandbox.prometheus.start())
        rejected = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Rejected", timeout=180)
    finally:
        finish(generator, stop=True)
    status = rejected["status"]
    assert status["decision"]["outcome"] == "Reject"
    assert status["decision"]["reason"] == "ChallengerNotBetter"
    assert status["statistic"]["ciUpper"] < 0.02
    assert status["weights"] == {"champion": 100, "challenger": 0}
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": MODEL, "port": 80, "weight": 100}]
    wait_for(apps.list_namespaced_deployment, lambda d: d["metadata"]["name"] == MODEL, namespace=namespace)
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]
    assert phase_of(custom, namespace, "1.1.0") == "Rejected"
    reasons = [e.reason for e in core.list_namespaced_event(namespace).items]
    assert {"MetricsUnavailable", "MetricsRestored", "ChallengerRejected"} <= set(reasons)


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.95}], indirect=True)
def test_manual_promotion_waits_for_relearn_promote(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served.namespace
    custom = client.CustomObjectsApi(api_client)
    body = experiment(sandbox.prometheus_url, minSamplesPerArm=300)
    body["spec"]["promotion"] = "Manual"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    experiments(custom, namespace, lambda a: (a.get("status") or {}).get("phase") == "Progressing")
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        waiting = experiments(custom, namespace, lambda a: condition(a, "AwaitingApproval"), timeout=120)
        assert waiting["status"]["phase"] == "Progressing"
        assert waiting["status"]["weights"] == {"champion": 60, "challenger": 40}
        assert waiting["status"]["decision"]["reason"] == "AwaitingApproval"
        approved = relearn(control_plane, "promote", f"{MODEL}-1.1.0", "-n", namespace)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.startswith("approved")
        promoted = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Promoted", timeout=60)
    finally:
        finish(generator, stop=True)
    assert "(approved by " in promoted["status"]["decision"]["message"]
    assert promoted["status"]["decision"]["message"].endswith("(relearn CLI))")
    assert promoted["metadata"]["annotations"]["relearn.dev/approve"] == "1.1.0"
    again = relearn(control_plane, "promote", f"{MODEL}-1.1.0", "-n", namespace)  # twice = once
    assert again.returncode == 0, again.stderr
    assert "promoted already" in again.stdout
    refused = relearn(control_plane, "abort", f"{MODEL}-1.1.0", "-n", namespace)
    assert refused.returncode == 1
    assert "is Promoted: nothing to abort" in refused.stderr


@pytest.mark.parametrize("served", [{"1.0.0": 0.9, "1.1.0": 0.9}], indirect=True)
def test_abort_and_deletion_send_all_traffic_back_to_the_champion(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    namespace = served.namespace
    custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
    route_of = lambda: custom.get_namespaced_custom_object(  # noqa: E731
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL
    )["spec"]["rules"][0]["backendRefs"]
    original = [{"name": MODEL, "port": 80, "weight": 100}]
    name = f"{MODEL}-1.1.0"

    started(custom, namespace, experiment(sandbox.prometheus_url))
    assert len(route_of()) == 2
    for _ in range(2):  # idempotent
        aborted = relearn(control_plane, "abort", name, "-n", namespace)
        assert aborted.returncode == 0, aborted.stderr
    done = experiments(custom, namespace, lambda a: a["status"].get("phase") == "Aborted", timeout=60)
    assert done["status"]["decision"]["outcome"] == "Abort"
    assert "relearn CLI" in done["status"]["decision"]["message"]
    assert done["status"]["weights"] == {"champion": 100, "challenger": 0}
    assert route_of() == original
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]
    assert phase_of(custom, namespace, "1.1.0") == "Rejected"
    assert "aborted already" in relearn(control_plane, "abort", name, "-n", namespace).stdout

    # Routing changes later (say, another experiment promoted a version);
    # deleting the ended experiment leaves it as it is.
    later = [{"name": MODEL, "port": 80, "weight": 30}, {"name": "someone-else", "port": 80, "weight": 70}]
    set_route(custom, namespace, later)
    deleted(custom, namespace, name)
    assert route_of() == later
    set_route(custom, namespace, original)

    # Deleting a running experiment aborts it too: the finalizer restores routing.
    started(custom, namespace, experiment(sandbox.prometheus_url))
    running_route = route_of()
    assert len(running_route) == 2

    # One experiment per model at a time: a second one waits, and deleting it touches nothing.
    second = experiment(sandbox.prometheus_url)
    second["metadata"]["name"] = f"{MODEL}-second"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", second)
    waiting = wait_for(
        custom.list_namespaced_custom_object,
        lambda a: a["metadata"]["name"] == f"{MODEL}-second" and condition(a, "ChallengerReady", "False"),
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural="abexperiments",
    )
    reason = next(c for c in waiting["status"]["conditions"] if c["type"] == "ChallengerReady")["reason"]
    assert reason == "AnotherExperimentRunning"
    deleted(custom, namespace, f"{MODEL}-second")
    assert route_of() == running_route
    assert apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace).metadata.owner_references

    deleted(custom, namespace, name)
    assert route_of() == original
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]


@pytest.mark.parametrize("served", [{"1.0.0": 0.8, "1.1.0": 0.97, "replicas": 2}], indirect=True)
def test_replicas_router_splits_by_ready_pods_promotes_and_rolls_back(
    served: Served, api_client: client.ApiClient, sandbox: Any, control_plane: ControlPlane
) -> None:
    """No mesh, no gateway weights: one Service over both Deployments."""
    namespace = served.namespace
    custom, core, apps = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    body = experiment(sandbox.prometheus_url, minSamplesPerArm=200)
    body["spec"]["routing"] = {"provider": "replicas", "target": MODEL}
    body["spec"]["traffic"] = {"weight": 50}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    experiments(
        custom,
        namespace,
        lambda a: (a.get("status") or {}).get("weights") == {"champion": 50, "challenger": 50},
    )
    assert apps.read_namespaced_deployment(MODEL, namespace).spec.replicas == 1
    assert apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace).spec.replicas == 1
    assert "relearn.dev/version" not in core.read_namespaced_service(MODEL, namespace).spec.selector
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=180)
    try:
        experiments(custom, namespace, lambda a: a["status"].get("phase") == "Promoted", timeout=150)
        settled = experiments(
            custom, namespace, lambda a: a["status"].get("weights") == {"champion": 0, "challenger": 100}, timeout=60
        )
    finally:
        finish(generator, stop=True)
    assert settled["status"]["decision"]["outcome"] == "Promote"
    assert apps.read_namespaced_deployment(MODEL, namespace).spec.replicas == 0
    assert apps.read_namespaced_deployment(f"{MODEL}-1-1-0", namespace).spec.replicas == 2

    # A manual rollback by CLI, asked twice: the previous champion is scaled up, then takes all traffic.
    for _ in range(2):
        asked = relearn(control_plane, "rollback", MODEL, "-n", namespace)
        assert asked.returncode == 0, asked.stderr
    rolled = experiments(custom, namespace, lambda a: a["status"].get("phase") == "RolledBack", timeout=60)
    assert rolled["status"]["weights"] == {"champion": 100, "challenger": 0}
    assert "relearn CLI" in rolled["status"]["decision"]["message"]
    assert apps.read_namespaced_deployment(MODEL, namespace).spec.replicas == 2
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == [MODEL]
    assert phase_of(custom, namespace, "1.0.0") == "Champion"
    assert phase_of(custom, namespace, "1.1.0") == "RolledBack"


@pytest.mark.parametrize("served", [{"1.0.0": 0.9, "1.1.0": 0.9}], indirect=True)
def test_a_route_reapplied_from_git_during_an_experiment_is_restored_within_an_interval(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    namespace = served.namespace
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    started(custom, namespace, experiment(sandbox.prometheus_url))
    set_route(custom, namespace, [{"name": MODEL, "port": 80, "weight": 100}])  # Git's route, kubectl apply'd

    def restored(route: dict[str, Any]) -> bool:
        refs = {r["name"]: r.get("weight") for r in route["spec"]["rules"][0]["backendRefs"]}
        return route["metadata"]["name"] == MODEL and refs == {MODEL: 60, f"{MODEL}-1-1-0": 40}

    wait_for(
        custom.list_namespaced_custom_object,
        restored,
        group="gateway.networking.k8s.io",
        version="v1",
        namespace=namespace,
        plural="httproutes",
        timeout=10,  # analysis.interval is 2 s
    )
    warnings = wait_for(
        core.list_namespaced_event,
        lambda e: e["reason"] == "RouteRestored",
        namespace=namespace,
        timeout=10,
    )
    assert warnings["type"] == "Warning"
    assert "missing" in warnings["message"]


def set_route(custom: client.CustomObjectsApi, namespace: str, refs: list[dict[str, Any]]) -> None:
    """Edit the HTTPRoute's backendRefs as someone else (a later experiment, a GitOps sync) would."""
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL)
    route["spec"]["rules"][0]["backendRefs"] = refs
    custom.replace_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MODEL, route)


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.03}], indirect=True)
def test_far_worse_challenger_is_rejected_at_the_first_look_the_gates_allow(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    namespace = served.namespace
    custom = client.CustomObjectsApi(api_client)
    gate = 100
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", experiment(sandbox.prometheus_url, minSamplesPerArm=gate)
    )
    rejected = under_load(load(sandbox.gateway_url, f"{MODEL}.test", seconds=120), custom, namespace, "Rejected", 120)
    status = rejected["status"]
    assert status["decision"]["outcome"] == "Reject"
    # decided as soon as both arms passed the gate: one 2 s look's worth of traffic later at most
    assert min(status["arms"]["champion"]["samples"], status["arms"]["challenger"]["samples"]) < 3 * gate
    assert status["statistic"]["ciUpper"] < 0
    assert "%" in status["decision"]["message"] or "lift" in status["decision"]["message"]
    assert status["weights"] == {"champion": 100, "challenger": 0}


@pytest.mark.parametrize("served", [{"1.0.0": 0.85, "1.1.0": 0.90}], indirect=True)
def test_a_query_returning_negative_counts_decides_nothing_says_why_and_the_experiment_goes_on(
    served: Served, api_client: client.ApiClient, sandbox: Any
) -> None:
    from relearn.core.promql import FEEDBACK_TOTAL as TOTAL_QUERY

    namespace = served.namespace
    custom = client.CustomObjectsApi(api_client)
    body = experiment(sandbox.prometheus_url, minSamplesPerArm=100, totalQuery=f"-1 * {TOTAL_QUERY}")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=120)
    try:
        refused = experiments(
            custom,
            namespace,
            lambda a: (
                (a.get("status") or {}).get("phase") == "Progressing"
                and condition(a, "Inconclusive")
                and any(c.get("reason") == "InvalidMetrics" for c in a["status"].get("conditions") or ())
            ),
            timeout=90,
        )
        inconclusive = next(c for c in refused["status"]["conditions"] if c["type"] == "Inconclusive")
        assert "negative" in inconclusive["message"]
        assert (refused["status"].get("decision") or {}).get("outcome") in (None, "Continue")
        # the query is fixed: the same daemon decides on the real counts
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "abexperiments", f"{MODEL}-1.1.0", {"spec": {"analysis": {"totalQuery": None}}}
        )
        experiments(custom, namespace, lambda a: condition(a, "Inconclusive", "False"), timeout=90)
    finally:
        finish(generator, stop=True)
    reasons = [e.reason for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items]
    assert reasons.count("InvalidMetrics") == 1


class IgnoresWeights(random.Random):
    """A data plane that does not apply its route's weights: every backend equally likely."""

    def choices(self, population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1) -> list[Any]:
        return super().choices(population, k=k)


@pytest.mark.parametrize("served", [{"1.0.0": 0.9, "1.1.0": 0.9}], indirect=True)
def test_a_router_ignoring_its_weights_trips_the_sample_ratio_guard_and_holds_the_experiment(
    served: Served, api_client: client.ApiClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = served.namespace
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    started(custom, namespace, experiment(sandbox.prometheus_url))
    monkeypatch.setattr(sandbox.gateway, "rng", IgnoresWeights())  # reports 60/40, sends 50/50
    generator = load(sandbox.gateway_url, f"{MODEL}.test", seconds=120)
    try:
        held = experiments(custom, namespace, lambda a: condition(a, "SampleRatioMismatch"), timeout=90)
        event = wait_for(
            core.list_namespaced_event, lambda e: e["reason"] == "SampleRatioMismatch", namespace=namespace, timeout=10
        )
    finally:
        finish(generator, stop=True)
    status = held["status"]
    assert status["phase"] == "Progressing"
    assert status["weights"] == {"champion": 60, "challenger": 40}  # held: no decision, no weight change
    assert status["decision"]["reason"] == "SampleRatioMismatch"
    last = status["measurements"][-1]
    assert last["srmPValue"] < 0.001
    assert 0.4 < last["challengerRequests"] / (last["championRequests"] + last["challengerRequests"]) < 0.6
    assert event["type"] == "Warning"
    assert "router gateway-api" in event["message"]
    assert re.search(r"champion \d+, challenger \d+ requests .* against weights 60/40", event["message"])
