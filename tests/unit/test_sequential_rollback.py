"""The sequential health checks as the experiment daemon runs them (an
in-memory API, a stub Prometheus): the counters' state is kept in status
between looks, and a champion that starts failing every request is rolled
back at the first look that shows it, before failureThreshold looks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fake_kube import FakeKube, condition
from relearn.handlers.experiments import daemon
from test_daemons import Answer, prometheus, promoted_experiment, run_daemon

__all__ = ["prometheus"]  # the fixture, used by name


async def test_a_champion_failing_every_request_is_rolled_back_at_the_first_look_showing_it(
    prometheus: Callable[[Answer], Any],
) -> None:
    looks = {"errors": 0}

    def answer(query: str) -> list[tuple[dict[str, str], float]]:
        failing = looks["errors"] >= 2  # healthy at the first two looks, then every request fails
        if query.startswith("sum(relearn_model_errors_total"):  # the cumulative error counter
            looks["errors"] += 1
            return [({}, 5.0 + (50.0 * (looks["errors"] - 2) if failing else 0.0))]
        if query.startswith("sum(relearn_model_predictions_total"):  # predictions + errors, cumulative
            return [({}, 10_000.0 + 50.0 * looks["errors"])]
        if "relearn_model_feedback_total" in query:
            return [({}, 970.0 if 'outcome="correct"' in query else 1000.0)]
        return [({}, 0.1)]  # p99 latency

    kube = FakeKube()
    _, url = await prometheus(answer)
    body = promoted_experiment(kube, url)
    body["spec"]["rollback"] = {"interval": "1s", "bakeInterval": "1s", "failureThreshold": 3, "bakeTime": "1h"}
    kube.objects[("abexperiments", "default", "ranker-1.1.0")]["spec"] = copy.deepcopy(body["spec"])
    stored = kube.objects[("abexperiments", "default", "ranker-1.1.0")]

    def decided() -> bool:
        return (stored["status"].get("decision") or {}).get("outcome") == "RollBack"

    await run_daemon(daemon.run, copy.deepcopy(body), kube, decided, timeout=20)
    assert looks["errors"] == 3  # one look recording the counters, one healthy, one showing the failures
    status = stored["status"]
    assert status["decision"]["reason"] == "HealthCheckFailed"
    assert "error-rate" in status["decision"]["message"]
    assert "above max" in status["decision"]["message"]
    failing = condition(stored, "Healthy")
    assert failing is not None
    assert failing["status"] == "False"
    checks = {c["name"]: c for c in status["health"]["checks"]}
    assert checks["error-rate"]["result"] == "Failing"
    assert checks["error-rate"]["logEvidence"] > 9.2  # log(1 / alpha)
    assert checks["error-rate"]["samplesTotal"] == 10_000.0 + 150.0
