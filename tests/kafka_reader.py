"""Reading hub topics from the tests, waiting on records rather than on time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer


async def wait_for_record(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """The first record on `topic` (from the beginning) for which `match` is true."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:

        async def scan() -> dict[str, Any]:
            async for record in consumer:
                if record.value is None:
                    continue
                value = json.loads(record.value)
                if match(value):
                    return value
            raise AssertionError("consumer ended")

        return await asyncio.wait_for(scan(), timeout)
    finally:
        await consumer.stop()
