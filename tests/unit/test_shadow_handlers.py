"""The shadow stage in the experiment handler, against an in-memory API and
given paired counts: it starts with the mirror on and no live weight, goes
live when the paired test passes (mirror off, first weight, a new live
window), restores a mirror changed behind its back, and rejects a challenger
worse on the same requests."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from fake_kube import FakeKube
from relearn.core import experiment as judging
from relearn.core import stats
from relearn.handlers.experiments import analysis, arms
from relearn.handlers.outcome import Outcome
from test_switch_handlers import NOW, context, world

SHADOW = {"weight": 100, "pairs": 5000}


def shadow_world(kube: FakeKube, **shadow: Any) -> dict[str, Any]:
    body = world(kube, [{"name": "ranker", "port": 80, "weight": 100}])
    body["spec"]["traffic"] = {"weight": 30, "steps": [10], "shadow": {**SHADOW, **shadow}}
    body["spec"]["analysis"] = {"minSamplesPerArm": 100}
    return body


def given_pairs(monkeypatch: pytest.MonkeyPatch, pairs: stats.Pairs) -> None:
    async def measured(ctx: Any, split: Any, since: datetime.datetime) -> judging.ShadowLook:
        return judging.ShadowLook(pairs, ctx.now - since)

    monkeypatch.setattr(analysis, "measure_pairs", measured)


def route(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[("httproutes", "default", "ranker")]["spec"]["rules"][0]


async def _started(kube: FakeKube, body: dict[str, Any]) -> tuple[Any, Outcome]:
    ctx = context(kube, body, NOW, phase="Pending")
    split, champion, version = await arms.resolve(ctx)
    await arms.ensure_challenger(ctx, split, champion, version, 10)
    outcome = Outcome()
    await analysis._start(ctx, outcome, split, version, 10, "ready")
    return split, outcome


async def test_a_shadow_stage_starts_with_the_mirror_on_and_no_live_traffic() -> None:
    kube = FakeKube()
    body = shadow_world(kube)
    _, outcome = await _started(kube, body)
    rule = route(kube)
    assert [ref["weight"] for ref in rule["backendRefs"]] == [100, 0]
    assert rule["filters"][0]["requestMirror"]["percent"] == 100
    assert outcome.status["stage"] == "Shadow"
    assert outcome.status["shadow"]["mirror"] == 100
    assert [e.reason for e in outcome.events] == ["ShadowStarted"]


async def test_a_passed_shadow_stage_turns_the_mirror_off_and_starts_the_live_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    body = shadow_world(kube)
    split, started = await _started(kube, body)
    given_pairs(monkeypatch, stats.Pairs(600, 12, 48))
    later = NOW + datetime.timedelta(minutes=10)
    ctx = context(kube, body, later, **{**started.status, "stage": "Shadow"})
    outcome = Outcome()
    await analysis.analyse_shadow(ctx, split, outcome)
    rule = route(kube)
    assert "filters" not in rule
    assert [ref["weight"] for ref in rule["backendRefs"]] == [90, 10]  # the first step
    assert outcome.status["stage"] == "Live"
    assert outcome.status["startTime"] == later.isoformat().replace("+00:00", "Z")  # the live window starts now
    assert outcome.status["shadow"]["outcome"] == "Live"
    assert outcome.status["shadow"]["pValue"] < 0.05
    assert "ShadowPassed" in [e.reason for e in outcome.events]


async def test_a_mirror_changed_behind_the_experiments_back_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    body = shadow_world(kube)
    split, started = await _started(kube, body)
    route(kube)["filters"][0]["requestMirror"]["percent"] = 10  # kubectl edit
    given_pairs(monkeypatch, stats.Pairs(50, 1, 2))
    outcome = Outcome()
    await analysis.analyse_shadow(context(kube, body, NOW, **{**started.status, "stage": "Shadow"}), split, outcome)
    assert route(kube)["filters"][0]["requestMirror"]["percent"] == 100
    [event] = outcome.events
    assert (event.type, event.reason) == ("Warning", "RouteRestored")
    assert "mirror 10%" in event.message
    assert outcome.status["decision"]["reason"] == "NotEnoughSamples"


async def test_a_challenger_worse_on_the_same_requests_is_rejected_in_shadow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    body = shadow_world(kube, live=False)
    split, started = await _started(kube, body)
    given_pairs(monkeypatch, stats.Pairs(600, 60, 10))
    outcome = Outcome()
    await analysis.analyse_shadow(context(kube, body, NOW, **{**started.status, "stage": "Shadow"}), split, outcome)
    assert outcome.status["decision"]["outcome"] == "Reject"
    assert outcome.status["decision"]["reason"] == "ChallengerWorseOnSameRequests"
    assert [ref["weight"] for ref in route(kube)["backendRefs"]] == [100, 0]  # never took live traffic
