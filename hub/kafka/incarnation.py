"""Which life of the embedded broker a reader is talking to, written into the broker itself.

Every time the keeper (hub.kafka.embedded) starts a broker (after a stop, a reboot or a crash) it
restores the last snapshot and then appends one record to the topic `TOPIC`: a new id and,
per partition, the end the restore left (`ends`). Records at or past those ends were written
in this life; a reader that had read further in an earlier life (a crash loses what came
after the snapshot, and new records take those offsets) must read again from there.

The operators' index keeps the id it last saw: a different one tells it where to read again
(hub.ops.index). Tansu's cluster id is the same for every broker, so it cannot tell them apart.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.kafka import partition_ends

TOPIC = "rshub.broker"
PARTITION = TopicPartition(TOPIC, 0)
READS = 10  # fetches of the last record before giving up (a broker that will not serve it)


@dataclass(frozen=True)
class Incarnation:
    id: str
    started: str
    ends: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> restored end

    def restored_end(self, topic: str, partition: int) -> int:
        return self.ends.get(f"{topic}/{partition}", 0)


async def announce(bootstrap: str, ends: dict[str, int]) -> Incarnation:
    """Records a new life of the broker at `bootstrap` whose restore ended at `ends`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if TOPIC not in await admin.list_topics():
            topic = NewTopic(TOPIC, 1, 1, topic_configs={"cleanup.policy": "compact"})
            await admin.create_topics([topic])
    finally:
        await admin.close()
    life = Incarnation(uuid.uuid4().hex, datetime.now(UTC).isoformat(), ends)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        value = json.dumps(life.__dict__).encode()
        await producer.send_and_wait(TOPIC, value, key=b"incarnation", partition=0)
    finally:
        await producer.stop()
    return life


async def latest(consumer: AIOKafkaConsumer) -> Incarnation | None:
    """The broker's current life as announced, None where nothing announced one (a broker
    the keeper did not start: Apache Kafka, a test's own broker). `consumer` is started and
    not assigned `TOPIC` (it is assigned and released here)."""
    if not consumer.partitions_for_topic(TOPIC):
        return None
    end = (await partition_ends.end_offsets(consumer, [PARTITION]))[PARTITION]
    if end == 0:
        return None
    before = consumer.assignment()
    consumer.assign([PARTITION])
    try:
        consumer.seek(PARTITION, end - 1)
        record: Any = None
        for _ in range(READS):
            got = await consumer.getmany(PARTITION, timeout_ms=1000, max_records=1)
            record = next(iter(got.get(PARTITION, [])), None)
            if record is not None:
                break
        if record is None or record.value is None:
            return None
        found = json.loads(record.value)
        return Incarnation(found["id"], found["started"], found.get("ends") or {})
    finally:
        consumer.assign(list(before))
