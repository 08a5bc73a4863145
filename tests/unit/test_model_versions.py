"""Which ModelVersion is which and how phases change
(:mod:`relearn.core.model_versions`): the champion lookup, a phase change
with its history entry, and the hand-over plan."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.api.modelversion import ModelVersionStatus
from relearn.core import model_versions
from relearn.core.model_versions import History

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)
PHASES = ("Registered", "Challenger", "Champion", "Archived", "RolledBack", "Rejected")


def version(v: str, phase: str | None = None, **status: Any) -> dict[str, Any]:
    return {"spec": {"version": v}, "status": {"phase": phase, **status} if phase else {}}


def test_promotion_history_is_written_once_and_bounded() -> None:
    history = History("Promoted", "r", "m", "abexperiment/x", from_version="1.0.0", to_version="1.1.0")
    change = model_versions.phase_change("Champion", history, NOW)
    status = {"phase": "Challenger", "history": [{"action": "Registered"}] * 50}
    patch = change(status)
    assert patch["phase"] == "Champion"
    assert patch["championSince"] == "2026-11-26T00:00:00Z"
    assert len(patch["history"]) == 50
    assert patch["history"][-1] == {
        "time": "2026-11-26T00:00:00Z",
        "action": "Promoted",
        "reason": "r",
        "message": "m",
        "triggeredBy": "abexperiment/x",
        "fromVersion": "1.0.0",
        "toVersion": "1.1.0",
    }
    assert change({**status, **patch}) == {}  # redone after a restart: nothing more


def test_a_phase_change_without_history_writes_the_phase_only() -> None:
    change = model_versions.phase_change("Registered", None, NOW)
    assert change({"phase": "Challenger", "history": [{"action": "Registered"}]}) == {"phase": "Registered"}
    assert change({"phase": "Registered"}) == {}


@given(
    before=st.sampled_from((None, *PHASES)),
    after=st.sampled_from(PHASES),
    entries=st.integers(0, 60),
    message=st.text(max_size=2000),
)
def test_every_phase_change_is_a_valid_status_and_idempotent(
    before: str | None, after: Any, entries: int, message: str
) -> None:
    history = History("Archived", "Why", message, "abexperiment/x")
    change = model_versions.phase_change(after, history, NOW)
    status: dict[str, Any] = {"history": [history.entry(NOW)] * entries}
    if before is not None:
        status["phase"] = before
    patch = change(status)
    if before == after:
        assert patch == {}
        return
    written = ModelVersionStatus.model_validate({**status, **patch})  # what the CRD schema admits
    assert written.phase == after
    assert written.history is not None
    assert len(written.history) == min(entries + 1, model_versions.HISTORY_LIMIT)
    assert written.history[-1].message == message[:1024]
    assert change({**status, **patch}) == {}


def test_the_champion_is_the_operators_then_the_declared_one() -> None:
    declared = {"spec": {"version": "1.0.0", "declaredChampion": True}, "status": {}}
    promoted = version("1.1.0", "Champion")
    assert model_versions.champion([declared, promoted]) is promoted
    assert model_versions.champion([declared]) is declared
    assert model_versions.champion([version("2.0.0")]) is None


def test_during_a_hand_over_the_newer_champion_is_the_champion() -> None:
    outgoing = version("1.0.0", "Champion", championSince="2026-01-01T00:00:00Z")
    incoming = version("1.1.0", "Champion", championSince="2026-02-01T00:00:00Z")
    assert model_versions.champion([incoming, outgoing]) is incoming
    assert model_versions.champion([outgoing, incoming]) is incoming


@given(st.lists(st.tuples(st.sampled_from(("1.0.0", "1.1.0", "2.0.0")), st.sampled_from((None, *PHASES)))))
def test_finding_a_version_finds_the_first_with_that_version(entries: list[tuple[str, str | None]]) -> None:
    versions = [version(v, p) for v, p in entries]
    for wanted in ("1.0.0", "9.9.9"):
        found = model_versions.find(versions, wanted)
        expected = next((v for v in versions if v["spec"]["version"] == wanted), None)
        assert found is expected


def promotion(retired: Any = "Archived") -> tuple[model_versions.VersionMove, model_versions.VersionMove]:
    """1.1.0 takes over from 1.0.0, which goes to ``retired`` (Archived; RolledBack in a rollback)."""
    return model_versions.hand_over(
        outgoing="1.0.0",
        incoming="1.1.0",
        outgoing_phase=retired,
        outgoing_action="Demoted",
        outgoing_reason="ChallengerPromoted",
        outgoing_message="replaced",
        incoming_reason="ChallengerBetter",
        incoming_message="better",
        triggered_by="abexperiment/x",
    )


def test_a_hand_over_makes_the_incoming_champion_first_then_retires_the_outgoing() -> None:
    incoming, outgoing = promotion()
    assert (incoming.version, incoming.phase, incoming.history.action) == ("1.1.0", "Champion", "Promoted")
    assert (outgoing.version, outgoing.phase, outgoing.history.action) == ("1.0.0", "Archived", "Demoted")
    for move in (incoming, outgoing):
        assert (move.history.from_version, move.history.to_version) == ("1.0.0", "1.1.0")
        assert move.history.triggered_by == "abexperiment/x"


def test_a_hand_over_cut_short_leaves_two_champions_never_none() -> None:
    """The plan applied one step only (a kill in between): the incoming one is champion."""
    versions = [version("1.0.0", "Champion", championSince="2026-01-01T00:00:00Z"), version("1.1.0", "Challenger")]
    first, _ = promotion()
    later = NOW + datetime.timedelta(days=365)
    target = versions[1]
    target["status"] = {
        **target["status"],
        **model_versions.phase_change(first.phase, first.history, later)(target["status"]),
    }
    champion = model_versions.champion(versions)
    assert champion is not None
    assert champion["spec"]["version"] == "1.1.0"


@pytest.mark.parametrize(
    ("incoming", "outgoing", "cut"),
    [
        ("Challenger", "Champion", False),  # not begun
        ("Champion", "Champion", True),  # the first write only: two Champions
        ("Champion", "Archived", False),  # finished
        ("Challenger", "Archived", False),  # not this plan's order: nothing to finish first
    ],
)
def test_a_hand_over_is_cut_short_only_between_its_two_writes(incoming: str, outgoing: str, cut: bool) -> None:
    versions = [version("1.0.0", outgoing), version("1.1.0", incoming)]
    assert model_versions.cut_short(versions, promotion()) is cut


def test_a_hand_over_of_a_missing_version_is_not_cut_short() -> None:
    assert not model_versions.cut_short([version("1.1.0", "Champion")], promotion())
    assert not model_versions.cut_short([], promotion())
    assert not model_versions.cut_short([version("1.1.0", "Champion")], ())


def written(versions: list[dict[str, Any]], moves: tuple[model_versions.VersionMove, ...]) -> list[dict[str, Any]]:
    """The versions after these moves were written, as the API server would hold them."""
    after = [{**v, "status": dict(v["status"])} for v in versions]
    for move in moves:
        for v in after:
            if v["spec"]["version"] == move.version:
                v["status"]["phase"] = move.phase
    return after


MAYBE_PHASE = st.sampled_from((None, *PHASES))


@given(
    outgoing_now=MAYBE_PHASE,
    incoming_now=MAYBE_PHASE,
    others=st.lists(st.tuples(st.sampled_from(("0.9.0", "2.0.0", "3.1.4")), MAYBE_PHASE), max_size=3),
    retired=st.sampled_from(("Archived", "RolledBack")),
    applied=st.integers(0, 2),
)
def test_cut_short_names_exactly_the_state_between_a_hand_overs_writes_and_finishing_it_leaves_one_champion(
    outgoing_now: str | None,
    incoming_now: str | None,
    others: list[tuple[str, str | None]],
    retired: str,
    applied: int,
) -> None:
    plan = promotion(retired)
    start = [version("1.0.0", outgoing_now), version("1.1.0", incoming_now), *(version(v, p) for v, p in others)]
    now = written(start, plan[:applied])
    cut = model_versions.cut_short(now, plan)
    if outgoing_now == "Champion" and incoming_now != "Champion":  # a hand-over as a turn begins it
        assert cut is (applied == 1)
    if applied == len(plan):
        assert cut is False  # a finished hand-over is never taken for one cut short
    if cut:
        done = written(now, plan)
        phases = {v["spec"]["version"]: v["status"].get("phase") for v in done}
        assert (phases["1.1.0"], phases["1.0.0"]) == ("Champion", retired)  # of the two, one Champion
        assert model_versions.cut_short(done, plan) is False


# -- the champion record ------------------------------------------------------------------

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@given(st.from_regex(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", fullmatch=True))
def test_every_spec_valid_model_has_a_valid_champion_record_name_of_its_own(model: str) -> None:
    name = model_versions.record_name(model)
    assert len(name) <= 253
    assert re.fullmatch(DNS_SUBDOMAIN, name)
    assert name == f"relearn-champion-{model}"  # readable: the model's name as it is


def _hand(record: dict[str, Any], outgoing: str, incoming: str) -> None:
    model_versions.record_change(outgoing=outgoing, incoming=incoming, now=NOW, triggered_by="abexperiment/x")(record)


def test_the_record_moves_from_the_outgoing_champion_once_and_refuses_a_stale_hand_over() -> None:
    record = model_versions.record_body("ranker", "1.0.0", NOW, "abexperiment/a")
    assert model_versions.holder_of(record) == "1.0.0"
    _hand(record, "1.0.0", "1.1.0")
    assert model_versions.holder_of(record) == "1.1.0"
    assert record["spec"]["leaseTransitions"] == 1
    _hand(record, "1.0.0", "1.1.0")  # redone after a restart: nothing changes
    assert record["spec"]["leaseTransitions"] == 1
    with pytest.raises(model_versions.ChampionMoved, match=r"names 1\.1\.0, not 1\.0\.0"):
        _hand(record, "1.0.0", "1.2.0")  # planned from 1.0.0, but 1.1.0 became champion meanwhile
    assert model_versions.holder_of(record) == "1.1.0"
    # The version it names was deleted since: the hand-over goes on from the champion the phases name.
    model_versions.record_change(
        outgoing="1.0.0", incoming="1.2.0", now=NOW, triggered_by="abexperiment/y", existing={"1.0.0", "1.2.0"}
    )(record)
    assert model_versions.holder_of(record) == "1.2.0"


@given(st.lists(st.tuples(st.sampled_from(["1.0.0", "1.1.0", "1.2.0"]), st.sampled_from(["1.0.0", "1.1.0", "1.2.0"]))))
def test_hand_overs_in_any_order_leave_one_champion_each_taken_from_the_one_before(
    attempts: list[tuple[str, str]],
) -> None:
    """Each attempt is a hand-over planned from what its turn read (outgoing)
    to incoming; as compare-and-swap writes in any order, the record names
    one version throughout and every move it made started at its holder."""
    record = model_versions.record_body("ranker", "1.0.0", NOW, "git")
    for outgoing, incoming in attempts:
        before = model_versions.holder_of(record)
        try:
            _hand(record, outgoing, incoming)
        except model_versions.ChampionMoved:
            assert before not in (outgoing, incoming)
            assert model_versions.holder_of(record) == before
            continue
        assert model_versions.holder_of(record) == incoming
        assert before in (outgoing, incoming)


def test_the_records_of_a_namespace_say_each_models_champion() -> None:
    records = [
        model_versions.record_body("ranker", "1.1.0", NOW, "abexperiment/a"),
        model_versions.record_body("documents", "2.0.0", NOW, "abexperiment/b"),
        {"metadata": {"name": "someone-elses-lease"}, "spec": {"holderIdentity": "node-1"}},
    ]
    assert model_versions.holders(records) == {"ranker": "1.1.0", "documents": "2.0.0"}
    label, value = model_versions.RECORD_SELECTOR.split("=")
    assert all(r["metadata"]["labels"][label] == value for r in records[:2])


def test_readers_take_the_champion_from_the_record_and_fall_back_to_phases() -> None:
    versions = [version("1.0.0", "Champion", championSince="2026-01-01T00:00:00Z"), version("1.1.0", "Challenger")]
    assert model_versions.champion(versions)["spec"]["version"] == "1.0.0"
    # The record moved and the phases are behind (a hand-over between its writes): the record wins.
    assert model_versions.champion(versions, "1.1.0")["spec"]["version"] == "1.1.0"
    # A record naming a version since deleted: the phases say who is champion.
    assert model_versions.champion(versions, "0.9.0")["spec"]["version"] == "1.0.0"


def test_a_hand_over_is_cut_short_once_its_record_moved_until_every_phase_follows() -> None:
    plan = promotion()
    before = [version("1.0.0", "Champion"), version("1.1.0", "Challenger")]
    assert not model_versions.cut_short(before, plan, "1.0.0")
    assert model_versions.cut_short(before, plan, "1.1.0")  # the record moved, no phase yet
    halfway = [version("1.0.0", "Champion"), version("1.1.0", "Champion")]
    assert model_versions.cut_short(halfway, plan, "1.1.0")
    done = [version("1.0.0", "Archived"), version("1.1.0", "Champion")]
    assert not model_versions.cut_short(done, plan, "1.1.0")
