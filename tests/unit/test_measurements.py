"""``status.measurements``: every A/B look is kept with the numbers behind
it, the last 20 only, oldest first, and infinite bounds are left out rather
than written as numbers JSON cannot hold."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

from relearn.api.abexperiment import MAX_MEASUREMENTS, ABExperimentStatus
from relearn.core import experiment as judging
from relearn.core import srm, stats
from relearn.handlers.experiments.analysis import _measurement

START = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def _look_and_judgement(lower: float) -> tuple[judging.Look, judging.Judgement]:
    look = judging.Look(
        stats.Arm(850, 1000), stats.Arm(460, 500), [judging.GuardrailValue("p99", 0.2, 1.0)], datetime.timedelta(1)
    )
    verdict = stats.Verdict("Continue", "NotYet", "not yet", 0.07, lower, 0.12, 0.2, None)
    return look, judging.Judgement("Continue", "NotYet", "not yet", verdict, (), None)


def _ctx(now: datetime.datetime, status: dict[str, Any]) -> Any:
    return SimpleNamespace(now=now, status=ABExperimentStatus.model_validate(status))


def test_the_last_twenty_looks_are_kept_oldest_first_with_the_guards_counts() -> None:
    status: dict[str, Any] = {}
    ratio = srm.check(champion_requests=2000, challenger_requests=1000, champion_weight=67, challenger_weight=33)
    for minute in range(25):
        look, judgement = _look_and_judgement(lower=0.01 * minute)
        status["measurements"] = _measurement(
            _ctx(START + datetime.timedelta(minutes=minute), status), look, judgement, ratio
        )
    kept = ABExperimentStatus.model_validate(status).measurements or []
    assert len(kept) == MAX_MEASUREMENTS
    assert [m.time for m in kept] == [START + datetime.timedelta(minutes=m) for m in range(5, 25)]
    last = kept[-1]
    assert last.challenger_samples == 500
    assert last.ci_lower == 0.24
    assert last.champion_requests == 2000
    assert last.srm_p_value == ratio.p_value
    assert last.guardrails is not None
    assert last.guardrails[0].value == 0.2


def test_an_infinite_bound_is_left_out_and_an_unjudged_ratio_has_no_p_value() -> None:
    look, judgement = _look_and_judgement(lower=float("-inf"))
    (entry,) = _measurement(_ctx(START, {}), look, judgement, None)
    assert isinstance(entry, dict)
    assert "ciLower" not in entry
    assert "srmPValue" not in entry
    assert entry["ciUpper"] == 0.12
