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
RSHUB_IDLE_FETCH_WAIT_MS (default `IDLE_WAIT_MS`) per fetch, and returns to W with the first
record it gets. The cost: the first message after a quiet second waits up to half that longer
on its first hop. Followers
that merely catch up with other workers' writes use `FOLLOWER_WAIT_MS`.

Tansu's memory engine also lists every batch of a partition on each fetch and gives up at the
fetch's deadline, so a small W meets a cliff: once a partition holds ~20,000 batches, a fetch
with W = 10 ms returns nothing, ever, although the response says the partition's end is past
the consumer's position. `Pacer` watches each fetch response for exactly that (starved) and
doubles W, up to `MAX_WAIT_MS`; while fetches return records it drifts back down towards the
configured W. A starved fetch costs one W; the drift costs one starved fetch in about eight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers import aiokafka as faust_aiokafka

from hub.kafka import internals, partition_ends

log = structlog.get_logger(__name__)

TANSU_CLUSTER_ID = "tansu_cluster"
EMBEDDED_WAIT_MS = 10
KAFKA_WAIT_MS = 500
# Followers are off the critical path (the worker that wrote a record updates its own view at
# once); they only pick up what other workers wrote. After a quiet `IDLE_AFTER_S` they wait
# FOLLOWER_IDLE_MS per fetch: on the embedded broker every fetch is a round of polls over all
# of the consumer's partitions, and idle followers were most of the hub's idle cost there.
FOLLOWER_WAIT_MS = 250
FOLLOWER_IDLE_MS = 1000
# aiokafka leaves a node out of the next fetch for this long when a partition has fetched
# records nobody has consumed yet. faust pauses changelog partitions only in its own
# bookkeeping, so after each assignment every changelog partition triggers that stall once
# (default 100 ms each). A few milliseconds keep the protection against busy loops.
PREFETCH_BACKOFF_S = 0.005
IDLE_AFTER_S = 1.0
IDLE_WAIT_MS = 100
# The most a starved consumer's wait grows to (see `Pacer`). A wait only grows while the broker
# returns nothing at all, and a fetch that takes seconds is better than none: at Tansu's
# listing speed on this machine (~25,000 batches within 40 ms) one second covers what the
# faust consumer's partitions hold by about 200,000 requests, so the cap is well past that.
MAX_WAIT_MS = 10_000


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
    internals.set_fetch_wait(consumer, wait_ms)


class Fetched(Enum):
    """What one fetch response brought, for pacing."""

    RECORDS = "records"  # at least one partition returned records
    STARVED = "starved"  # a partition had records past the position, the broker sent none
    NOTHING = "nothing"  # nothing new anywhere: an ordinary empty long-poll


def classify(
    offsets: Mapping[TopicPartition, int],
    answered: Mapping[TopicPartition, int | None],
    with_records: Iterable[TopicPartition],
) -> Fetched:
    """One fetch response: `offsets` the positions asked for, `answered` the highwater the
    response gave for each partition it answered without error, `with_records` the partitions
    that got records (or an error to report)."""
    if any(tp in offsets for tp in with_records):
        return Fetched.RECORDS
    for tp, offset in offsets.items():
        highwater = answered.get(tp)
        if highwater is not None and highwater > offset:
            return Fetched.STARVED
    return Fetched.NOTHING


def next_wait(current: int, fetched: Fetched, floor: int, cap: int) -> int:
    """The fetch wait after a response: doubled when the broker ran out of time (up to `cap`),
    an eighth lower after records (down to `floor`), unchanged after an empty long-poll."""
    if fetched is Fetched.STARVED:
        return max(floor, min(cap, current * 2))
    if fetched is Fetched.RECORDS:
        return max(floor, current - max(1, current // 8))
    return current


class Pacer:
    """The fetch wait of one consumer: `busy_ms` while records flow (raised by `next_wait`
    while the broker starves it), at least `idle_ms` after a quiet `idle_after_s` (no idle
    mode when `idle_ms` is None: only worth it where the broker polls)."""

    def __init__(
        self, busy_ms: int, idle_ms: int | None = IDLE_WAIT_MS, cap_ms: int = MAX_WAIT_MS
    ) -> None:
        self.busy_ms, self.idle_ms = busy_ms, idle_ms
        self.cap_ms = max(cap_ms, busy_ms)
        self.level = self.highest = busy_ms
        self.idle = False
        self.last_record = time.monotonic()

    def fetched(self, outcome: Fetched) -> None:
        self.level = next_wait(self.level, outcome, self.busy_ms, self.cap_ms)
        if self.level > self.highest:
            # Once per new height: the sign that the embedded broker holds too much.
            self.highest = self.level
            log.info("kafka.fetch_starved", fetch_wait_ms=self.level)

    def polled(self, got_records: bool, at: float) -> None:
        """The application took records (or found none) at `at`."""
        if got_records:
            self.last_record = at
        self.idle = self.idle_ms is not None and at - self.last_record >= IDLE_AFTER_S

    def wait_ms(self) -> int:
        if self.idle and self.idle_ms is not None:
            return max(self.level, self.idle_ms)
        return self.level


def pace(consumer: AIOKafkaConsumer, pacer: Pacer) -> None:
    """Let `pacer` set the wait of each fetch `consumer` sends (after start(): aiokafka builds
    its Fetcher there). aiokafka has no hook for fetch responses, so the fetcher's per-response
    coroutine is wrapped on this instance; it reads `_fetch_max_wait_ms` for each request."""
    fetcher = internals.fetcher(consumer)
    if fetcher is None:
        raise RuntimeError("pace() needs a started consumer")
    internals.wrap_fetch_responses(fetcher, lambda original: _paced(original, fetcher, pacer))


def _paced(original: internals.FetchHandler, fetcher: Any, pacer: Pacer) -> internals.FetchHandler:
    async def proc_fetch_request(assignment: Any, node_id: int, request: Any) -> bool:
        offsets = {
            TopicPartition(topic, partition): offset
            for topic, partitions in request.topics
            for partition, offset, _ in partitions
        }
        stamps = {tp: _state(assignment, tp) for tp in offsets}
        before = {tp: state.timestamp for tp, state in stamps.items() if state is not None}
        got = await original(assignment, node_id, request)
        if assignment.active:
            # aiokafka stamps a partition's state when the response answered it without error.
            answered = {
                tp: state.highwater
                for tp, state in stamps.items()
                if state is not None
                and state.timestamp != before.get(tp)
                and state.position == offsets[tp]
            }
            pacer.fetched(classify(offsets, answered, internals.fetched_records(fetcher)))
            internals.set_fetcher_wait(fetcher, pacer.wait_ms())
        return bool(got)

    return proc_fetch_request


def polled(consumer: AIOKafkaConsumer, pacer: Pacer, got_records: bool) -> None:
    """The application took records from `consumer` (or found none): set the wait of the
    next fetch (aiokafka reads `_fetch_max_wait_ms` for each FetchRequest it builds)."""
    pacer.polled(got_records, time.monotonic())
    fetcher = internals.fetcher(consumer)
    if fetcher is not None:
        internals.set_fetcher_wait(fetcher, pacer.wait_ms())


def _state(assignment: Any, tp: TopicPartition) -> Any:
    try:
        return assignment.state_value(tp)
    except KeyError:
        return None


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    pacer: Pacer | None = None

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", KAFKA_WAIT_MS)
        idle = getattr(self.app, "idle_fetch_wait_ms", IDLE_WAIT_MS)
        tune(consumer, wait)
        # The idle wait only where the broker polls (a small W); the starvation guard always.
        self.pacer = Pacer(wait, idle if wait < idle else None)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        consumer = self._ensure_consumer()
        internals.set_prefetch_backoff(internals.fetcher(consumer), PREFETCH_BACKOFF_S)
        if self.pacer is not None:
            pace(consumer, self.pacer)

    async def on_thread_stop(self) -> None:
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this stop itself was cancelled
            # aiokafka 0.14's Fetcher.close() awaits a fetch it has just cancelled (one waiting
            # out its back-off, as while the broker is unreachable) and so raises CancelledError:
            # the consumer thread died there and the worker never finished stopping (SIGTERM
            # with the broker down hung until SIGKILL). The process is ending; say so and go.
            log.warning("kafka.consumer_stop_cut_short")

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        # faust's table recovery reads each changelog partition up to the end this returns;
        # faust asks ListOffsets, which the embedded broker answers short of the end
        # (hub.kafka.partition_ends), and the rows past it were never recovered.
        if self.consumer.in_transaction:
            return await super()._highwaters(partitions)
        return await partition_ends.end_offsets(self._ensure_consumer(), partitions)

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
        if self.pacer is not None:
            polled(consumer, self.pacer, bool(records))
        return records


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose worker consumer fetches with `fetch_wait_ms`."""

    fetch_wait_ms: int = KAFKA_WAIT_MS
    idle_fetch_wait_ms: int = IDLE_WAIT_MS
    # A transaction's state as this worker's table holds it (set by hub.runtime.agents.create_app;
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
