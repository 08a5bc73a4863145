"""What ``relearn report`` says about a model: the champion timeline, time as
champion, drift-to-fix, retrainings and experiments from the registry's
objects; every section and plot in the page; the same data as JSON; and no
input that stops it."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from relearn.core import report
from relearn.reporting import render
from relearn.reporting.collect import LiftSequence, Series, counted_since, steps

T0 = datetime.datetime(2026, 11, 24, tzinfo=datetime.UTC)


def at(hours: float) -> str:
    return (T0 + datetime.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def mv(version: str, created: float, phase: str, history: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "history": history}
    promoted = [e["time"] for e in history if e["action"] == "Promoted"]
    if phase == "Champion":
        status["championSince"] = promoted[-1] if promoted else at(created)
    return {
        "metadata": {"name": f"documents-{version}", "creationTimestamp": at(created)},
        "spec": {"model": "documents", "version": version, **spec},
        "status": status,
    }


def entry(hours: float, action: str, **more: str) -> dict[str, Any]:
    return {"time": at(hours), "action": action, **more}


def loop_objects() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A declared champion 1.0.0; drift at 10 h retrains 1.1.0, promoted at 12 h,
    rolled back at 20 h; 1.0.0 champion again since."""
    champion = mv(
        "1.0.0",
        0,
        "Champion",
        [entry(12, "Demoted", toVersion="1.1.0"), entry(20, "Promoted", reason="RolledBack", fromVersion="1.1.0")],
        declaredChampion=True,
    )
    retrained = mv(
        "1.1.0",
        10.5,
        "RolledBack",
        [
            entry(10.5, "Registered", reason="OfflineGatePassed"),
            entry(12, "Promoted", reason="ChallengerBetter", message="lift +4.1 pts [+1.2, +7.0]"),
            entry(20, "RolledBack", reason="HealthCheckFailed", message="error-rate 1.00 > 0.05"),
        ],
        metrics={"accuracy": 0.91, "championAccuracy": 0.72, "samples": 400},
        source={"job": "documents-retrain-1", "windowEnd": at(10), "triggerReasons": ["length: PSI 0.41 > 0.2"]},
    )
    job = {
        "metadata": {"name": "documents-retrain-1", "labels": {"relearn.dev/model": "documents"}},
        "status": {
            "startTime": at(10),
            "completionTime": at(10.5),
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": at(10.5)}],
        },
    }
    experiment = {
        "metadata": {"name": "documents-1.1.0", "creationTimestamp": at(10.6)},
        "spec": {"model": "documents", "champion": "1.0.0", "challenger": "1.1.0"},
        "status": {
            "phase": "RolledBack",
            "startTime": at(10.6),
            "promotionTime": at(12),
            "decision": {"outcome": "RollBack", "reason": "HealthCheckFailed", "message": "error-rate 1.00 > 0.05"},
            "statistic": {"lift": 0.041, "ciLower": 0.012, "ciUpper": 0.07, "pValue": 0.003},
            "arms": {"champion": {"samples": 2100}, "challenger": {"samples": 2050}},
            "weights": {"challenger": 0},
        },
    }
    return [champion, retrained], [experiment], [job]


def build(start: float = 0, end: float = 24) -> report.ModelReport:
    versions, experiments, jobs = loop_objects()
    return report.build(
        "documents",
        "team-a",
        versions,
        experiments,
        jobs,
        T0 + datetime.timedelta(hours=start),
        T0 + datetime.timedelta(hours=end),
    )


def test_time_as_champion_follows_promotion_and_rollback() -> None:
    built = build()
    hours = {v: s / 3600 for v, s in built.stats.champion_seconds.items()}
    assert hours == {"1.0.0": 12 + 4, "1.1.0": 8}
    assert built.champion == "1.0.0"


def test_a_period_that_starts_later_counts_only_its_part() -> None:
    built = build(start=16)
    assert {v: s / 3600 for v, s in built.stats.champion_seconds.items()} == {"1.0.0": 4, "1.1.0": 4}
    assert [e.action for e in built.timeline] == ["RolledBack", "Promoted"]


def test_drift_to_fix_runs_from_the_trigger_to_the_promotion() -> None:
    assert build().stats.drift_to_fix_seconds == (2 * 3600,)
    assert build(start=13).stats.drift_to_fix_seconds == ()  # the promotion lies before the period


def test_retraining_names_its_job_duration_trigger_and_offline_figures() -> None:
    (retraining,) = build().retrainings
    assert retraining.job == "documents-retrain-1"
    assert retraining.version == "1.1.0"
    assert retraining.duration_seconds == 1800
    assert retraining.outcome == "Succeeded"
    assert retraining.reasons == ("length: PSI 0.41 > 0.2",)
    assert (retraining.accuracy, retraining.champion_accuracy) == (0.91, 0.72)


def test_a_retraining_whose_job_is_gone_is_still_listed_from_its_lineage() -> None:
    versions, experiments, _ = loop_objects()
    built = report.build("documents", "team-a", versions, experiments, [], T0, T0 + datetime.timedelta(days=1))
    assert [r.version for r in built.retrainings] == ["1.1.0"]


def test_other_models_are_left_out() -> None:
    versions, experiments, jobs = loop_objects()
    other = json.loads(json.dumps(versions[1]).replace('"documents"', '"ranker"'))
    built = report.build("documents", "ns", [*versions, other], experiments, jobs, T0, T0 + datetime.timedelta(1))
    assert len(built.versions) == 2


def test_two_champions_at_once_are_said_in_the_notes() -> None:
    versions, experiments, jobs = loop_objects()
    versions[1]["status"]["phase"] = "Champion"
    built = report.build("documents", "ns", versions, experiments, jobs, T0, T0 + datetime.timedelta(1))
    assert any("2 versions are Champion" in n for n in built.notes)


def series() -> Series:
    times = [(T0 + datetime.timedelta(hours=h)).timestamp() for h in range(11, 13)]
    return Series(
        accuracy={"1.0.0": [(t, 0.8) for t in times], "1.1.0": [(t, 0.9) for t in times]},
        drift={"documents": {"length": [(t, 0.4) for t in times]}},
        drift_thresholds={"documents": 0.2},
        weights={"documents-1.1.0": [(t, 20) for t in times]},
        lift={"documents-1.1.0": LiftSequence(times, [0.05, 0.04], [-0.01, 0.01], [0.1, 0.07], [100, 200], [90, 210])},
        step=60,
        window=60,
    )


def test_the_page_has_every_section_and_every_plot() -> None:
    page = render.to_html([(build(), series())], T0)
    for section in render.SECTIONS:
        assert f"id='{section}'" in page
    plots = set(re.findall(r'data-plot="([^"]+)"', page))
    assert plots == {
        "timeline",
        "accuracy",
        "drift-documents",
        "retrainings",
        "weights-documents-1.1.0",
        "lift-documents-1.1.0",
        "registry",
    }
    assert "http://" not in page
    assert "https://" not in page


def test_the_summary_has_the_numbers() -> None:
    text = render.summary(build())
    assert "champion: 1.0.0" in text
    assert "1 retraining(s), 1 experiment(s), 2 promotion(s), 0 rejection(s), 1 rollback(s)" in text
    assert "lift +4.1 pts, CI [+1.2 pts, +7.0 pts]" in text
    assert "mean time from drift to a promoted fix: 2.0 h" in text


def test_json_carries_the_same_data() -> None:
    data = json.loads(render.to_json([(build(), series())]))
    (model,) = data["reports"]
    assert model["champion"] == "1.0.0"
    assert model["meanDriftToFixSeconds"] == 7200
    assert model["series"]["lift"]["documents-1.1.0"]["lower"] == [-0.01, 0.01]


def test_steps_keep_a_week_under_the_point_limit_and_a_window_of_several_scrapes() -> None:
    step, window = steps(T0, T0 + datetime.timedelta(days=7))
    assert 7 * 86400 / step <= 240
    assert window >= step
    assert steps(T0, T0 + datetime.timedelta(hours=1))[1] == 120  # four 30 s scrapes
    step, window = steps(T0, T0 + datetime.timedelta(minutes=3), scrape=1.0)
    assert step == 1
    assert window == 15


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
objects = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "metadata": st.fixed_dictionaries({}, optional={"name": json_values, "creationTimestamp": json_values}),
            "spec": st.fixed_dictionaries(
                {"model": st.just("documents")},
                optional={"version": json_values, "source": json_values, "metrics": json_values},
            ),
            "status": st.fixed_dictionaries(
                {},
                optional={
                    "phase": json_values,
                    "history": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={"time": st.sampled_from([at(1), at(5), "yesterday", 3]), "action": json_values},
                        )
                        | json_values,
                        max_size=4,
                    )
                    | json_values,
                    "championSince": json_values,
                    "conditions": json_values,
                },
            ),
        },
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(versions=objects, experiments=objects, jobs=objects)
def test_any_objects_give_a_report_and_never_more_champion_time_than_the_period(
    versions: list[dict[str, Any]], experiments: list[dict[str, Any]], jobs: list[dict[str, Any]]
) -> None:
    end = T0 + datetime.timedelta(hours=6)
    built = report.build("documents", "ns", versions, experiments, jobs, T0, end)
    for seconds in built.stats.champion_seconds.values():
        assert 0 <= seconds <= 6 * 3600
    render.summary(built)
    json.loads(render.to_json([(built, Series())]))


@settings(max_examples=200, deadline=None)
@given(
    pods=st.lists(
        st.tuples(
            st.integers(0, 5),  # first step the pod is scraped at
            st.lists(st.integers(0, 20), min_size=1, max_size=12),  # requests counted between scrapes
            st.sets(st.integers(1, 12), max_size=2),  # steps at which it restarts
            st.integers(0, 1000),  # its count before the experiment
        ),
        max_size=4,
    )
)
def test_counts_since_the_start_add_every_request_once_across_new_pods_and_restarts(
    pods: list[tuple[int, list[int], set[int], int]],
) -> None:
    grid = np.arange(1000.0, 1000.0 + 20 * 5, 5.0)
    series, expected = [], np.zeros(grid.size)
    for first, increments, restarts, before in pods:
        value, values = float(before if first == 0 else 0), []
        counted = 0.0
        for k, added in enumerate(increments):
            i = first + k
            if i >= grid.size:
                break
            if k and k in restarts and added < value:
                # A restarted process counts from zero; what it counted first is the
                # increment. (A restart that does not show as a drop is invisible,
                # to Prometheus' increase() as here.)
                value = 0.0
            if k:
                value += added
                counted += added
            values.append((float(grid[i]), value))
            expected[i:] += added if k else 0.0
        series.append(values)
    assert np.allclose(counted_since(series, grid), expected)
