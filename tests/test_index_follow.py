"""The operators' index follows the topics in rounds: it reads what is there, then rests with
its partitions paused (no fetch at all: on the embedded broker each fetch that returns records
lists every batch of each partition it reads), then reads again."""

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
    pauses: list[int] = []
    pause = AIOKafkaConsumer.pause

    def counted(self: AIOKafkaConsumer, *partitions: Any) -> None:
        pauses.append(len(partitions))
        pause(self, *partitions)

    monkeypatch.setattr(AIOKafkaConsumer, "pause", counted)
    index = index_module.Index(tmp_path / "index.sqlite3")
    following = asyncio.create_task(index_module.follow(bootstrap, index))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        row = {"id": "t1", "state": "Requested", "borrower": "NORTH", "pending": []}
        await producer.send_and_wait("ill.transactions", json.dumps(row).encode(), b"t1", 2)
        await _applied(index, "ill.transactions", 2, 1)
        rested = len(pauses)
        assert rested >= 1 and min(pauses) > 40  # every partition it follows, at once
        # A record written while it rests is read in the next round.
        row["state"] = "Shipped"
        await producer.send_and_wait("ill.transactions", json.dumps(row).encode(), b"t1", 2)
        await _applied(index, "ill.transactions", 2, 2)
        assert len(pauses) > rested
        state = index.db.execute("SELECT state FROM transactions WHERE id = 't1'").fetchone()
        assert state[0] == "Shipped"
    finally:
        following.cancel()
        await producer.stop()
        index.close()
