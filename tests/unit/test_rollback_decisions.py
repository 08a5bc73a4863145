"""What the watch over a promoted champion decides (:mod:`relearn.core.rollback`):
the rollback target and its four refusal rules, whether the version is still
watched, the bake-time and window verdicts, and the Healthy condition."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core import health, model_versions, rollback
from relearn.errors import RollbackRefused

PHASES = ("Registered", "Challenger", "Champion", "Archived", "RolledBack", "Rejected")
MINUTE = datetime.timedelta(minutes=1)


def version(v: str, phase: str | None = None) -> dict[str, Any]:
    return {"spec": {"version": v}, "status": {"phase": phase} if phase else {}}


VERSIONS = [version("1.0.0", "Archived"), version("1.1.0", "Champion"), version("0.9.0", "RolledBack")]


def target(request: str, previous: str | None = "1.0.0", versions: list[dict[str, Any]] = VERSIONS) -> str:
    return rollback.target(request, previous=previous, champion="1.1.0", model="ranker", versions=versions)


@pytest.mark.parametrize("request_", ["", "true", "previous", "  previous "])
def test_a_rollback_asked_for_goes_to_the_previous_champion(request_: str) -> None:
    assert target(request_) == "1.0.0"


def test_a_rollback_may_name_an_archived_version() -> None:
    versions = [*VERSIONS, version("0.8.0", "Archived")]
    assert target("0.8.0", versions=versions) == "0.8.0"


def test_rollback_refused_when_the_previous_champion_is_unknown() -> None:
    with pytest.raises(RollbackRefused, match="does not know the previous champion") as refused:
        target("previous", previous=None)
    assert refused.value.reason == "RollbackRefused"
    assert refused.value.message.startswith("rollback to the previous champion refused")


def test_rollback_refused_to_the_champion_itself() -> None:
    with pytest.raises(RollbackRefused, match=r"1\.1\.0 is the champion already"):
        target("1.1.0")


def test_rollback_refused_to_a_version_that_does_not_exist() -> None:
    with pytest.raises(RollbackRefused, match=r"no ModelVersion of ranker has version 7\.0\.0"):
        target("7.0.0")


@pytest.mark.parametrize("phase", model_versions.FAILED_PHASES)
def test_rollback_never_returns_to_a_version_that_failed_its_checks(phase: str) -> None:
    with pytest.raises(RollbackRefused, match=f"failed its own checks \\({phase}\\)"):
        target("0.9.0", versions=[*VERSIONS[:2], version("0.9.0", phase)])


@given(
    request_=st.one_of(st.sampled_from(("", "true", "previous", "1.0.0", "1.1.0", "0.9.0")), st.text(max_size=20)),
    previous=st.one_of(st.none(), st.sampled_from(("1.0.0", "1.1.0", "0.9.0", "5.0.0"))),
    phases=st.lists(st.tuples(st.sampled_from(("1.0.0", "1.1.0", "0.9.0")), st.sampled_from(PHASES)), max_size=5),
)
def test_a_rollback_target_is_always_an_existing_version_that_did_not_fail_or_refused(
    request_: str, previous: str | None, phases: list[tuple[str, str]]
) -> None:
    versions = [version(v, p) for v, p in phases]
    try:
        chosen = target(request_, previous=previous, versions=versions)
    except RollbackRefused:
        return  # refused: one of the four rules (each has its own test above)
    found = model_versions.find(versions, chosen)
    assert found is not None
    assert chosen != "1.1.0"
    assert model_versions.phase_of(found) not in model_versions.FAILED_PHASES


def test_the_requested_message_names_the_annotation_and_who_asked() -> None:
    message = rollback.requested_message(
        " ", champion="1.1.0", to="1.0.0", annotation="relearn.dev/rollback", by="ana@laptop"
    )
    assert message == "rollback of 1.1.0 to 1.0.0 asked for (relearn.dev/rollback: previous, by ana@laptop)"


def test_the_promoted_version_is_watched_while_it_is_champion() -> None:
    assert rollback.watched(VERSIONS, "1.1.0") == "Watch"


def test_the_watch_stops_when_the_version_is_gone_superseded_or_rolled_back() -> None:
    assert rollback.watched(VERSIONS, "3.0.0") == "Stop"
    superseded = [version("1.1.0", "Archived"), version("1.2.0", "Champion")]
    assert rollback.watched(superseded, "1.1.0") == "Stop"
    assert rollback.watched([version("1.1.0", "RolledBack"), version("1.0.0", "Archived")], "1.1.0") == "Stop"


def test_a_promoted_version_recorded_otherwise_with_no_champion_is_restored() -> None:
    assert rollback.watched([version("1.1.0", "Registered"), version("1.0.0", "Archived")], "1.1.0") == (
        "RestoreChampion"
    )


def test_the_champion_record_says_whether_the_promoted_version_is_still_watched() -> None:
    # A record naming no ModelVersion (deleted since): the phases decide.
    assert rollback.watched(VERSIONS, "1.1.0", holder="1.2.0") == "Watch"
    # The record moved to a later version whose phases are not written yet: stop.
    later = [*VERSIONS, version("1.2.0", "Challenger")]
    assert rollback.watched(later, "1.1.0", holder="1.2.0") == "Stop"
    # The record names the promoted version whose Champion phase is behind: watched, its phase restored.
    behind = [version("1.1.0", "Challenger"), version("1.0.0", "Champion")]
    assert rollback.watched(behind, "1.1.0", holder="1.1.0") == "RestoreChampion"
    # A version that failed its own checks is never made Champion again, whatever a record says.
    assert rollback.watched([version("1.1.0", "RolledBack")], "1.1.0", holder="1.1.0") == "Stop"


@given(
    warm=st.booleans(),
    since=st.integers(-(10**6), 10**6).map(lambda s: datetime.timedelta(seconds=s)),
    bake=st.integers(0, 10**6).map(lambda s: datetime.timedelta(seconds=s)),
)
def test_the_previous_champion_is_released_only_while_warm_and_after_bake_time(
    warm: bool, since: datetime.timedelta, bake: datetime.timedelta
) -> None:
    assert rollback.release_due(warm=warm, since_promotion=since, bake_time=bake) == (warm and since > bake)


def test_health_checks_run_within_the_window_at_the_interval() -> None:
    verdict = rollback.monitoring(
        enabled=True, since_promotion=5 * MINUTE, window=60 * MINUTE, window_text="1h", interval=10.0
    )
    assert verdict == rollback.Monitoring(True, wait=10.0)


def test_past_the_window_the_watch_looks_rarely_and_says_why() -> None:
    verdict = rollback.monitoring(
        enabled=True, since_promotion=61 * MINUTE, window=60 * MINUTE, window_text="1h", interval=10.0
    )
    assert verdict == rollback.Monitoring(False, "the rollback window (1h) is over", rollback.IDLE_POLL)


def test_with_automatic_rollback_off_nothing_is_checked() -> None:
    verdict = rollback.monitoring(
        enabled=False, since_promotion=MINUTE, window=60 * MINUTE, window_text="1h", interval=45.0
    )
    assert verdict == rollback.Monitoring(False, "automatic rollback is off", 45.0)


@given(
    enabled=st.booleans(),
    since=st.integers(0, 10**7),
    window=st.integers(0, 10**7),
    interval=st.floats(1.0, 10**5),
)
def test_the_watch_always_looks_again_no_sooner_than_its_interval(
    enabled: bool, since: int, window: int, interval: float
) -> None:
    verdict = rollback.monitoring(
        enabled=enabled,
        since_promotion=datetime.timedelta(seconds=since),
        window=datetime.timedelta(seconds=window),
        window_text="w",
        interval=interval,
    )
    assert verdict.checks == (enabled and since <= window)
    assert verdict.wait >= interval
    assert verdict.checks or verdict.why


def _results(*kinds: health.Result) -> list[health.CheckResult]:
    return [health.CheckResult(f"check-{i}", 0.1 if k != "NoData" else None, 0.05, k) for i, k in enumerate(kinds)]


def test_failing_checks_make_healthy_false_with_an_event_on_the_first() -> None:
    results = _results("Failing", "Healthy")
    first = rollback.health_condition(health.assess(results, 0, 3), results, None, 3)
    assert (first.status, first.reason, first.event) == ("False", "ChecksFailing", True)
    assert first.message.endswith("(1 of 3 consecutive checks)")
    second = rollback.health_condition(health.assess(results, 1, 3), results, None, 3)
    assert (second.status, second.event) == ("False", False)


def test_missing_data_makes_healthy_unknown_never_true() -> None:
    results = _results("Healthy", "NoData")
    condition = rollback.health_condition(health.assess(results, 0, 3), results, None, 3)
    assert (condition.status, condition.reason) == ("Unknown", "NoData")
    unreachable = rollback.health_condition(health.assess(_results("Healthy"), 0, 3), _results("Healthy"), "down", 3)
    assert (unreachable.status, unreachable.message) == ("Unknown", "down")


def test_passing_checks_make_healthy_true() -> None:
    results = _results("Healthy", "Healthy")
    assert rollback.health_condition(health.assess(results, 0, 3), results, None, 3).status == "True"


def test_the_history_names_what_triggered_a_rollback() -> None:
    assert rollback.triggered_by("HealthCheckFailed", experiment="x", annotation="a", by="me") == (
        "abexperiment/x health checks"
    )
    assert rollback.triggered_by("ManualRollback", experiment="x", annotation="a", by="me") == (
        "a on abexperiment/x by me"
    )
    assert rollback.triggered_by("ManualRollback", experiment="x", annotation="a", by=None) == "a on abexperiment/x"


@given(warm=st.one_of(st.none(), st.text(max_size=5), st.integers(0, 50).map(str)), failed=st.integers(0, 50))
def test_a_released_champion_comes_back_with_its_replicas_and_at_least_one(warm: str | None, failed: int) -> None:
    replicas = rollback.scale_up_replicas(warm, failed)
    assert replicas >= 1
    if warm and warm.isdecimal() and int(warm) > 0:  # what int() reads (not "¹", a digit it refuses)
        assert replicas == int(warm)
    elif not warm:
        assert replicas == max(1, failed)
