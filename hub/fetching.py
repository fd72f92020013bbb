"""How long the hub's Kafka consumers wait at the broker for data, chosen per broker kind.

A consumer's Fetch carries a max wait W. Apache Kafka parks the fetch and answers the moment a
record arrives, so a long W costs nothing. The embedded Tansu broker polls instead: it checks
its storage at 0, W/2, 3W/4 ... of W and a produce does not wake it, so a consumer that fetches
again as soon as it has drained (faust does) sees a new record only after about W/2. faust
hard-codes W = 1500 ms for its worker consumer (750 ms per agent hop), hence this module: a
faust transport whose worker consumer takes W from the settings, and the same W for the hub's
own followers.

A small W on Tansu is paid in idle CPU (every empty fetch is a round trip that scans every
assigned partition), so only the consumer on a step's critical path (faust's worker consumer)
uses it, and only while records flow: after `IDLE_AFTER_S` without a record it waits
`IDLE_WAIT_MS` per fetch, and returns to W with the first record it gets. The cost: the first
message after a quiet second waits up to IDLE_WAIT_MS / 2 longer on its first hop. Followers
that merely catch up with other workers' writes use `FOLLOWER_WAIT_MS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers import aiokafka as faust_aiokafka

log = structlog.get_logger(__name__)

TANSU_CLUSTER_ID = "tansu_cluster"
EMBEDDED_WAIT_MS = 10
KAFKA_WAIT_MS = 500
# Followers are off the critical path (the worker that wrote a record updates its own view at
# once); they only pick up what other workers wrote.
FOLLOWER_WAIT_MS = 250
# aiokafka leaves a node out of the next fetch for this long when a partition has fetched
# records nobody has consumed yet. faust pauses changelog partitions only in its own
# bookkeeping, so after each assignment every changelog partition triggers that stall once
# (default 100 ms each). A few milliseconds keep the protection against busy loops.
PREFETCH_BACKOFF_S = 0.005
IDLE_AFTER_S = 1.0
IDLE_WAIT_MS = 100


async def broker_kind(bootstrap_servers: str) -> str:
    """ "tansu" for the embedded broker (it names its cluster so), "kafka" otherwise."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return "tansu" if cluster.get("cluster_id") == TANSU_CLUSTER_ID else "kafka"


def fetch_wait_ms(configured: int | None, kind: str) -> int:
    if configured is not None:
        return configured
    return EMBEDDED_WAIT_MS if kind == "tansu" else KAFKA_WAIT_MS


def tune(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """Apply the wait to a consumer created elsewhere (faust builds its own), before start()."""
    # aiokafka reads this attribute when start() builds the Fetcher; faust passes 1500 and
    # offers no setting.
    consumer._fetch_max_wait_ms = wait_ms


class Pacer:
    """The fetch wait of one consumer: `busy_ms` while records flow, `idle_ms` after a quiet
    `idle_after_s`. Only worth it where the broker polls (busy_ms < idle_ms)."""

    def __init__(self, busy_ms: int, idle_ms: int = IDLE_WAIT_MS) -> None:
        self.busy_ms, self.idle_ms = busy_ms, max(idle_ms, busy_ms)
        self.last_record = time.monotonic()

    def wait_ms(self, got_records: bool, at: float) -> int:
        if got_records:
            self.last_record = at
            return self.busy_ms
        return self.idle_ms if at - self.last_record >= IDLE_AFTER_S else self.busy_ms


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    pacer: Pacer | None = None

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", KAFKA_WAIT_MS)
        tune(consumer, wait)
        if wait < IDLE_WAIT_MS:
            self.pacer = Pacer(wait)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        fetcher = self._ensure_consumer()._fetcher
        fetcher._prefetch_backoff = PREFETCH_BACKOFF_S

    async def _fetch_records(
        self,
        consumer: AIOKafkaConsumer,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        records = await super()._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=max_records
        )
        if self.pacer is not None and consumer._fetcher is not None:
            # Read by aiokafka for each new FetchRequest it builds.
            consumer._fetcher._fetch_max_wait_ms = self.pacer.wait_ms(
                bool(records), time.monotonic()
            )
        return records


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose worker consumer fetches with `fetch_wait_ms`."""

    fetch_wait_ms: int = KAFKA_WAIT_MS
    # A transaction's state as this worker's table holds it (set by hub.agents.create_app;
    # the gateway's status pages read it).
    transaction_state: Callable[[str], str | None] = staticmethod(lambda _key: None)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def detect(bootstrap_servers: str, configured: int | None) -> int:
    """The worker consumer's wait for this broker (synchronous: used before faust starts)."""
    kind = asyncio.run(broker_kind(bootstrap_servers))
    wait = fetch_wait_ms(configured, kind)
    log.info("kafka.fetch_wait", broker=kind, fetch_wait_ms=wait)
    return wait
