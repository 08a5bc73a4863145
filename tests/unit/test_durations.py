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
