"""What a user relies on from the operator's daemons when things go wrong:
an API outage of a few seconds pauses a daemon for about as long, not a
minute; a turn that fails in any way is recorded on the object and the
daemon goes on; counts that cannot be real give no decision and say why;
a retraining request is recorded before its Job, and gets one Job whatever
fails in between; registering a version again never moves it backwards.

The daemons run as the operator runs them (the same functions kopf calls),
against an in-memory API (tests/unit/fake_kube.py) and a stub Prometheus."""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fake_kube import FakeKube, Stopped, condition
from kubernetes.client import ApiException
from relearn.adapters.kube import translate
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.handlers import drift, guard
from relearn.handlers.experiments import daemon

LOGGER = logging.getLogger("test")
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
Answer = Callable[[str], list[tuple[dict[str, str], float]]]


class StubPrometheus:
    """Answers each query with ``answer(query)`` as an instant vector."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.queries: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        query = str((await request.post())["query"])
        self.queries.append(query)
        result = [{"metric": labels, "value": [time.time(), repr(value)]} for labels, value in self.answer(query)]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
async def prometheus() -> AsyncIterator[Callable[[Answer], Any]]:
    servers: list[TestServer] = []

    async def start(answer: Answer) -> tuple[StubPrometheus, str]:
        stub = StubPrometheus(answer)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", stub.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return stub, str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


def champion_version(kube: FakeKube, **status: Any) -> dict[str, Any]:
    return kube.add(
        "modelversions",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {"name": "ranker-1.0.0"},
            "spec": {
                "model": "ranker",
                "version": "1.0.0",
                "declaredChampion": True,
                "baseModel": {"uri": "/models/base"},
                "baseline": {
                    "features": [
                        {"name": "channel", "type": "categorical", "categories": ["a", "b"], "counts": [5e3, 5e3]}
                    ]
                },
            },
            "status": status,
        },
    )


def drift_policy(kube: FakeKube, url: str, **spec: Any) -> dict[str, Any]:
    body = kube.add(
        "driftpolicies",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "DriftPolicy",
            "metadata": {"name": "ranker-drift"},
            "spec": {
                "model": "ranker",
                "prometheus": {"url": url, "timeout": "1s"},
                "interval": "1s",
                "window": "1m",
                "features": [{"name": "channel", "type": "categorical"}],
                "accuracy": {"enabled": False},
                "trigger": {"consecutiveChecks": 1, "cooldown": "1h"},
                "retraining": {"image": "trainer:1", "dataset": {"uri": "/data"}, "output": {"uri": "/out"}},
                **spec,
            },
        },
    )
    live = copy.deepcopy(body)
    kube.bodies[("driftpolicies", "default", "ranker-drift")] = live
    return live


def drifted(query: str) -> list[tuple[dict[str, str], float]]:
    """Channel ``a`` takes 90% of traffic (50% at training): drift on every check."""
    return [({"feature": "channel", "category": "a"}, 9000.0), ({"feature": "channel", "category": "b"}, 1000.0)]


async def run_daemon(
    daemon: Any,
    body: dict[str, Any],
    kube: FakeKube,
    until: Callable[[], bool],
    timeout: float,
    memo: dict[str, Any] | None = None,
) -> None:
    """Run a daemon as kopf does until ``until()`` holds; fails if the daemon ends by itself."""
    stopped = Stopped()
    meta = body["metadata"]
    task = asyncio.create_task(
        daemon(
            stopped=stopped,
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            body=kopf.Body(body),
            memo={"kube": kube, "prometheus_url": None, **(memo or {})},
            logger=LOGGER,
        )
    )
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert not task.done(), f"the daemon ended: {task.exception() if not task.cancelled() else 'cancelled'}"
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)
    finally:
        stopped.set()
        await asyncio.wait_for(task, 5)


async def test_an_api_outage_of_a_few_seconds_pauses_the_drift_daemon_for_no_longer(
    prometheus: Callable[[Answer], Any],
) -> None:
    kube = FakeKube()
    _, url = await prometheus(lambda q: [])  # no data: MetricsAvailable=False, a status write every turn
    body = drift_policy(kube, url, retraining=None)
    champion_version(kube)
    await run_daemon(drift.monitor, body, kube, lambda: len(kube.status_writes) >= 1, timeout=10)

    kube.outage(3.0)
    ended = kube.outage_until
    await run_daemon(drift.monitor, body, kube, lambda: any(t > ended for t, *_ in kube.status_writes), timeout=15)

    resumed = next(t for t, *_ in kube.status_writes if t > ended)
    assert resumed - ended <= 5.0
    stalled = condition(kube.objects[("driftpolicies", "default", "ranker-drift")], guard.STALLED)
    assert stalled is not None
    assert stalled["status"] == "False"
    assert stalled["reason"] == "Recovered"
    assert "unreachable" in stalled["message"]


async def test_a_turn_failing_unexpectedly_is_recorded_and_the_experiment_daemon_goes_on() -> None:
    kube = FakeKube()
    champion_version(kube)
    body = kube.add(
        "abexperiments",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "metadata": {"name": "ranker-1.1.0", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"model": "ranker", "challenger": "1.1.0", "workload": {"name": "ranker"}},
        },
    )
    broken = {"left": 1}
    original = kube.list_objects

    async def failing_once(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if broken["left"]:
            broken["left"] -= 1
            raise KeyError("metadata")  # a bug, say
        return await original(*args, **kwargs)

    kube.list_objects = failing_once  # type: ignore[method-assign]
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]
    await run_daemon(
        daemon.run, copy.deepcopy(body), kube, lambda: condition(stored, guard.STALLED) is not None, timeout=10
    )
    stalled = condition(stored, guard.STALLED)
    assert stalled is not None
    assert (stalled["status"], stalled["reason"]) == ("True", "TurnFailed")
    assert "KeyError" in stalled["message"]
    assert [e["reason"] for e in kube.events] == ["TurnFailed"]

    # The daemon went on: the next turn finished (waiting for the missing ModelVersion) and says so.
    await run_daemon(
        daemon.run,
        copy.deepcopy(stored),
        kube,
        lambda: (condition(stored, guard.STALLED) or {}).get("status") == "False",
        timeout=20,
    )
    assert (condition(stored, "ChallengerReady") or {}).get("reason") == "ModelVersionNotFound"


class CountingStopped(Stopped):
    """kopf's DaemonStopped that records the wait of every pause and returns
    at once (no real sleep), and stops the daemon after ``pauses`` of them."""

    def __init__(self, pauses: int) -> None:
        super().__init__()
        self.asked: list[float | None] = []
        self.pauses = pauses

    async def wait(self, timeout: float | None = None) -> None:
        self.asked.append(timeout)
        if len(self.asked) >= self.pauses:
            self.set()
        await asyncio.sleep(0)


async def test_an_experiment_whose_deployment_does_not_exist_looks_again_less_and_less_often() -> None:
    kube = FakeKube()
    champion_version(kube)
    kube.add(
        "modelversions",
        {
            "metadata": {"name": "ranker-1.1.0"},
            "spec": {
                "model": "ranker",
                "version": "1.1.0",
                "baseModel": {"uri": "/models/base"},
                "adapter": {"uri": "/adapters/1.1.0", "sha256": "a" * 64},
            },
        },
    )
    body = kube.add(
        "abexperiments",
        {
            "metadata": {"name": "ranker-1.1.0", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"model": "ranker", "challenger": "1.1.0", "workload": {"name": "ranker"}},
        },
    )
    stopped = CountingStopped(pauses=6)
    meta = body["metadata"]
    run = daemon.run(
        stopped=stopped,
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        body=kopf.Body(copy.deepcopy(body)),
        memo={"kube": kube, "prometheus_url": None},
        logger=LOGGER,
    )
    await asyncio.wait_for(run, 10)
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]
    assert (condition(stored, "ChallengerReady") or {}).get("reason") == "WorkloadNotFound"
    # 10 s, then doubling to the 60 s safety poll: a thousand such experiments cost a look a minute each.
    assert stopped.asked == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def promoted_experiment(kube: FakeKube, url: str) -> dict[str, Any]:
    """1.1.0 promoted 10 s ago with 970 of 1000 correct, its Deployment available."""
    for version, phase in (("1.0.0", "Archived"), ("1.1.0", "Champion")):
        kube.add(
            "modelversions",
            {
                "metadata": {"name": f"ranker-{version}"},
                "spec": {"model": "ranker", "version": version, "baseModel": {"uri": "/m"}},
                "status": {"phase": phase},
            },
        )
    kube.add(
        "deployments",
        {
            "metadata": {"name": "ranker-1-1-0", "labels": {"relearn.dev/model": "ranker"}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"relearn.dev/version": "1.1.0"}}}},
            "status": {"availableReplicas": 1},
        },
    )
    promoted_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10))
    return kube.add(
        "abexperiments",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "metadata": {"name": "ranker-1.1.0"},
            "spec": {
                "model": "ranker",
                "challenger": "1.1.0",
                "workload": {"name": "ranker"},
                "prometheus": {"url": url, "timeout": "1s"},
                "rollback": {"interval": "1s", "failureThreshold": 1, "bakeTime": "1h"},
            },
            "status": {
                "phase": "Promoted",
                "champion": "1.0.0",
                "promotionTime": promoted_at,
                "workloads": {"champion": "ranker", "challenger": "ranker-1-1-0"},
                "arms": {"challenger": {"samples": 1000.0, "successes": 970.0, "rate": 0.97}},
            },
        },
    )


async def test_health_checks_reading_negative_feedback_counts_say_why_and_never_roll_back(
    prometheus: Callable[[Answer], Any],
) -> None:
    def answer(query: str) -> list[tuple[dict[str, str], float]]:
        if "relearn_model_feedback_total" in query and 'outcome="correct"' in query:
            return [({}, -40.0)]  # a counter reset gone wrong, a broken recording rule...
        if "relearn_model_feedback_total" in query:
            return [({}, -50.0)]
        return [({}, 0.0)]

    kube = FakeKube()
    _, url = await prometheus(answer)
    body = promoted_experiment(kube, url)
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]
    turns = 0

    def two_looks() -> bool:
        nonlocal turns
        turns = len([w for w in kube.status_writes if w[1] == "abexperiments"])
        return turns >= 2

    await run_daemon(daemon.run, copy.deepcopy(body), kube, two_looks, timeout=15)
    healthy = condition(stored, "Healthy")
    assert healthy is not None
    assert (healthy["status"], healthy["reason"]) == ("Unknown", "InvalidMetrics")
    assert "negative" in healthy["message"]
    assert stored["status"].get("decision") is None  # no rollback decided on counts that cannot be real
    assert [e["reason"] for e in kube.events] == ["InvalidMetrics"]  # once, not every look


async def test_a_retraining_request_gets_one_job_while_status_writes_keep_failing(
    prometheus: Callable[[Answer], Any],
) -> None:
    kube = FakeKube()
    _, url = await prometheus(drifted)
    champion_version(kube)
    body = drift_policy(kube, url)
    kube.failing_status_writes["driftpolicies"] = 6  # the request's record, and more, are lost at first
    policy = kube.objects[("driftpolicies", "default", "ranker-drift")]

    await run_daemon(
        drift.monitor,
        body,
        kube,
        lambda: ((policy.get("status") or {}).get("lastRetraining") or {}).get("outcome") == "Running",
        timeout=30,
    )
    jobs = kube.of("jobs")
    assert len(jobs) == 1
    record = policy["status"]["lastRetraining"]
    assert record["job"] == jobs[0]["metadata"]["name"]
    assert record["sequence"] == 1
    # The request was in status before its Job existed.
    first_record = next(
        t for t, plural, _, s in kube.status_writes if plural == "driftpolicies" and "lastRetraining" in s
    )
    job_created = next(t for t, plural, _ in kube.created if plural == "jobs")
    assert first_record < job_created
    reasons = [e["reason"] for e in kube.events]
    assert reasons.count("RetrainingStarted") == 1
    assert reasons.count("RetrainingRequested") == 1  # the redone turns post no second Event


async def test_registering_a_trained_version_again_never_moves_it_back_from_champion() -> None:
    """The policy could not record its retraining's outcome: the next turns
    register the version again, while it has since become champion."""
    kube = FakeKube()
    champion_version(kube, phase="Archived")
    job = "ranker-drift-rt-1-abcdef"
    kube.add(
        "modelversions",
        {
            "metadata": {"name": "ranker-1.1.0"},
            "spec": {"model": "ranker", "version": "1.1.0", "baseModel": {"uri": "/m"}, "source": {"job": job}},
            "status": {"phase": "Champion", "history": [{"action": "Promoted"}]},
        },
    )
    kube.add(
        "jobs",
        {
            "metadata": {"name": job, "labels": {"relearn.dev/version": "1.1.0"}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        },
    )
    message = (
        '{"uri": "/out/1.1.0", "sha256": "' + "a" * 64 + '", "metrics": {"accuracy": 0.9, "championAccuracy": 0.8}}'
    )
    kube.add(
        "pods",
        {
            "metadata": {"name": f"{job}-x", "labels": {"job-name": job}},
            "status": {"containerStatuses": [{"state": {"terminated": {"message": message, "exitCode": 0}}}]},
        },
    )
    body = drift_policy(kube, "http://127.0.0.1:9")
    spec = DriftPolicySpec.model_validate(body["spec"])
    record = RetrainingRecord(job=job, sequence=1, outcome="Running", model_version="1.1.0")
    for _ in range(3):
        progress = await drift.retraining.advance(
            kube, name="ranker-drift", namespace="default", uid="uid-ranker-drift", spec=spec, record=record, now=NOW
        )
        assert progress is not None
        assert progress.record.outcome == "Succeeded"
    newer = kube.objects[("modelversions", "default", "ranker-1.1.0")]
    assert newer["status"]["phase"] == "Champion"
    assert newer["status"]["history"] == [{"action": "Promoted"}]
    assert kube.of("abexperiments") == []  # no second experiment for a version that had one
    assert "ModelVersionRegistered" not in [e["reason"] for e in kube.events]


async def test_a_promoted_champion_recorded_otherwise_is_champion_again_and_still_watched(
    prometheus: Callable[[Answer], Any],
) -> None:
    kube = FakeKube()
    _, url = await prometheus(lambda q: [({}, 0.0)])
    body = promoted_experiment(kube, url)
    kube.objects[("modelversions", "default", "ranker-1.1.0")]["status"] = {"phase": "Registered"}
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]
    await run_daemon(
        daemon.run, copy.deepcopy(body), kube, lambda: condition(stored, "Healthy") is not None, timeout=15
    )
    champions = [v["metadata"]["name"] for v in kube.of("modelversions") if v["status"].get("phase") == "Champion"]
    assert champions == ["ranker-1.1.0"]
    assert "ChampionRestored" in [e["reason"] for e in kube.events]


async def test_an_api_outage_of_a_few_seconds_pauses_health_checks_for_no_longer(
    prometheus: Callable[[Answer], Any],
) -> None:
    kube = FakeKube()
    _, url = await prometheus(lambda q: [({}, 0.0)])
    body = promoted_experiment(kube, url)
    writes = lambda: [t for t, plural, *_ in kube.status_writes if plural == "abexperiments"]  # noqa: E731
    stopped = Stopped()
    task = asyncio.create_task(
        daemon.run(
            stopped=stopped,
            name="ranker-1.1.0",
            namespace="default",
            body=kopf.Body(copy.deepcopy(body)),
            memo={"kube": kube},
            logger=LOGGER,
        )
    )
    try:
        deadline = time.monotonic() + 10
        while not writes():
            assert not task.done()
            assert time.monotonic() < deadline, "no status write before the outage"
            await asyncio.sleep(0.05)
        kube.outage(3.0)
        ended = kube.outage_until
        while not [t for t in writes() if t > ended]:
            assert not task.done()
            assert time.monotonic() < ended + 10, "no health check after the outage"
            await asyncio.sleep(0.05)
    finally:
        stopped.set()
        await asyncio.wait_for(task, 5)
    assert min(t for t in writes() if t > ended) - ended <= 5.0


@pytest.mark.parametrize(
    ("error", "reason", "retry"),
    [
        (guard.APIUnreachable("the Kubernetes API is unreachable (ConnectionResetError)"), "APIUnreachable", 1.0),
        (translate(ApiException(status=403, reason="Forbidden")), "KubernetesAPIError", 2.0),
        (OverflowError("date value out of range"), "InvalidSetting", 10.0),
        (KeyError("metadata"), "TurnFailed", 10.0),
    ],
)
def test_every_failure_of_a_turn_has_a_reason_and_a_retry_within_seconds(
    error: Exception, reason: str, retry: float
) -> None:
    failure = guard.classify(error)
    assert (failure.reason, failure.retry) == (reason, retry)
    assert failure.message


def test_a_zero_or_huge_interval_never_hot_loops_or_overflows() -> None:
    assert guard.interval_seconds("0s") == 1.0
    assert guard.interval_seconds("99999999999d") == guard.MAX_WAIT
    assert guard.interval_seconds("not a duration") == guard.FAILED_RETRY
