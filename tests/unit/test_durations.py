"""Durations as written in CRs (``90s``, ``1h30m``, ``7d``)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("1.5h", 5400), ("1d12h", 129600)],
)
def test_parses_units_and_compounds(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "-5m", "5w", "1h 30m"])
def test_refuses_malformed_text_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**8))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    delta = datetime.timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def _policy(**spec: object) -> dict[str, object]:
    body: dict[str, object] = {
        "apiVersion": "relearn.dev/v1alpha1",
        "kind": "DriftPolicy",
        "metadata": {"name": "p", "namespace": "ml"},
        "spec": {"model": "m", "prometheus": {"url": "http://p:9090"}, "features": [{"name": "x"}], **spec},
    }
    return body


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"interval": "0s"}, "at least 1s"),
        ({"interval": "500ms"}, "at least 1s"),
        ({"window": "0m"}, "at least 1s"),
        ({"prometheus": {"url": "http://p:9090", "timeout": "0s"}}, "longer than 0"),
    ],
)
def test_intervals_below_a_second_are_refused_at_admission_and_by_the_operator(
    spec: dict[str, object], why: str
) -> None:
    from pydantic import ValidationError
    from relearn.api.driftpolicy import DriftPolicySpec
    from relearn.api.schema import validate_object

    errors = validate_object(_policy(**spec))
    assert any(why in str(e) for e in errors), errors
    with pytest.raises(ValidationError):
        DriftPolicySpec.model_validate(_policy(**spec)["spec"])


@pytest.mark.parametrize("text", ["99999999999d", "1" * 40 + "s"])
def test_durations_that_would_overflow_are_refused_at_admission(text: str) -> None:
    from relearn.api.schema import validate_object

    assert validate_object(_policy(window=text))


def test_windows_longer_than_a_year_are_refused_by_the_operator() -> None:
    from pydantic import ValidationError
    from relearn.api.driftpolicy import DriftPolicySpec

    with pytest.raises(ValidationError, match="longer than a year"):
        DriftPolicySpec.model_validate(_policy(reference={"source": "Window", "offset": "400d"})["spec"])
    assert DriftPolicySpec.model_validate(_policy(interval="1s", window="365d")["spec"]).interval == "1s"


@given(st.integers(0, 9_999_999), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_every_duration_the_crds_accept_parses_without_overflow(number: int, unit: str) -> None:
    assert parse_duration(f"{number}{unit}" * 4).total_seconds() >= 0
