"""The remembered-hash partitioner chooses as aiokafka's default does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from hub.kafka.partitioning import KeyPartitioner


@given(st.lists(st.binary(max_size=40), max_size=50), st.integers(1, 12))
def test_same_partition_as_aiokafka(keys: list[bytes], count: int) -> None:
    mine, theirs = KeyPartitioner(kept=8), DefaultPartitioner()
    partitions = list(range(count))
    for key in keys + keys:  # the second time from the kept hashes (or after a clear)
        assert mine(key, partitions, partitions) == theirs(key, partitions, partitions)


def test_no_key_picks_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2, 3], [2]) == 2
