"""Small in-process followers of hub topics for the synchronous endpoints.

- `Verdicts` follows ill.replies so an endpoint can answer its partner with what the state
  machine decided (applied, duplicate, refused), waiting at most a configured time.
- `LoadIndex` follows the compacted ill.load topic: the open-request counts the rota reads.
- `ItemIndex` follows the compacted ill.items topic: renewals and recalls carry only an item
  id (the NCIP schema gives them no RequestId), so the endpoint looks the transaction up here;
  so is a borrower's new id for a request it retried (ISO 18626 Retry).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import suppress
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.core.records import Verdict
from connectors.core.topics import Topic
from hub.domain.addressing import item_key, retried_key
from hub.domain.load import LoadBook
from hub.kafka import partition_ends, snapshots
from hub.kafka.fetching import FOLLOWER_IDLE_MS, FOLLOWER_WAIT_MS, Pacer, pace, polled

log = structlog.get_logger(__name__)
FOLLOWER_SPACING_S = 0.25


class _Follower:
    topic: str
    from_beginning: bool
    # Once caught up, the least time between two reads that brought records. The embedded
    # broker answers a fetch at once when records are there, and lists every batch of the
    # partition to do it: a follower reading each record as it comes costs it in proportion
    # to all the partition holds, once per record. Followers only pick up what other workers
    # wrote (a worker updates its own views at once), so a quarter second is cheap.
    spacing_s: float = FOLLOWER_SPACING_S

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"rshub-{self.topic}-{uuid.uuid4().hex[:6]}",
            fetch_max_wait_ms=FOLLOWER_WAIT_MS,
        )
        await self.consumer.start()
        # A starved fetch on the embedded broker (a full partition) raises the wait; a quiet
        # second lowers the fetch rate (hub.kafka.fetching).
        self.pacer = Pacer(FOLLOWER_WAIT_MS, idle_ms=FOLLOWER_IDLE_MS)
        pace(self.consumer, self.pacer)
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer.stop()
            raise RuntimeError(f"topic {self.topic} does not exist")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        ends = await partition_ends.end_offsets(self.consumer, assigned)
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*assigned)
            self._targets = {tp: end for tp, end in ends.items() if end > 0}
        else:
            for tp, end in ends.items():
                self.consumer.seek(tp, end)
            self._targets = {}
        if not self._targets:
            self.ready.set()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            batch = await self.consumer.getmany(timeout_ms=1000)
            polled(self.consumer, self.pacer, bool(batch))
            for records in batch.values():
                for record in records:
                    self._one(record)
            if batch and self.spacing_s and self.ready.is_set():
                await asyncio.sleep(self.spacing_s)  # spacing reads, see spacing_s

    def _one(self, record: Any) -> None:
        try:
            if not snapshots.is_filler(record.headers):  # an offset a restore kept
                self.handle(record.key.decode() if record.key else "", record.value)
        except Exception:
            log.exception("follower.bad_record", topic=self.topic, offset=record.offset)
        tp = TopicPartition(record.topic, record.partition)
        if tp in self._targets and record.offset + 1 >= self._targets[tp]:
            del self._targets[tp]
            if not self._targets:
                self.ready.set()

    def handle(self, key: str, value: bytes | None) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.consumer:
            await self.consumer.stop()


class Verdicts(_Follower):
    topic = Topic.REPLIES
    # A partner's HTTP answer waits for a verdict another worker applied: no spacing. (With
    # one worker nothing is written here: verdicts are handed over in-process.)
    spacing_s = 0.0
    from_beginning = False

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.waiting: dict[str, asyncio.Future[Verdict]] = {}

    def expect(self, message_id: str) -> asyncio.Future[Verdict]:
        future = self.waiting.get(message_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self.waiting[message_id] = future
        return future

    def forget(self, message_id: str) -> None:
        self.waiting.pop(message_id, None)

    def handle(self, key: str, value: bytes | None) -> None:
        if value is not None:
            self.resolve(Verdict.model_validate_json(value))

    def resolve(self, verdict: Verdict) -> None:
        """Hand a verdict to the endpoint waiting for it (read back, or from the agent)."""
        future = self.waiting.pop(verdict.message_id, None)
        if future is not None and not future.done():
            future.set_result(verdict)


class ItemIndex(_Follower):
    topic = Topic.ITEMS
    from_beginning = True

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.items: dict[str, str] = {}

    def handle(self, key: str, value: bytes | dict[str, str] | None) -> None:
        """From the topic (bytes) or from the agent that wrote it in this process (dict)."""
        if value is None:
            self.items.pop(key, None)
        else:
            record = json.loads(value) if isinstance(value, bytes) else value
            self.items[key] = record["transaction_id"]

    def lookup(self, partner: str, item_id: str) -> str | None:
        return self.items.get(item_key(partner, item_id))

    def retried(self, borrower: str, request_id: str) -> str | None:
        return self.items.get(retried_key(borrower, request_id))


class LoadIndex(_Follower):
    """Follows the compacted ill.load topic into a `LoadBook` (open requests per lender)."""

    topic = Topic.LOAD
    from_beginning = True

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.book = LoadBook()

    def handle(self, key: str, value: bytes | None) -> None:
        self.book.apply(key, None if value is None else json.loads(value))


async def positioned_reader(
    bootstrap: str, topic: str, client_id: str, wait_ms: int
) -> AIOKafkaConsumer:
    """A started consumer assigned every partition of `topic`, in no group: for a service
    that keeps its own position beside its own work (webhooks, patron notices) and seeks
    to it, so nothing is read twice into that work or skipped."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,  # the position is the service's, kept with its outbox
        auto_offset_reset="earliest",
        fetch_max_wait_ms=wait_ms,
        client_id=client_id,
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        consumer.assign([TopicPartition(topic, p) for p in partitions])
    except BaseException:  # the caller gets no consumer to stop: stop it here
        await consumer.stop()
        raise
    return consumer
