"""The operators' index follows the topics in rounds: it reads what is there one partition at
a time, then rests with its partitions paused (no fetch at all: on the embedded broker each
fetch that returns records lists every batch of each partition it reads), then reads again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub import index as index_module


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

    sleep = asyncio.sleep

    async def resting(seconds: float, *args: Any) -> Any:
        if asyncio.current_task() is following:  # the index's rest, however long
            rests.append(unpaused[-1] if unpaused else -1)
        return await sleep(seconds, *args)

    monkeypatch.setattr(AIOKafkaConsumer, "pause", paused)
    monkeypatch.setattr(AIOKafkaConsumer, "resume", resumed)
    monkeypatch.setattr(index_module.asyncio, "sleep", resting)
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
