"""The embedded broker's snapshot (hub/kafka/snapshots.py): what a dump holds comes back at the same
offsets with keys, headers, timestamps and committed offsets; restoring drops what retention
and compaction would have dropped, filling their offsets; a damaged or foreign file is
refused with the reason before anything is written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.kafka import partition_ends, snapshots
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
from hub.kafka.snapshots import Partition, Record, Snapshot

HOUR_MS = 3_600_000


def sample() -> Snapshot:
    records = [
        Record(0, 1_000, b"k", b"v", (("h", b"x"),)),
        Record(2, 2_000, None, b"only a value"),
        Record(3, 3_000, b"tomb", None, (("a", b""), ("b", b"\x00\xff"))),
    ]
    return Snapshot(
        "2026-12-07T00:00:00+00:00",
        {"t": {"partitions": 1, "config": {"cleanup.policy": "delete"}}},
        {"g": {"t/0": 3}},
        [Partition("t", 0, 0, 4, records)],
    )


def test_a_snapshot_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / snapshots.FILE
    size = snapshots.write(path, sample())
    assert size == path.stat().st_size
    assert snapshots.read(path) == sample()
    assert [p.name for p in tmp_path.iterdir()] == [snapshots.FILE]  # no temporary left


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda data: b"PK\x03\x04" + data[4:], "is not an rshub broker snapshot"),
        (lambda data: data[:-100], "damaged or truncated"),
        (lambda data: data[:60] + bytes([data[60] ^ 1]) + data[61:], "damaged or truncated"),
        (
            lambda data: snapshots.MAGIC + b"\x00\x00\x00\x09" + data[len(snapshots.MAGIC) + 4 :],
            "is version 9; this rshub reads version 1",
        ),
    ],
)
def test_a_damaged_or_foreign_file_is_refused_with_the_reason(
    tmp_path: Path, spoil: object, reason: str
) -> None:
    path = tmp_path / snapshots.FILE
    snapshots.write(path, sample())
    path.write_bytes(spoil(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(snapshots.SnapshotError, match=reason):
        snapshots.read(path)


def test_restoring_keeps_what_retention_and_compaction_keep() -> None:
    now = 100 * HOUR_MS
    old, new = now - 3 * HOUR_MS, now - 1
    part = Partition(
        "t",
        0,
        0,
        6,
        [
            Record(0, old, b"a", b"1"),
            Record(1, old, b"b", b"1"),
            Record(2, new, b"a", b"2"),
            Record(3, old, b"c", b"1"),
            Record(4, new, b"b", None),
            Record(5, new, b"d", b"1"),
        ],
    )
    compacted = snapshots.keep(part, {"cleanup.policy": "compact"}, None, now)
    assert [r.offset for r in compacted] == [2, 3, 4, 5]  # each key's last, tombstones too
    retention = {"cleanup.policy": "delete", "retention.ms": str(HOUR_MS)}
    assert [r.offset for r in snapshots.keep(part, retention, None, now)] == [2, 4, 5]
    # Not read yet by a consumer group (committed at 1): kept, however old.
    assert [r.offset for r in snapshots.keep(part, retention, 1, now)] == [1, 2, 3, 4, 5]


async def test_a_dump_restored_into_a_fresh_broker_has_the_same_offsets() -> None:
    old = int(time.time() * 1000) - 48 * HOUR_MS  # past ill.replies' retention (24 h)
    with EmbeddedBroker() as first:
        bootstrap = first.bootstrap_servers
        await wait_for_metadata(bootstrap)
        from hub.kafka import topics

        await topics.ensure(bootstrap, topics.load())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for n in range(30):
                stamp = old if n < 10 else None
                await producer.send_and_wait(
                    "ill.replies",
                    b"%d" % n,
                    key=b"k%d" % n,
                    partition=0,
                    timestamp_ms=stamp,
                    headers=[("n", b"%d" % n)],
                )
            for n in range(5):  # one key written five times: compacted to its last
                await producer.send_and_wait("ill.load", b"%d" % n, key=b"lender", partition=1)
        finally:
            await producer.stop()
        group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="readers")
        await group.start()
        try:
            group.assign([TopicPartition("ill.replies", 0)])
            await group.commit({TopicPartition("ill.replies", 0): 25})
        finally:
            await group.stop()
        saved = await snapshots.dump(bootstrap)
        assert saved is not None
    assert saved.groups == {"readers": {"ill.replies/0": 25}}

    with EmbeddedBroker() as second:
        bootstrap = second.bootstrap_servers
        await wait_for_metadata(bootstrap)
        restored = await snapshots.restore(bootstrap, saved)
        assert (restored.dropped, restored.fillers) == (10 + 4, 10 + 4)
        again = await snapshots.dump(bootstrap)
        assert again is not None
        assert await snapshots.dump(bootstrap, since=again) is None  # unchanged
        replies = next(p for p in again.partitions if (p.topic, p.partition) == ("ill.replies", 0))
        assert (replies.start, replies.end) == (0, 30)
        assert [r.offset for r in replies.records] == list(range(10, 30))  # fillers not kept
        assert replies.records[0].key == b"k10" and replies.records[0].headers == (("n", b"10"),)
        load = next(p for p in again.partitions if (p.topic, p.partition) == ("ill.load", 1))
        assert [(r.offset, r.value) for r in load.records] == [(4, b"4")]
        assert again.groups == saved.groups
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tp = TopicPartition("ill.replies", 0)
            assert await partition_ends.end_offsets(consumer, [tp]) == {tp: 30}
            # The last record went alone: even the broker's ListOffsets is right.
            assert await consumer.end_offsets([tp]) == {tp: 30}
        finally:
            await consumer.stop()


async def test_a_dump_since_an_earlier_one_holds_what_a_full_dump_holds() -> None:
    with EmbeddedBroker() as running:
        bootstrap = running.bootstrap_servers
        await wait_for_metadata(bootstrap)
        from hub.kafka import topics

        await topics.ensure(bootstrap, topics.load())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for n in range(5):
                await producer.send_and_wait("ill.events", b"%d" % n, partition=0)
            first = await snapshots.dump(bootstrap)
            assert first is not None
            for n in range(5, 8):
                await producer.send_and_wait("ill.events", b"%d" % n, partition=0)
            await producer.send_and_wait("ill.events", b"other", partition=3)
        finally:
            await producer.stop()
        later = await snapshots.dump(bootstrap, since=first)
        full = await snapshots.dump(bootstrap)
        assert later is not None and full is not None
        assert later.partitions == full.partitions
        events = next(p for p in later.partitions if (p.topic, p.partition) == ("ill.events", 0))
        assert [r.value for r in events.records] == [b"%d" % n for n in range(8)]
