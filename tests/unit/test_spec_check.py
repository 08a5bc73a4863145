"""What the operator writes to status and Events when it checks a spec."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import yaml
from relearn.api import KINDS, kind_named
from relearn.api.conditions import Condition, get_condition, parse_conditions, set_condition
from relearn.core.spec_check import INVALID_SPEC, SPEC_ACCEPTED, check_spec
from relearn.handlers import build_registry

REPO = Path(__file__).resolve().parents[2]
T0 = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def stored(example: str, generation: int = 1) -> dict[str, Any]:
    """An example CR as the API server would hand it to the operator."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples/invoice-classifier" / example).read_text())
    doc["metadata"]["generation"] = generation
    return doc


def after(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    updated = copy.deepcopy(body)
    updated.setdefault("status", {}).update(patch)
    return updated


def test_invalid_spec_sets_ready_false_with_the_field_and_warns() -> None:
    body = stored("abexperiment.yaml")
    body["spec"]["traffic"]["weight"] = 150

    result = check_spec(kind_named("abx"), body, now=T0)

    assert not result.valid
    ready = get_condition(parse_conditions(result.status_patch["conditions"]), "Ready")
    assert ready is not None
    assert (ready.status, ready.reason, ready.observed_generation) == ("False", INVALID_SPEC, 1)
    assert ready.message is not None
    assert ready.message.startswith("spec.traffic.weight: Input should be less than or equal to 100")
    assert result.event is not None
    assert (result.event.type, result.event.reason) == ("Warning", INVALID_SPEC)
    assert "spec.traffic.weight" in result.event.message
    assert result.status_patch["observedGeneration"] == 1


def test_valid_spec_is_accepted_with_a_summary_event() -> None:
    result = check_spec(kind_named("dp"), stored("driftpolicy.yaml"), now=T0)

    assert result.valid
    ready = get_condition(parse_conditions(result.status_patch["conditions"]), "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("True", SPEC_ACCEPTED)
    assert result.event is not None
    assert result.event.type == "Normal"
    assert result.event.message == "monitors model invoice-classifier: 2 features every 5m, retrains on drift"


def test_event_is_posted_once_per_generation() -> None:
    kind = kind_named("mv")
    body = stored("modelversion-1.0.0.yaml")
    first = check_spec(kind, body, now=T0)

    # The operator restarts and resumes the same generation: nothing new to say.
    again = check_spec(kind, after(body, first.status_patch), now=T1)
    assert again.event is None

    # A new generation is news again.
    edited = after(body, first.status_patch)
    edited["metadata"]["generation"] = 2
    assert check_spec(kind, edited, now=T1).event is not None


def test_transition_time_moves_only_when_status_changes() -> None:
    kind = kind_named("abx")
    body = stored("abexperiment.yaml")
    accepted = check_spec(kind, body, now=T0)
    still = check_spec(kind, after(body, accepted.status_patch), now=T1)
    assert still.status_patch["conditions"][0]["lastTransitionTime"] == "2026-11-26T12:00:00Z"

    broken = after(body, accepted.status_patch)
    broken["metadata"]["generation"] = 2
    broken["spec"]["challenger"] = "not-a-version"
    rejected = check_spec(kind, broken, now=T1)
    assert rejected.status_patch["conditions"][0]["lastTransitionTime"] == "2026-11-26T12:05:00Z"
    assert rejected.status_patch["conditions"][0]["observedGeneration"] == 2


def test_set_condition_keeps_other_conditions_in_order() -> None:
    conditions = [
        Condition(type="Ready", status="True", reason="SpecAccepted", message="ok", last_transition_time=T0),
        Condition(type="Drifted", status="False", reason="NoDrift", message="", last_transition_time=T0),
    ]
    updated = set_condition(
        conditions, type_="Ready", status="False", reason=INVALID_SPEC, message="x", observed_generation=3, now=T1
    )
    assert [c.type for c in updated] == ["Ready", "Drifted"]
    assert updated[1] == conditions[1]
    assert updated[0].last_transition_time == T1


def test_a_spec_missing_entirely_is_reported_not_raised() -> None:
    result = check_spec(kind_named("mv"), {"metadata": {"generation": 1}}, now=T0)
    assert not result.valid
    assert "spec.model: Field required" in result.errors


def test_registry_checks_every_kind_on_create_update_and_resume() -> None:
    registry = build_registry()
    handlers = registry._changing.get_all_handlers()  # kopf has no public listing
    covered = {(h.selector.any_name, str(h.reason)) for h in handlers if h.reason is not None}
    covered |= {(h.selector.any_name, "resume") for h in handlers if h.initial and h.reason is None}
    for kind in KINDS:
        for reason in ("create", "update", "resume"):
            assert (kind.plural, reason) in covered, (kind.plural, reason, covered)


def test_the_declared_champion_is_champion_from_its_first_check() -> None:
    champion = stored("modelversion-1.0.0.yaml")

    result = check_spec(kind_named("mv"), champion, now=T0, versions=[champion])

    assert result.status_patch["phase"] == "Champion"


def test_a_new_version_is_registered_and_never_takes_an_existing_champions_place() -> None:
    champion = after(stored("modelversion-1.0.0.yaml"), {"phase": "Champion"})
    challenger = stored("modelversion-1.1.0.yaml")
    late_declared = stored("modelversion-1.0.0.yaml")
    late_declared["metadata"]["name"] = "invoice-classifier-0.9.0"

    assert check_spec(kind_named("mv"), challenger, now=T0, versions=[champion]).status_patch["phase"] == "Registered"
    assert (
        check_spec(kind_named("mv"), late_declared, now=T0, versions=[champion]).status_patch["phase"] == "Registered"
    )


def test_a_version_with_a_phase_keeps_it_and_an_invalid_one_gets_none() -> None:
    archived = after(stored("modelversion-1.0.0.yaml"), {"phase": "Archived"})
    broken = stored("modelversion-1.1.0.yaml")
    broken["spec"]["version"] = "not-semver"

    assert "phase" not in check_spec(kind_named("mv"), archived, now=T0, versions=[]).status_patch
    assert "phase" not in check_spec(kind_named("mv"), broken, now=T0, versions=[]).status_patch
