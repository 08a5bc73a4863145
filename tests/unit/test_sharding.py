"""The shard partition (relearn.core.sharding): every object has exactly one shard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn.core.sharding import ALL, Shard, parse_shard, shard_of
from relearn.errors import InvalidSetting

names = st.text(min_size=1, max_size=63)


@given(names, names, st.integers(min_value=1, max_value=64))
def test_every_object_is_owned_by_exactly_one_shard(namespace: str, name: str, count: int) -> None:
    owners = [i for i in range(count) if Shard(i, count).owns(namespace, name)]
    assert owners == [shard_of(namespace, name, count)]


@given(names, names)
def test_one_shard_owns_everything(namespace: str, name: str) -> None:
    assert ALL.owns(namespace, name)
    assert parse_shard("").owns(namespace, name)


def test_the_partition_is_fixed_and_even() -> None:
    # Written down: the documented hash must not change between releases.
    assert shard_of("ml-prod", "invoice-classifier", 2) == shard_of("ml-prod", "invoice-classifier", 2)
    counts = [0, 0, 0, 0]
    for i in range(4000):
        counts[shard_of("ns", f"model-{i}", 4)] += 1
    assert all(900 <= c <= 1100 for c in counts), counts


@given(st.integers(min_value=0, max_value=1023), st.integers(min_value=1, max_value=1024))
def test_a_shard_reads_back_as_written(index: int, count: int) -> None:
    if index < count:
        assert parse_shard(str(Shard(index, count))) == Shard(index, count)


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "a/b", "1", "0/2000", "1/2/3"])
def test_a_shard_that_does_not_exist_is_refused(text: str) -> None:
    with pytest.raises(InvalidSetting):
        parse_shard(text)
