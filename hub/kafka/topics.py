"""Topic declarations (topics.yaml) and their creation at start-up.

The declarations are installed with the package (`hub/topics.yaml`), so `rshub serve` works
from any folder; the repository's top-level `topics.yaml` is the same file (a test keeps the
two identical) and `RSHUB_TOPICS_FILE` replaces them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import BaseModel, Field

from connectors.core.contract import Registry
from connectors.core.topics import OUTBOUND_PREFIX
from hub.kafka import internals, partition_ends

log = structlog.get_logger(__name__)


class TopicSpec(BaseModel):
    name: str
    partitions: int = Field(ge=1)
    cleanup: str = Field("delete", pattern="^(delete|compact)$")
    retention_hours: int | None = None
    purpose: str

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": self.cleanup}
        if self.retention_hours is not None:
            config["retention.ms"] = str(self.retention_hours * 3_600_000)
        return config


DEFAULT = Path(__file__).parent.parent / "topics.yaml"


def load(path: Path | None = None) -> list[TopicSpec]:
    raw = yaml.safe_load(Path(path or DEFAULT).read_text())
    return [TopicSpec.model_validate(item) for item in raw["topics"]]


def complete(specs: list[TopicSpec], connectors: Registry) -> list[TopicSpec]:
    """The declared topics plus each connector's outbound and own topics that the file does
    not declare (with the outbound topics' defaults): a connector needs no edit here."""
    declared = {spec.name for spec in specs}
    template = next((s for s in specs if s.name.startswith(OUTBOUND_PREFIX)), None)
    added = []
    for connector in connectors:
        for name in (connector.outbound_topic, *connector.topics):
            if name in declared:
                continue
            declared.add(name)
            added.append(
                TopicSpec(
                    name=name,
                    partitions=template.partitions if template else 4,
                    cleanup="delete",
                    retention_hours=template.retention_hours if template else 336,
                    purpose=f"{connector.name}: {connector.describe or 'connector topic'}",
                )
            )
    return [*specs, *added]


async def ensure(bootstrap_servers: str, specs: list[TopicSpec], replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, replication, topic_configs=s.config())
                    for s in missing
                ]
            )
        for spec in missing:
            log.info(
                "topic.created", topic=spec.name, partitions=spec.partitions, cleanup=spec.cleanup
            )
        return [s.name for s in missing]
    finally:
        await admin.close()


async def unread(
    bootstrap_servers: str, group: str, names: list[str], timeout_s: float = 30.0
) -> dict[str, int]:
    """Of `names`, the topics holding records the consumer group `group` has not yet
    committed past (counted from a partition's first offset where it never committed), with
    how many. Read without joining the group, so a running worker is not disturbed. When the
    broker does not answer within `timeout_s`, every topic counts as unread (the safe side:
    its consumer runs)."""
    if not names:
        return {}
    try:
        return await asyncio.wait_for(_unread(bootstrap_servers, group, names), timeout_s)
    except (TimeoutError, KafkaError) as error:
        log.warning("topics.unread_unknown", topics=names, error=f"{type(error).__name__}: {error}")
        return {name: -1 for name in names}


async def _unread(bootstrap_servers: str, group: str, names: list[str]) -> dict[str, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        for name in names:  # a consumer that subscribes to nothing has no metadata for them
            await internals.add_topic(consumer, name)
        found: dict[str, int] = {}
        for name in names:
            partitions = [
                TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())
            ]
            if not partitions:
                continue
            first = await consumer.beginning_offsets(partitions)
            end = await partition_ends.end_offsets(consumer, partitions)
            left = 0
            for tp in partitions:
                committed = await consumer.committed(tp)
                left += max(0, end[tp] - max(committed or 0, first[tp]))
            if left:
                found[name] = left
        return found
    finally:
        await consumer.stop()
