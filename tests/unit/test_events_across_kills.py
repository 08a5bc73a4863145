"""Decision Events across operator kills: an experiment's start, promotion
and warm or cold rollback, or its rejection, with the operator killed before
each write (Events included) in turn, posts every Event of the clean run
exactly once — none lost (they go before the status write, and a redone
turn posts them again) and none doubled (a redone turn names them from the
same status, and the API refuses the second; relearn.handlers.outcome).

Uses the kill-between-writes harness of test_switch_crashes. The same for a
retraining: a turn cut short after creating the Job, the ModelVersion or
the ABExperiment leaves their Events to the turn that records them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from fake_kube import FakeKube
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.handlers import drift
from test_daemons import NOW, champion_version, drift_policy
from test_switch_crashes import CrashingKube, switches


async def _crashing_post_event(
    self: CrashingKube, involved: Mapping[str, Any], type_: str, reason: str, message: str, key: str | None = None
) -> bool:
    self._write()  # an Event is one more write a kill can come before
    return await super(CrashingKube, self).post_event(involved, type_, reason, message, key)


def reasons(kube: CrashingKube) -> Counter[str]:
    return Counter(e["reason"] for e in kube.events)


@pytest.mark.parametrize("path", ["warm", "cold", "reject"])
async def test_a_kill_before_any_write_neither_loses_nor_doubles_a_decision_event(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CrashingKube, "post_event", _crashing_post_event)
    clean = await switches(None, path)
    expected = reasons(clean)
    assert {"ChallengerCreated", "ExperimentStarted"} <= set(expected)
    if path != "reject":
        assert {"Promoted", "RollbackStarted", "RolledBack"} <= set(expected)
    assert max(expected.values()) == 1, expected
    for crash_at in range(1, clean.writes + 1):
        kube = await switches(crash_at, path)
        assert reasons(kube) == expected, f"killed before write {crash_at}"


JOB = "ranker-drift-rt-1-abcdef"
RESULT = '{"uri": "/out/1.1.0", "sha256": "' + "a" * 64 + '", "metrics": {"accuracy": 0.9, "championAccuracy": 0.8}}'


def retraining_world(job_status: dict[str, Any]) -> tuple[FakeKube, DriftPolicySpec]:
    kube = FakeKube()
    champion_version(kube)
    kube.add("jobs", {"metadata": {"name": JOB, "labels": {"relearn.dev/version": "1.1.0"}}, "status": job_status})
    body = drift_policy(kube, "http://127.0.0.1:9", experiment={"workload": {"name": "ranker"}})
    return kube, DriftPolicySpec.model_validate(body["spec"])


async def advance(kube: FakeKube, spec: DriftPolicySpec, outcome: str) -> list[str]:
    record = RetrainingRecord(job=JOB, sequence=1, outcome=outcome, model_version="1.1.0")  # type: ignore[arg-type]
    progress = await drift.retraining.advance(
        kube, name="ranker-drift", namespace="default", uid="uid-ranker-drift", spec=spec, record=record, now=NOW
    )
    assert progress is not None
    return [event.reason for event in progress.events]


async def test_a_job_created_by_a_turn_cut_short_still_gets_its_started_event() -> None:
    # The turn created the Job, then died before recording the start and posting its Event.
    kube, spec = retraining_world({})
    assert await advance(kube, spec, "Requested") == ["RetrainingStarted"]
    assert len(kube.of("jobs")) == 1
    assert await advance(kube, spec, "Running") == []  # once the start is recorded, no second Event


async def test_a_version_and_experiment_created_by_a_turn_cut_short_still_get_their_events() -> None:
    # A turn registers the version and creates its experiment, and dies before recording it.
    kube, spec = retraining_world({"conditions": [{"type": "Complete", "status": "True"}]})
    kube.add(
        "pods",
        {
            "metadata": {"name": f"{JOB}-x", "labels": {"job-name": JOB}},
            "status": {"containerStatuses": [{"state": {"terminated": {"message": RESULT, "exitCode": 0}}}]},
        },
    )
    first = await advance(kube, spec, "Running")
    assert first == ["ModelVersionRegistered", "ExperimentCreated"]
    # The redone turn (the same recorded state) finds both made: the same Events, which the
    # API refuses as duplicates (same names), and no second object.
    assert await advance(kube, spec, "Running") == first
    assert len(kube.of("modelversions")) == 2
    assert len(kube.of("abexperiments")) == 1
