"""Listeners' durable positions (a mailbox's UIDVALIDITY and last UID) on the compacted topic
`ill.checkpoints`: written and acknowledged before the listener moves on, read back once at
start-up. One key per listener position; each key has one writer (the listener that owns
it), so the last record of a key is its position."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.core.topics import Topic
from hub.kafka import internals, partition_ends
from hub.kafka.producer import KafkaIO

TOPIC = Topic.CHECKPOINTS


class Checkpoints:
    def __init__(self, io: KafkaIO) -> None:
        self.io = io
        self.known: dict[str, str] | None = None

    async def _read_all(self) -> dict[str, str]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.io.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"rshub-checkpoints-{uuid.uuid4().hex[:6]}",
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(TOPIC) or set()
            if not partitions:
                await internals.refresh_metadata(consumer)  # topic created at start-up
                partitions = consumer.partitions_for_topic(TOPIC) or set()
            assigned = [TopicPartition(TOPIC, p) for p in sorted(partitions)]
            if not assigned:
                return {}
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await partition_ends.end_offsets(consumer, assigned)
            found: dict[str, str] = {}
            remaining = {tp for tp in assigned if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        if record.key is not None:
                            key = record.key.decode()
                            if record.value is None:
                                found.pop(key, None)
                            else:
                                found[key] = record.value.decode()
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return found
        finally:
            await consumer.stop()

    async def load(self, key: str) -> str | None:
        if self.known is None:
            self.known = await self._read_all()
        return self.known.get(key)

    async def save(self, key: str, value: str) -> None:
        await self.io.send(TOPIC, key, value.encode())
        if self.known is not None:
            self.known[key] = value
