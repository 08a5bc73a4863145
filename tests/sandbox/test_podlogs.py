"""``kubectl logs`` options select what the kubelet would from a run's lines."""

from __future__ import annotations

import datetime
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn_sandbox.errors import ApiError
from relearn_sandbox.podlogs import LogOptions, TimedLog, select

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
lines = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=30)


def log_of(output: list[bytes]) -> TimedLog:
    log = TimedLog()
    for second, line in enumerate(output):
        log.append(line, START + datetime.timedelta(seconds=second))
    return log


@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_lines_are_the_same_however_the_output_arrives(data: bytes, cuts: list[int]) -> None:
    log = TimedLog()
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for start, end in itertools.pairwise(bounds):
        log.append(data[start:end], START)
    assert log.lines == re.findall(rb"[^\n]*\n|[^\n]+", data)
    assert len(log.times) == len(log.lines)


@given(output=lines, tail=st.integers(min_value=0, max_value=40))
def test_tail_gives_the_last_lines(output: list[bytes], tail: int) -> None:
    data, _ = select(log_of(output), LogOptions(tail_lines=tail))
    assert data == b"".join(output[len(output) - min(tail, len(output)) :])


@given(output=lines, since=st.integers(min_value=-5, max_value=40))
def test_since_drops_lines_from_before(output: list[bytes], since: int) -> None:
    data, _ = select(log_of(output), LogOptions(since=START + datetime.timedelta(seconds=since)))
    assert data == b"".join(output[max(0, since) :])


def test_timestamps_prefix_each_line_and_follow_reads_on() -> None:
    log = log_of([b"one\n", b"two\n"])
    data, position = select(log, LogOptions(timestamps=True))
    assert data == b"2026-01-01T00:00:00.000000000Z one\n2026-01-01T00:00:01.000000000Z two\n"
    log.append(b"thr", START)
    assert select(log, LogOptions(), position, complete_only=True) == (b"", position)
    log.append(b"ee\n", START)
    assert select(log, LogOptions(), position, complete_only=True) == (b"three\n", position + 1)


@pytest.mark.parametrize(
    "query",
    [{"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, {"tailLines": "-1"}, {"limitBytes": "x"}],
)
def test_rejects_malformed_options_as_a_server_does(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as raised:
        LogOptions.from_query(query)
    assert raised.value.code == 400


def test_since_seconds_counts_back_from_now() -> None:
    options = LogOptions.from_query({"sinceSeconds": "60", "previous": "true"}, now=START)
    assert options.since == START - datetime.timedelta(seconds=60)
    assert options.previous


@given(output=lines)
def test_a_follower_reads_every_line_once_while_old_ones_are_let_go(output: list[bytes]) -> None:
    log = TimedLog(max_bytes=100)
    read, position = b"", 0
    for line in output:
        log.append(line, START)
        data, position = select(log, LogOptions(), position)
        read += data
    assert read == b"".join(output)
    assert log.size <= 100
    kept, _ = select(log, LogOptions(tail_lines=1000))
    assert b"".join(output).endswith(kept)


def test_a_progress_bar_without_newlines_is_kept_in_bounded_pieces() -> None:
    log = TimedLog(max_bytes=64 * 1024)
    bar = b"\rtraining  42% |####      | 420/1000"
    for _ in range(20_000):  # 760 kB on one "line"
        log.append(bar, START)
    data, _ = select(log, LogOptions())
    assert bar * 4 in data
    assert data.endswith(bar)
    assert log.size <= 64 * 1024
    assert max(len(line) for line in log.lines) <= 16 * 1024 + len(bar)
