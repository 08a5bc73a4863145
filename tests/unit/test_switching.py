"""Zero-downtime switch decisions (relearn.core.switching): traffic moves
only to a Service with ready endpoints, a backend that left the route is
never deleted before the data plane applied the route and the drain passed,
and a restart in the middle of a drain neither deletes early nor waits again."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core import switching
from relearn.errors import InvalidSetting

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
S = datetime.timedelta(seconds=1)
json_ = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def route(generation: int, *parents: tuple[str, int | None, int | None]) -> dict[str, Any]:
    """An HTTPRoute at ``generation``; each parent: (Accepted status, its generation, ResolvedRefs generation)."""
    entries = []
    for status, accepted, resolved in parents:
        conditions: list[dict[str, Any]] = [{"type": "Accepted", "status": status, "observedGeneration": accepted}]
        if resolved is not None:
            conditions.append({"type": "ResolvedRefs", "status": "True", "observedGeneration": resolved})
        entries.append({"parentRef": {"name": "gw"}, "conditions": conditions})
    return {"metadata": {"generation": generation}, "status": {"parents": entries}}


def test_a_route_is_applied_only_when_every_parent_accepted_its_current_generation() -> None:
    assert switching.route_applied(route(3, ("True", 3, 3))) is True
    assert switching.route_applied(route(3, ("True", 2, 2))) is False  # the data plane has the old route
    assert switching.route_applied(route(3, ("True", 3, 3), ("True", 2, None))) is False  # one gateway lags
    assert switching.route_applied(route(3, ("True", 3, 2))) is False  # refs resolved for the old one
    assert switching.route_applied(route(3, ("False", 3, 3))) is False  # refused
    assert switching.route_applied(route(3, ("True", 4, None))) is True


def test_a_provider_that_reports_nothing_is_not_waited_for() -> None:
    assert switching.route_applied({"metadata": {"generation": 2}, "spec": {}}) is None
    assert switching.route_applied({"metadata": {"generation": 2}, "status": {"parents": []}}) is None


def test_istio_config_status_counts_as_applied_at_its_observed_generation() -> None:
    reconciled = {"conditions": [{"type": "Reconciled", "status": "True"}]}
    assert switching.route_applied({"metadata": {"generation": 5}, "status": {**reconciled, "observedGeneration": "5"}})
    assert not switching.route_applied(
        {"metadata": {"generation": 5}, "status": {**reconciled, "observedGeneration": "4"}}
    )


@given(json_)
def test_route_applied_gives_a_verdict_for_anything(obj: Any) -> None:
    assert switching.route_applied(obj) in (True, False, None)
    assert switching.route_applied({"metadata": {"generation": 1}, "status": {"parents": obj}}) in (True, False, None)


def slice_(*ready: bool | None) -> dict[str, Any]:
    endpoints = [{"addresses": ["10.0.0.1"], **({} if r is None else {"conditions": {"ready": r}})} for r in ready]
    return {"endpoints": endpoints, "ports": [{"port": 8080}]}


def test_ready_endpoints_come_from_endpoint_slices_else_endpoints() -> None:
    assert switching.ready_endpoints([slice_(True, False, None)], None) == 2  # absent ready means ready
    assert switching.ready_endpoints([slice_(False)], {"subsets": [{"addresses": [{}], "ports": [{}]}]}) == 0
    legacy = {"subsets": [{"addresses": [{"ip": "1"}, {"ip": "2"}], "notReadyAddresses": [{}], "ports": [{"port": 1}]}]}
    assert switching.ready_endpoints([], legacy) == 2
    assert switching.ready_endpoints([], {"subsets": [{"addresses": [{"ip": "1"}]}]}) == 0  # no ports: serves nothing
    assert switching.ready_endpoints([], None) == 0


@given(json_, json_)
def test_ready_endpoints_is_a_count_for_anything(slices: Any, endpoints: Any) -> None:
    assert switching.ready_endpoints(slices if isinstance(slices, list) else [], endpoints) >= 0


def test_a_backend_waits_for_the_route_then_the_drain_then_goes() -> None:
    drain = switching.Drain(T0)
    period = 5 * S
    drain, verdict = switching.drain_step(drain, T0 + S, period, applied=False)
    assert (verdict.remove, verdict.reason) == (False, "RouteNotApplied")
    drain, verdict = switching.drain_step(drain, T0 + 2 * S, period, applied=True)
    assert drain.applied == T0 + 2 * S
    assert (verdict.remove, verdict.reason, verdict.wait) == (False, "Draining", 5.0)
    drain, verdict = switching.drain_step(drain, T0 + 6 * S, period, applied=True)
    assert not verdict.remove
    assert verdict.wait == pytest.approx(1.0)
    _, verdict = switching.drain_step(drain, T0 + 7 * S, period, applied=True)
    assert (verdict.remove, verdict.reason) == (True, "Drained")


def test_without_route_status_the_drain_counts_from_leaving_the_route() -> None:
    drain, verdict = switching.drain_step(switching.Drain(T0), T0 + 2 * S, 5 * S, applied=None)
    assert not verdict.remove
    assert drain.applied == T0
    assert switching.drain_step(drain, T0 + 5 * S, 5 * S, applied=None)[1].remove


def test_a_route_never_reported_applied_lets_the_backend_go_after_the_timeout() -> None:
    _, verdict = switching.drain_step(switching.Drain(T0), T0 + switching.ROUTE_TIMEOUT, 5 * S, applied=False)
    assert (verdict.remove, verdict.reason) == (True, "RouteTimedOut")


def test_a_restart_mid_drain_neither_deletes_early_nor_starts_over() -> None:
    """What status kept (since, applied) is what the next operator reads."""
    kept = switching.Drain(T0, T0 + S)
    _, early = switching.drain_step(kept, T0 + 3 * S, 5 * S, applied=True)
    assert not early.remove
    assert early.wait == pytest.approx(3.0)
    _, later = switching.drain_step(kept, T0 + 6 * S, 5 * S, applied=True)
    assert later.remove  # not 5 s more from the restart


def test_a_negative_drain_is_refused() -> None:
    with pytest.raises(InvalidSetting):
        switching.drain_step(switching.Drain(T0), T0, -S, applied=True)


moments = st.datetimes(
    min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1), timezones=st.just(datetime.UTC)
)


@given(
    since=moments,
    applied_at=st.none() | moments,
    now=moments,
    period=st.timedeltas(min_value=datetime.timedelta(0), max_value=datetime.timedelta(hours=1)),
    applied=st.none() | st.booleans(),
)
def test_a_backend_is_never_removed_before_the_drain_or_timeout(
    since: datetime.datetime,
    applied_at: datetime.datetime | None,
    now: datetime.datetime,
    period: datetime.timedelta,
    applied: bool | None,
) -> None:
    state, verdict = switching.drain_step(switching.Drain(since, applied_at), now, period, applied)
    assert verdict.wait >= 0
    if verdict.remove:
        if verdict.reason == "Drained":
            assert state.applied is not None
            assert now - state.applied >= period
        else:
            assert verdict.reason == "RouteTimedOut"
            assert now - since >= switching.ROUTE_TIMEOUT
    else:
        assert verdict.wait > 0


def test_route_drift_names_a_missing_backend_or_a_changed_weight() -> None:
    assert switching.route_drift(None, False, 0) is None  # nothing set yet
    assert switching.route_drift(10, True, 10) is None
    missing = switching.route_drift(10, False, 0)
    assert missing is not None
    assert "missing" in missing
    changed = switching.route_drift(10, True, 50)
    assert changed is not None
    assert "50%" in changed
    assert "10%" in changed
