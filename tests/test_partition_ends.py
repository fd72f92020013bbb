"""hub.kafka.partition_ends gives a partition's end as the broker's high watermark, right on the
embedded broker whatever the batching (its ListOffsets "latest" is not: ../shared/KAFKA.md)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.kafka import partition_ends
from hub.kafka.partition_ends import Bounds
from tests.test_table_recovery import write_rows

pytestmark = pytest.mark.kafka


async def test_the_end_counts_every_record_of_multi_record_batches(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("ends", 3, 1)])
    finally:
        await admin.close()
    await write_rows(bootstrap, "ends", singles=20, batches=5, per=10)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        mixed, empty, other = (TopicPartition("ends", p) for p in range(3))
        asked = [mixed, empty, TopicPartition("ill.events", 0)]
        found = await partition_ends.bounds(consumer, asked)
        assert found == {
            mixed: Bounds(0, 70),
            empty: Bounds(0, 0),
            TopicPartition("ill.events", 0): Bounds(0, 0),
        }
        assert await partition_ends.end_offsets(consumer, [mixed]) == {mixed: 70}
        assert await partition_ends.end_offsets(consumer, []) == {}
        assert other not in found
    finally:
        await consumer.stop()
