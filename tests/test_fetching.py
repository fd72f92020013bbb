"""Fetch pacing: the wait grows when the broker runs out of time, and a consumer over a full
partition of the embedded broker still gets its records."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.kafka import fetching
from hub.kafka.fetching import (
    FOLLOWER_IDLE_MS,
    FOLLOWER_WAIT_MS,
    IDLE_AFTER_S,
    Fetched,
    Pacer,
    classify,
    next_wait,
    pace,
    polled,
)

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def test_records_win_over_a_starved_partition() -> None:
    assert classify({A: 5, B: 7}, {A: 9, B: 9}, [A]) is Fetched.RECORDS


def test_an_answer_short_of_the_highwater_is_starved() -> None:
    assert classify({A: 5}, {A: 9}, []) is Fetched.STARVED
    assert classify({A: 5, B: 7}, {A: 5, B: 9}, []) is Fetched.STARVED


def test_at_the_end_or_unanswered_is_nothing() -> None:
    assert classify({A: 5}, {A: 5}, []) is Fetched.NOTHING
    assert classify({A: 5}, {}, []) is Fetched.NOTHING  # an error or a stale response
    assert classify({A: 5}, {A: None}, []) is Fetched.NOTHING
    assert classify({A: 5}, {}, [B]) is Fetched.NOTHING  # B's records are not from this fetch


def test_starved_doubles_up_to_the_cap() -> None:
    assert next_wait(10, Fetched.STARVED, 10, 1000) == 20
    assert next_wait(640, Fetched.STARVED, 10, 1000) == 1000
    assert next_wait(1000, Fetched.STARVED, 10, 1000) == 1000


def test_records_drift_down_to_the_floor() -> None:
    assert next_wait(640, Fetched.RECORDS, 10, 1000) == 560
    assert next_wait(11, Fetched.RECORDS, 10, 1000) == 10
    assert next_wait(10, Fetched.RECORDS, 10, 1000) == 10
    waits = [640]
    while waits[-1] > 10:
        waits.append(next_wait(waits[-1], Fetched.RECORDS, 10, 1000))
    assert len(waits) < 60  # back at the floor after a few dozen fetches with records


def test_an_empty_long_poll_keeps_the_wait() -> None:
    assert next_wait(80, Fetched.NOTHING, 10, 1000) == 80


def test_pacer_idles_only_when_told_to() -> None:
    pacer = Pacer(10, idle_ms=100)
    pacer.polled(True, 0.0)
    assert pacer.wait_ms() == 10
    pacer.polled(False, IDLE_AFTER_S + 0.1)
    assert pacer.wait_ms() == 100
    for _ in range(5):
        pacer.fetched(Fetched.STARVED)
    assert pacer.wait_ms() == 320  # starved beyond the idle wait: the larger one
    pacer.polled(True, IDLE_AFTER_S + 0.2)
    assert pacer.wait_ms() == 320
    follower = Pacer(250, idle_ms=None)
    follower.polled(False, 100.0)
    assert follower.wait_ms() == 250


def test_an_idle_follower_fetches_less_often_and_wakes_with_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(fetching.time, "monotonic", lambda: clock[0])
    consumer: Any = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=250))
    pacer = Pacer(FOLLOWER_WAIT_MS, idle_ms=FOLLOWER_IDLE_MS)
    polled(consumer, pacer, True)
    assert consumer._fetcher._fetch_max_wait_ms == FOLLOWER_WAIT_MS
    clock[0] = IDLE_AFTER_S / 2
    polled(consumer, pacer, False)
    assert consumer._fetcher._fetch_max_wait_ms == FOLLOWER_WAIT_MS  # not quiet long enough
    clock[0] = IDLE_AFTER_S + 0.1
    polled(consumer, pacer, False)
    assert consumer._fetcher._fetch_max_wait_ms == FOLLOWER_IDLE_MS
    polled(consumer, pacer, True)
    assert consumer._fetcher._fetch_max_wait_ms == FOLLOWER_WAIT_MS


async def test_a_full_partition_still_serves_a_paced_consumer(bootstrap: str) -> None:
    """Tansu lists every batch of a partition on each fetch and gives up at the fetch's
    deadline; 25,000 one-record batches are past what a 10 ms wait covers on this machine."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("full", 1, 1)])
    finally:
        await admin.close()
    total, writers = 25_000, 8

    async def writer(first: int) -> None:
        # One record in flight per producer: one batch per record, as the hub writes them.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        try:
            for i in range(first, total, writers):
                await producer.send_and_wait("full", str(i).encode(), partition=0)
        finally:
            await producer.stop()

    await asyncio.gather(*(writer(i) for i in range(writers)))
    tp = TopicPartition("full", 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        pacer = Pacer(10, idle_ms=None)
        pace(consumer, pacer)
        consumer.assign([tp])
        consumer.seek(tp, total - 5)
        got: list[int] = []
        for _ in range(30):  # a bound, so that a starved consumer fails instead of hanging
            batch = await consumer.getmany(tp, timeout_ms=1000)
            got += [r.offset for r in batch.get(tp, [])]
            if len(got) >= 5:
                break
        assert got == list(range(total - 5, total))
    finally:
        await consumer.stop()
