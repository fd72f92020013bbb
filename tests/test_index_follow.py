"""The operators' index follows the topics in rounds: it reads what is there one partition at
a time, then rests with its partitions paused (no fetch at all: on the embedded broker each
fetch that returns records lists every batch of each partition it reads), then reads again."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.ops import index as index_module


async def _applied(index: index_module.Index, topic: str, partition: int, count: int) -> None:
    """Until the index has read `count` records of the partition (a deadline, not a guess)."""
    deadline = time.monotonic() + 30
    while index.offsets().get((topic, partition), 0) < count:
        assert time.monotonic() < deadline, f"the index did not read {topic}/{partition}"
        await asyncio.sleep(0.05)


async def test_the_index_reads_in_rounds_and_rests_paused_between_them(
    bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "FOLLOW_INTERVAL_S", 0.3)
    unpaused: list[int] = []  # partitions fetching, after each pause or resume
    rests: list[int] = []  # partitions fetching when the index went to rest
    pause, resume = AIOKafkaConsumer.pause, AIOKafkaConsumer.resume

    def fetching(consumer: AIOKafkaConsumer) -> int:
        return len(consumer.assignment() - consumer.paused())

    def paused(self: AIOKafkaConsumer, *partitions: Any) -> None:
        pause(self, *partitions)
        unpaused.append(fetching(self))

    def resumed(self: AIOKafkaConsumer, *partitions: Any) -> None:
        resume(self, *partitions)
        unpaused.append(fetching(self))

    rest = index_module._rest

    async def resting(seconds: float) -> None:
        rests.append(unpaused[-1] if unpaused else -1)
        await rest(seconds)

    monkeypatch.setattr(AIOKafkaConsumer, "pause", paused)
    monkeypatch.setattr(AIOKafkaConsumer, "resume", resumed)
    monkeypatch.setattr(index_module, "_rest", resting)
    index = index_module.Index(tmp_path / "index.sqlite3")
    following = asyncio.create_task(index_module.follow(bootstrap, index))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        row = {"id": "t1", "state": "Requested", "borrower": "NORTH", "pending": []}
        await producer.send_and_wait("ill.transactions", json.dumps(row).encode(), b"t1", 2)
        await _applied(index, "ill.transactions", 2, 1)
        rested = len(rests)
        # Never more than one partition fetching; none at all while it rests.
        assert unpaused and max(unpaused) <= 1
        assert rests == [0] * len(rests)
        # A record written while it rests is read in the next round.
        row["state"] = "Shipped"
        await producer.send_and_wait("ill.transactions", json.dumps(row).encode(), b"t1", 2)
        await _applied(index, "ill.transactions", 2, 2)
        assert max(unpaused) <= 1 and len(rests) > rested >= 1
        assert rests == [0] * len(rests)
        state = index.db.execute("SELECT state FROM transactions WHERE id = 't1'").fetchone()
        assert state[0] == "Shipped"
    finally:
        following.cancel()
        await producer.stop()
        index.close()


@pytest.fixture
def fake_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The partitions' ends come from the stand-in consumer (hub.kafka.partition_ends asks a real
    broker with a Fetch)."""

    async def ends(consumer: Any, tps: Any) -> dict[Any, int]:
        return dict(await consumer.end_offsets(list(tps)))

    monkeypatch.setattr(index_module.partition_ends, "end_offsets", ends)


class _Consumer:
    """Stands in for aiokafka's consumer in `_read_to_end`: partitions with an end offset and
    a position, reads of up to two records, and a list of reads that bring nothing."""

    def __init__(self, ends: dict[Any, int], starved: Any = None, fail: Any = None) -> None:
        self.ends, self.positions = ends, dict.fromkeys(ends, 0)
        self.starved, self.fail = starved, fail
        self.active: set[Any] = set(ends)
        self.reads: list[Any] = []

    def pause(self, *tps: Any) -> None:
        self.active -= set(tps)

    def resume(self, *tps: Any) -> None:
        self.active |= set(tps)

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: Any) -> int:
        return self.positions[tp]

    async def getmany(self, tp: Any, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        assert self.active == {tp}, "one partition fetching at a time"
        self.reads.append(tp)
        if tp == self.fail:
            raise RuntimeError("broker gone")
        if tp == self.starved:
            return {}
        start = self.positions[tp]
        stop = min(start + 2, self.ends[tp])
        self.positions[tp] = stop
        return {tp: [_record(tp, n) for n in range(start, stop)]}


def _record(tp: Any, offset: int) -> Any:
    row = {"id": f"t{offset}", "state": "Requested", "borrower": "NORTH", "pending": []}
    return type(
        "R",
        (),
        {
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": offset,
            "timestamp": 0,
            "key": f"t{offset}".encode(),
            "value": json.dumps(row).encode(),
        },
    )()


async def test_a_round_reads_each_partition_to_its_end_and_leaves_all_paused(
    tmp_path: Path, fake_ends: None
) -> None:
    from aiokafka import TopicPartition

    a, b, c = (TopicPartition("ill.transactions", p) for p in range(3))
    consumer = _Consumer({a: 5, b: 0, c: 3})
    index = index_module.Index(tmp_path / "index.sqlite3")
    try:
        applied = await index_module._read_to_end(consumer, index, [a, b, c], hold=4)
        assert applied == 8 and consumer.active == set()
        assert b not in consumer.reads  # nothing new there: not fetched at all
        assert index.offsets() == {("ill.transactions", 0): 5, ("ill.transactions", 2): 3}
    finally:
        index.close()


async def test_a_partition_the_broker_starves_is_left_for_the_next_round(
    tmp_path: Path, fake_ends: None
) -> None:
    from aiokafka import TopicPartition

    a, b = TopicPartition("ill.transactions", 0), TopicPartition("ill.transactions", 1)
    consumer = _Consumer({a: 4, b: 2}, starved=a)
    index = index_module.Index(tmp_path / "index.sqlite3")
    try:
        assert await index_module._read_to_end(consumer, index, [a, b], hold=100) == 2
        assert consumer.reads.count(a) == index_module.EMPTY_READS and consumer.active == set()
        # A read that fails leaves every partition paused too (the round is retried whole).
        failing = _Consumer({a: 4, b: 2}, fail=b)
        with pytest.raises(RuntimeError):
            await index_module._read_to_end(failing, index, [a, b], hold=100)
        assert failing.active == set()
    finally:
        index.close()


def test_the_rest_grows_with_the_round_within_bounds() -> None:
    assert index_module.rest_after(0.01) == index_module.FOLLOW_INTERVAL_S
    assert index_module.rest_after(3.0) == 3.0 * index_module.REST_PER_ROUND
    assert index_module.rest_after(3600) == index_module.MAX_REST_S


async def _rows(bootstrap: str, ids: list[str], partition: int = 0) -> None:
    """One ill.transactions row (and one ill.events entry) per id, in that order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for tid in ids:
            row = {"id": tid, "state": "Requested", "borrower": "NORTH", "pending": []}
            await producer.send_and_wait(
                "ill.transactions", json.dumps(row).encode(), tid.encode(), partition
            )
    finally:
        await producer.stop()


def _ids(index: index_module.Index) -> set[str]:
    return {row[0] for row in index.db.execute("SELECT id FROM transactions")}


async def test_the_index_reads_a_different_broker_from_its_start(tmp_path: Path) -> None:
    """A broker whose partitions end before the offsets the index kept is not the one it
    read: it reads the new one from the start and keeps what it had."""
    from hub.kafka import topics
    from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata

    index = index_module.Index(tmp_path / "index.sqlite3")
    try:
        with EmbeddedBroker() as first:
            await wait_for_metadata(first.bootstrap_servers)
            await topics.ensure(first.bootstrap_servers, topics.load())
            await _rows(first.bootstrap_servers, ["old-1", "old-2", "old-3"])
            assert await index_module.catch_up(first.bootstrap_servers, index) == 3
        with EmbeddedBroker() as second:
            await wait_for_metadata(second.bootstrap_servers)
            await topics.ensure(second.bootstrap_servers, topics.load())
            await _rows(second.bootstrap_servers, ["new-1", "new-2"])
            assert await index_module.catch_up(second.bootstrap_servers, index) == 2
        assert _ids(index) == {"old-1", "old-2", "old-3", "new-1", "new-2"}
        assert index.offsets()[("ill.transactions", 0)] == 2
    finally:
        index.close()


async def test_the_index_reads_again_what_a_crash_restore_gave_new_records(
    tmp_path: Path,
) -> None:
    """The kept broker killed after its snapshot: restored, it holds fewer records than the
    index read, and new ones take their offsets. The index reads them (the broker's life
    changed, hub.kafka.incarnation) and keeps the lost ones' story."""
    from hub.kafka import embedded as broker
    from hub.kafka import snapshots, topics

    data_dir = tmp_path / "data"
    index = index_module.Index(tmp_path / "index.sqlite3")
    kept, _ = broker.ensure(data_dir)
    try:
        await topics.ensure(kept.address, topics.load())
        await _rows(kept.address, ["saved-1", "saved-2"])
        written = time.time()
        assert broker.snapshot_now(data_dir)
        deadline = time.monotonic() + 30
        while (last := snapshots.summary(data_dir)) is None or last.taken <= written:
            assert time.monotonic() < deadline, "no snapshot"
            await asyncio.sleep(0.1)
        await _rows(kept.address, ["lost-3", "lost-4"])  # after the snapshot: lost below
        assert await index_module.catch_up(kept.address, index) == 4
        os.kill(kept.broker_pid, 9)
        while (now := broker.running(data_dir)) is None or now.broker_pid == kept.broker_pid:
            assert time.monotonic() < deadline, "not restarted"
            await asyncio.sleep(0.1)
        await _rows(kept.address, ["new-3"])  # takes the offset lost-3 had
        await index_module.catch_up(kept.address, index)
        assert _ids(index) == {"saved-1", "saved-2", "lost-3", "lost-4", "new-3"}
        assert index.offsets()[("ill.transactions", 0)] == 3
        # The transactions whose newest step the broker lost need the operator's attention.
        found = index.find(
            index_module.Criteria(needs_attention=True), datetime.now(UTC), timedelta(days=1)
        )
        assert {row["id"] for row in found} == {"lost-3", "lost-4"}
        assert all("the broker lost its newest steps" in row["attention"] for row in found)
    finally:
        index.close()
        broker.stop(data_dir)
