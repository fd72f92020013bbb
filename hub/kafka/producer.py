"""The connectors' side of Kafka: an acknowledged producer plus the followers they need."""

from __future__ import annotations

import uuid

import structlog
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from connectors.core.records import AuditRecord, DeadLetter
from connectors.core.topics import Topic
from hub.kafka.followers import ItemIndex, LoadIndex, Verdicts
from hub.kafka.partitioning import PARTITIONER

log = structlog.get_logger(__name__)
# Header naming the gateway instance waiting for a message's verdict: the agent that applies
# it in the same process hands the verdict over directly instead of through ill.replies.
REPLY_TO = "rshub-reply-to"


class KafkaIO:
    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.instance = uuid.uuid4().hex
        self.producer: AIOKafkaProducer | None = None
        self.verdicts = Verdicts(bootstrap_servers)
        self.items = ItemIndex(bootstrap_servers)
        self.load = LoadIndex(bootstrap_servers)

    async def start(self) -> None:
        # acks="all": an endpoint answers its partner only once the broker holds the message.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            linger_ms=0,
            partitioner=PARTITIONER,
            request_timeout_ms=10_000,  # a dead broker: a 503 to the partner within 10 s
        )
        await self.producer.start()
        await self.verdicts.start()
        await self.items.start()
        await self.items.ready.wait()

    async def stop(self) -> None:
        await self.verdicts.stop()
        await self.items.stop()
        if self.producer:
            await self.producer.stop()

    async def send(
        self, topic: str, key: str, value: bytes | None, wait_verdict: bool = False
    ) -> str:
        """Produce and wait for the broker's acknowledgement. `wait_verdict`: this instance
        waits for the state machine's verdict on the message."""
        assert self.producer is not None, "KafkaIO.start() first"
        headers = [(REPLY_TO, self.instance.encode())] if wait_verdict else None
        meta = await self.producer.send_and_wait(
            topic, key=key.encode(), value=value, headers=headers
        )
        return f"{topic}/{meta.partition}/{meta.offset}"

    async def send_record(self, topic: str, key: str, record: BaseModel) -> str:
        return await self.send(topic, key, record.model_dump_json().encode())

    async def audit(
        self,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None = None,
        transaction_id: str | None = None,
        *,
        keep: int | None = None,
    ) -> str:
        record = AuditRecord.of(
            direction, protocol, partner, body, content_type, transaction_id, keep=keep
        )
        return await self.send_record(Topic.AUDIT, transaction_id or partner or "unknown", record)

    async def deadletter(self, letter: DeadLetter) -> None:
        # Every refusal, an authentication failure included, is one line with who and where.
        log.warning(
            "deadletter",
            stage=letter.stage,
            error=letter.error[:500],
            partner=letter.partner,
            protocol=letter.protocol,
            transaction_id=letter.transaction_id,
        )
        await self.send_record(
            Topic.DEADLETTER, letter.transaction_id or letter.partner or "-", letter
        )
