"""What one drift check decides (relearn.core.drift_policy.decide_check):
the Drifted and Retraining conditions, the Events a user sees when drift
starts and ends, and the retraining request, over every state a policy's
status can be in."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.core.drift_policy import Assessment, CheckDecision, decide_check, decide_trigger
from relearn.core.jobs import name_limit
from relearn.core.retraining import request_name
from test_drift_policy import DRIFTED, REFERENCE, assess, policy, window

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)
CLEAN = assess(policy(), REFERENCE, REFERENCE)
UNKNOWN = assess(policy(), REFERENCE, window([1, 1, 1, 1], {"a": 1, "b": 1}))
ASSESSMENTS = {"drifted": DRIFTED, "clean": CLEAN, "unknown": UNKNOWN}


def decide(
    assessment: Assessment,
    *,
    spec: DriftPolicySpec | None = None,
    was_drifted: bool = False,
    consecutive: int = 0,
    last: RetrainingRecord | None = None,
) -> CheckDecision:
    spec = spec or policy()
    return decide_check(
        spec,
        assessment,
        was_drifted=was_drifted,
        consecutive=consecutive,
        last=last,
        policy="fraud",
        uid="0c6f3e8a-uid",
        name_limit=name_limit(spec),
        now=NOW,
    )


def reasons(decision: CheckDecision) -> list[str]:
    return [event.reason for event in decision.events]


def test_drift_starting_is_announced_once_and_its_end_too() -> None:
    assert reasons(decide(DRIFTED)) == ["DriftDetected"]
    assert reasons(decide(DRIFTED, was_drifted=True)) == []  # still drifting: no second Warning
    assert reasons(decide(CLEAN, was_drifted=True)) == ["DriftEnded"]
    assert reasons(decide(CLEAN)) == []
    assert reasons(decide(UNKNOWN, was_drifted=True)) == []  # no data says nothing about the end


def test_the_drifted_condition_names_the_numbers_behind_it() -> None:
    drifted = decide(DRIFTED).drifted
    assert (drifted.type, drifted.status, drifted.reason) == ("Drifted", "True", "DataDrift")
    assert drifted.message.startswith("x: PSI")
    unknown = decide(UNKNOWN).drifted
    assert (unknown.status, unknown.reason) == ("Unknown", "NotEnoughData")


def test_the_request_is_named_by_policy_and_sequence_and_recorded_as_requested() -> None:
    decision = decide(DRIFTED, consecutive=1)
    assert decision.request is not None
    assert decision.request.job == request_name("fraud", "0c6f3e8a-uid", 1, name_limit(policy()))
    assert (decision.request.outcome, decision.request.sequence, decision.request.requested_at) == (
        "Requested",
        1,
        NOW,
    )
    assert decision.retraining is not None
    assert decision.retraining.reason == "Requested"
    assert reasons(decision) == ["DriftDetected", "RetrainingRequested"]
    assert decision.events[-1].message.startswith(decision.request.job)


def test_the_next_request_takes_the_next_sequence() -> None:
    last = RetrainingRecord(job="old", sequence=4, requested_at=NOW - datetime.timedelta(hours=2), outcome="Succeeded")
    decision = decide(DRIFTED, consecutive=3, last=last, was_drifted=True)
    assert decision.request is not None
    assert decision.request.sequence == 5


OUTCOMES = st.sampled_from(["Requested", "Running", "Succeeded", "Failed"])


@st.composite
def last_records(draw: st.DrawFn) -> RetrainingRecord | None:
    if draw(st.booleans()):
        return None
    ago = draw(st.integers(min_value=0, max_value=6 * 3600))
    return RetrainingRecord(
        job="policy-job",
        sequence=draw(st.integers(min_value=0, max_value=1000)),
        requested_at=NOW - datetime.timedelta(seconds=ago),
        outcome=draw(OUTCOMES),
    )


@given(
    kind=st.sampled_from(sorted(ASSESSMENTS)),
    was_drifted=st.booleans(),
    consecutive=st.integers(min_value=0, max_value=50),
    last=last_records(),
    needed=st.integers(min_value=1, max_value=5),
    retraining=st.booleans(),
)
def test_every_status_gives_one_consistent_decision(
    kind: str, was_drifted: bool, consecutive: int, last: RetrainingRecord | None, needed: int, retraining: bool
) -> None:
    overrides: dict[str, Any] = {"trigger": {"consecutiveChecks": needed, "cooldown": "1h"}}
    if not retraining:
        overrides["retraining"] = None
    spec = policy(**overrides)
    assessment = ASSESSMENTS[kind]
    decision = decide(assessment, spec=spec, was_drifted=was_drifted, consecutive=consecutive, last=last)
    trigger = decide_trigger(spec, assessment, consecutive, last, NOW)

    # The Drifted condition follows the assessment, and its Events its changes.
    assert decision.drifted.status == {"drifted": "True", "clean": "False", "unknown": "Unknown"}[kind]
    assert ("DriftDetected" in reasons(decision)) == (kind == "drifted" and not was_drifted)
    assert ("DriftEnded" in reasons(decision)) == (kind == "clean" and was_drifted)
    assert decision.consecutive == trigger.consecutive

    # A request only on drift, never while one is active, never twice the same sequence.
    if decision.request is not None:
        assert kind == "drifted"
        assert retraining
        assert decision.consecutive >= needed
        assert last is None or last.outcome not in ("Requested", "Running")
        assert decision.request.sequence == (0 if last is None else (last.sequence or 0)) + 1
        assert reasons(decision)[-1] == "RetrainingRequested"
        assert decision.retraining is not None
        assert decision.retraining.status == "True"
    else:
        assert "RetrainingRequested" not in reasons(decision)
        # The Retraining condition of a past request (how it went) is left as it is.
        if last is not None:
            assert decision.retraining is None
        else:
            assert decision.retraining is not None
            assert decision.retraining.reason == "NotRequested"
            assert decision.retraining.message == trigger.why
