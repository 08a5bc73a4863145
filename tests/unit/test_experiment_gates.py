"""The gates and the phase machine around an experiment's analysis
(:mod:`relearn.core.experiment`): what a daemon turn does in each phase,
where a decision ends, one experiment per model, and Manual promotion's
approval."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.api.abexperiment import TERMINAL_PHASES, DecisionOutcome, ExperimentPhase
from relearn.core import experiment

PHASES: tuple[str | None, ...] = (None, *get_args(ExperimentPhase))
DECISIONS: tuple[str | None, ...] = (None, *get_args(DecisionOutcome))


def test_a_promoted_experiment_watches_its_champion() -> None:
    assert experiment.turn_action("Promoted", None) == "Watch"
    assert experiment.turn_action("Promoted", "RollBack") == "Watch"


@pytest.mark.parametrize("phase", [p for p in TERMINAL_PHASES if p != "Promoted"])
def test_an_ended_experiment_does_nothing_more(phase: str) -> None:
    assert experiment.turn_action(phase, "Reject") == "Done"


@pytest.mark.parametrize("decision", ["Promote", "Reject", "Inconclusive", "Abort"])
def test_a_decision_taken_is_carried_out_before_anything_else(decision: str) -> None:
    assert experiment.turn_action("Progressing", decision) == "Settle"
    assert experiment.turn_action(None, decision) == "Settle"


def test_a_running_experiment_without_an_ending_decision_advances() -> None:
    assert experiment.turn_action(None, None) == "Advance"
    assert experiment.turn_action("Pending", None) == "Advance"
    assert experiment.turn_action("Progressing", "Continue") == "Advance"
    assert experiment.turn_action("Promoting", None) == "Settle"


@given(phase=st.sampled_from(PHASES), decision=st.sampled_from(DECISIONS))
def test_every_phase_and_decision_has_one_action_and_settling_has_an_end(
    phase: str | None, decision: str | None
) -> None:
    action = experiment.turn_action(phase, decision)
    end = experiment.end_phase(phase, decision)
    if action == "Settle" and phase != "Promoting":
        assert end == experiment.END_PHASES[decision or ""]
    if action in ("Done", "Watch"):
        assert phase in TERMINAL_PHASES
    if end is not None:
        assert end in get_args(ExperimentPhase)


def test_a_promotion_under_way_ends_promoted_via_promoting() -> None:
    assert experiment.end_phase("Promoting", "Promote") == "Promoting"
    assert experiment.end_phase("Promoted", "Promote") is None
    assert experiment.end_phase("Progressing", "Continue") is None
    assert experiment.end_phase("Progressing", None) is None


def test_each_ending_decision_is_announced_with_its_own_event() -> None:
    assert experiment.conclusion_event("Promote") == ("Normal", "PromotionStarted")
    assert experiment.conclusion_event("Reject") == ("Warning", "ChallengerRejected")
    assert experiment.conclusion_event("Inconclusive") == ("Warning", "ExperimentInconclusive")
    assert experiment.conclusion_event("Abort") == ("Warning", "ExperimentAborted")


def test_automatic_promotion_needs_no_approval() -> None:
    gate = experiment.promotion_gate("Automatic", challenger="1.1.0", approval=None, requested_by=None)
    assert gate == experiment.Gate(True, "automatic")


def test_manual_promotion_waits_for_the_approve_annotation() -> None:
    gate = experiment.promotion_gate("Manual", challenger="1.1.0", approval=None, requested_by="ana")
    assert not gate.go


@pytest.mark.parametrize("approval", ["true", "1.1.0", " 1.1.0 "])
def test_manual_promotion_goes_when_approved_and_names_who_approved(approval: str) -> None:
    assert experiment.promotion_gate("Manual", challenger="1.1.0", approval=approval, requested_by="ana") == (
        experiment.Gate(True, "approved by ana")
    )
    assert experiment.promotion_gate("Manual", challenger="1.1.0", approval=approval, requested_by=None).how == (
        "approved"
    )


@given(approval=st.one_of(st.none(), st.text(max_size=12)))
def test_an_approval_for_another_version_never_promotes(approval: str | None) -> None:
    gate = experiment.promotion_gate("Manual", challenger="1.1.0", approval=approval, requested_by=None)
    assert gate.go == (approval is not None and approval.strip() in ("true", "1.1.0"))


def other(
    name: str, phase: str | None, model: str = "ranker", created: str = "2026-01-01T00:00:00Z", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"model": model},
        "status": {"phase": phase, **status} if phase else status,
    }


def blocker(others: list[dict[str, Any]], created: str = "2026-01-02T00:00:00Z") -> experiment.Blocker | None:
    return experiment.blocking_experiment(name="mine", created=created, model="ranker", others=others)


@pytest.mark.parametrize("phase", ["Progressing", "Promoting"])
def test_a_running_experiment_of_the_same_model_holds_a_new_one(phase: str) -> None:
    assert blocker([other("theirs", phase)]) == experiment.Blocker("theirs", phase)


def test_a_promoted_experiment_rolling_back_holds_a_new_one() -> None:
    rolling = other("theirs", "Promoted", decision={"outcome": "RollBack"})
    assert blocker([rolling]) == experiment.Blocker("theirs", "Promoted")
    assert blocker([other("theirs", "Promoted", decision={"outcome": "Promote"})]) is None


def test_other_models_and_ended_experiments_hold_nothing() -> None:
    assert blocker([other("theirs", "Progressing", model="search")]) is None
    assert blocker([other("theirs", phase) for phase in ("Rejected", "Aborted", "RolledBack")]) is None
    assert blocker([other("mine", "Progressing")]) is None  # itself


def test_among_experiments_starting_at_once_the_oldest_goes_first() -> None:
    starting = {"conditions": [{"type": "ChallengerReady", "status": "False", "reason": "NotReady"}]}
    older = other("theirs", "Pending", created="2026-01-01T00:00:00Z", **starting)
    assert blocker([older]) == experiment.Blocker("theirs", "Pending")
    assert blocker([older], created="2025-12-31T00:00:00Z") is None  # this one is older
    same_time = other("aaa", "Pending", created="2026-01-02T00:00:00Z", **starting)
    assert blocker([same_time]) == experiment.Blocker("aaa", "Pending")  # then the name decides


def test_an_older_experiment_stuck_on_something_to_fix_does_not_hold_a_new_one() -> None:
    stuck = {"conditions": [{"type": "ChallengerReady", "status": "False", "reason": "ServiceNotFound"}]}
    assert blocker([other("theirs", "Pending", created="2025-01-01T00:00:00Z", **stuck)]) is None
