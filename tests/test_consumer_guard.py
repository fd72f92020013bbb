"""The skipped-records guard seeks back only when a partition's position has stayed ahead of
what the agents acknowledged while the worker was idle (hub/kafka/consumer_guard.py). The consumer
here is a stand-in for faust's bookkeeping; the two-worker test (tests/test_scale_out.py)
runs the guard against the real thing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from hub.kafka.consumer_guard import SkippedRecords

INBOUND = TP("ill.inbound", 1)
CHANGELOG = TP("app-transactions-changelog", 1)


class Consumer:
    def __init__(self, positions: dict[TP, int], committed: dict[TP, int | None]) -> None:
        self.positions = positions
        self._committed_offset = committed
        self._acked: dict[TP, list[int]] = {}
        self._unacked_messages: set[Any] = set()
        self.flow_active = True
        self.sought: list[tuple[TP, int]] = []
        self.first = 0  # the partition's first offset

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int:
        return self.positions[tp]

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.first for tp in tps}

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))
        self.positions[tp] = offset


def guard(consumer: Consumer) -> SkippedRecords:
    app = SimpleNamespace(
        consumer=consumer,
        rebalancing=False,
        topics=SimpleNamespace(_topics=set()),
        tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}),
    )
    return SkippedRecords(app)


def looks(watch: SkippedRecords, times: int) -> list[Any]:
    return [asyncio.run(watch.check()) for _ in range(times)]


def test_a_record_taken_but_never_acknowledged_is_read_again_on_the_second_look() -> None:
    consumer = Consumer({INBOUND: 8, CHANGELOG: 9}, {INBOUND: 7, CHANGELOG: 3})
    first, second = looks(guard(consumer), 2)
    assert first == []  # one look proves nothing: faust may be about to hand it over
    assert second == [(INBOUND, 7, 8)]
    assert consumer.sought == [(INBOUND, 7)]  # changelog partitions are recovery's business


def test_acknowledged_records_not_yet_committed_count_as_done() -> None:
    consumer = Consumer({INBOUND: 8}, {INBOUND: 5})
    consumer._acked[INBOUND] = [6, 5, 7]
    assert looks(guard(consumer), 3) == [[], [], []]


def test_a_gap_in_the_acknowledgements_is_where_reading_resumes() -> None:
    consumer = Consumer({INBOUND: 9}, {INBOUND: 5})
    consumer._acked[INBOUND] = [5, 7, 8]  # 6 was never acknowledged
    looks(guard(consumer), 2)
    assert consumer.sought == [(INBOUND, 6)]


def test_progress_between_looks_or_work_in_flight_is_left_alone() -> None:
    consumer = Consumer({INBOUND: 8}, {INBOUND: 6})
    watch = guard(consumer)
    asyncio.run(watch.check())
    consumer.positions[INBOUND] = 9  # fetching moved on: a different gap
    asyncio.run(watch.check())
    assert consumer.sought == []
    consumer._unacked_messages.add("in flight")
    assert looks(watch, 3) == [[], [], []]
    consumer._unacked_messages.clear()
    consumer.flow_active = False  # rebalancing: the seek to committed offsets is faust's
    assert looks(watch, 3) == [[], [], []]


def test_a_partition_nobody_committed_on_counts_from_its_first_offset() -> None:
    consumer = Consumer({INBOUND: 6}, {INBOUND: None})
    consumer.first = 2
    consumer._acked[INBOUND] = [2, 3, 4, 5]
    assert looks(guard(consumer), 3) == [[], [], []]
    consumer._acked[INBOUND] = [2, 3, 5]  # 4 taken from Kafka, never acknowledged
    looks(guard(consumer), 2)
    assert consumer.sought == [(INBOUND, 4)]
