"""What the worker's two outboxes (hub.runtime.webhooks, hub.runtime.patron_notices) share:
`Outbox`, a service that follows ill.events into a private SQLite store (hub.runtime.private_db)
and sends from it what is due.

- Following: from the position the store holds, a batch at a time; the subclass turns records
  into entries, written with the offsets after them in one SQLite transaction (nothing lost or
  doubled across a restart), and says when there is nothing to follow.
- Sending: what is due, `at_once` at a time; a failure is tried again on the library's
  `retry_minutes`, then every `parked_retry_minutes` (next_try); what was sent long ago is
  pruned; a gauge counts what waits, per library and status.

Each task holds its own connection to the store: a transaction is a connection's, so one
task's never takes in the other's writes. What is sent, and how, is the subclass's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import structlog
from mode import Service
from prometheus_client import Counter, Gauge

from connectors.core.directory import Directory, Partner
from connectors.core.topics import Topic
from hub.kafka import followers, partition_ends
from hub.runtime.private_db import PrivateDb

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord

log = structlog.get_logger(__name__)

POLL_S = 0.5  # how soon a change made elsewhere (an API call, a directory reload) is seen
FETCH_WAIT_MS = 500
RETRY_AFTER_FAILURE_S = 5.0
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Change:
    """What an outbox takes from one ill.events record: a state change of a request."""

    event_id: str
    partner: str  # the borrower
    transaction_id: str
    request_id: str | None
    event: str
    from_state: str
    state: str
    at: datetime


def read_change(value: bytes | None) -> Change | None:
    """An ill.events record as a change to tell its borrower, or None (a refusal or a
    delivery note changes no state; a record of an older hub names no borrower)."""
    try:
        found = json.loads(value or b"")
        if found.get("kind") != "transition" or not found.get("borrower"):
            return None
        return Change(
            event_id=str(found["event_id"]),
            partner=str(found["borrower"]),
            transaction_id=str(found["transaction_id"]),
            request_id=found.get("request_id"),
            event=str(found["event"]),
            from_state=str(found["from_state"]),
            state=str(found["to_state"]),
            at=datetime.fromisoformat(str(found["at"])).astimezone(UTC),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # not ours to judge: the index and monitoring read the same stream


async def event_ends(bootstrap: str) -> dict[int, int]:
    """The end of each ill.events partition now: where an outbox starts to follow."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="rshub-outbox-ends")
    await consumer.start()
    try:
        await consumer.topics()
        wanted = [
            TopicPartition(Topic.EVENTS, p)
            for p in sorted(consumer.partitions_for_topic(Topic.EVENTS) or ())
        ]
        ends = await partition_ends.end_offsets(consumer, wanted)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


def next_try(
    tried: int, schedule: tuple[float, ...], parked_minutes: float, now: float
) -> tuple[float, bool]:
    """When an entry tried `tried` times is tried again, and whether it is parked: the
    library's retry schedule (the directory's retry_minutes), then every parked_minutes."""
    if tried <= len(schedule):
        return now + schedule[tried - 1] * 60.0, False
    return now + parked_minutes * 60.0, True


def _said(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


Store = TypeVar("Store", bound=PrivateDb)
Entry = TypeVar("Entry")
Task = Literal["follow", "send"]


class Outbox(Service, Generic[Store, Entry]):
    """The follow and send loops; a subclass says what differs: `enabled` (whether this build
    can send at all, read at start), the class attributes, `_position` where it follows from
    more than its store, and the methods that raise NotImplementedError."""

    events: ClassVar[str]  # the log events' prefix: "<events>.following", "<events>.follow_failed"
    send_failed: ClassVar[str]  # the log event of a round of sending that failed
    quiet: ClassVar[bool] = False  # that failure named by its type only, never its words
    client_id: ClassVar[str]
    batch: ClassVar[int]  # records read at once
    at_once: ClassVar[int]  # entries sent at once
    keep: ClassVar[timedelta]  # how long what was sent is kept (Store.prune)
    waiting: ClassVar[Gauge]  # (partner, status): entries not yet sent
    outcomes: ClassVar[Counter]  # (partner, outcome): how tries ended

    enabled: bool

    def __init__(
        self,
        directory: Directory,
        bootstrap: str,
        store: Callable[[Path], Store],
        path: Path,
        poll_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.directory, self.bootstrap, self.poll_s = directory, bootstrap, poll_s
        self.open, self.path = store, path
        self.woken = asyncio.Event()  # an entry was added: send it now
        self.consumer: Any = None
        self.stores: dict[Task, Store] = {}
        self.pruned = 0.0

    # -- what a subclass says ----------------------------------------------------------------------

    async def _position(self) -> dict[int, int]:
        """Where to follow ill.events from now (empty: nothing to follow, read nothing); here,
        what the store holds, if there is one."""
        if not self._exists("follow"):
            return {}
        return await asyncio.to_thread(self._store("follow").offsets)

    async def _take(
        self, store: Store, records: list[ConsumerRecord[Any, Any]]
    ) -> tuple[int, bool]:
        """Records read (ordered by partition and offset) into the outbox, with the offsets
        after those taken: the number of entries added, and whether all were taken (False:
        read again from the position the store holds, after a while)."""
        raise NotImplementedError

    async def _send(self, store: Store, entry: Entry) -> None:
        """One try of one entry, its outcome written to the store."""
        raise NotImplementedError

    # -- the stores ------------------------------------------------------------------------------

    def _store(self, task: Task) -> Store:
        if task not in self.stores:
            self.stores[task] = self.open(self.path)
        return self.stores[task]

    def _exists(self, task: Task) -> bool:
        return task in self.stores or self.path.exists()

    async def on_shutdown(self) -> None:
        # After the tasks are stopped: none is using a connection or the consumer.
        await self._unfollow()
        for store in self.stores.values():
            store.close()

    # -- following ill.events ------------------------------------------------------------------

    @Service.task
    async def _follow(self) -> None:
        if not self.enabled:
            return
        expected: dict[int, int] | None = None
        while not self.should_stop:
            try:
                # Inside: a store that cannot be opened or read (disk, permissions) stops the
                # outbox for a while, never the worker (a task that raises ends the app).
                stored = await self._position()
                if not stored:
                    await self._unfollow()
                    expected = None
                    await self.sleep(self.poll_s)
                    continue
                expected = await self._read(stored, expected)
            except Exception as error:  # the broker went away, the disk is full: say so, and
                # read again from what the store holds (nothing read since is lost)
                log.error(f"{self.events}.follow_failed", error=_said(error))
                await self._unfollow()
                expected = None
                await self.sleep(RETRY_AFTER_FAILURE_S)

    async def _unfollow(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def _read(
        self, stored: dict[int, int], expected: dict[int, int] | None
    ) -> dict[int, int] | None:
        """One fetch into the outbox; the offsets the store now holds (None: not known)."""
        from aiokafka import TopicPartition

        if self.consumer is None:
            self.consumer = await followers.positioned_reader(
                self.bootstrap, Topic.EVENTS, self.client_id, FETCH_WAIT_MS
            )
            log.info(f"{self.events}.following", path=str(self.path))
            expected = None
        if stored != expected:  # first read, or the position moved (the API, a batch not taken)
            for partition, offset in stored.items():
                self.consumer.seek(TopicPartition(Topic.EVENTS, partition), offset)
            expected = dict(stored)
        batch = await self.consumer.getmany(timeout_ms=FETCH_WAIT_MS * 2, max_records=self.batch)
        records = sorted(
            (r for rs in batch.values() for r in rs), key=lambda r: (r.partition, r.offset)
        )
        if not records:
            return expected
        added, whole = await self._take(self._store("follow"), records)
        if added:
            self.woken.set()
        if not whole:
            await self.sleep(self.poll_s)
            return None
        for record in records:
            expected[record.partition] = record.offset + 1
        return expected

    # -- sending ---------------------------------------------------------------------------------

    @Service.task
    async def _send_loop(self) -> None:
        if not self.enabled:
            return
        while not self.should_stop:
            if not self._exists("send"):
                await self.sleep(self.poll_s)
                continue
            try:
                wait = await self._send_due(self._store("send"))
            except Exception as error:  # the store cannot be written: nothing is marked, so
                # what was sent is sent again later under the same id
                log.error(
                    self.send_failed, error=type(error).__name__ if self.quiet else _said(error)
                )
                wait = RETRY_AFTER_FAILURE_S
            if wait is None:
                continue  # more may be due now (a request's next change, the next batch)
            self.woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), wait)

    async def _send_due(self, store: Store) -> float | None:
        """Sends what is due; how long to wait before looking again (None: at once)."""
        now = time.time()
        if now - self.pruned > PRUNE_EVERY_S:
            self.pruned = now
            await asyncio.to_thread(store.prune, datetime.now(UTC) - self.keep)
        due = await asyncio.to_thread(store.due, now)
        gate = asyncio.Semaphore(self.at_once)
        failures: list[Exception] = []

        async def send(entry: Any) -> None:
            async with gate:
                if failures:
                    return  # the store is failing: none more this round, none left running
                try:
                    await self._send(store, entry)
                except Exception as failure:
                    failures.append(failure)

        await asyncio.gather(*(send(entry) for entry in due))
        if failures:
            raise failures[0]
        await asyncio.to_thread(self._count, store)
        if due:
            return None
        coming = await asyncio.to_thread(store.next_due)
        return self.poll_s if coming is None else min(self.poll_s, max(0.0, coming - now))

    def _count(self, store: Store) -> None:
        self.waiting.clear()
        for (partner, status), count in store.counts().items():
            self.waiting.labels(partner, status).set(count)

    def _partner(self, symbol: str) -> Partner:
        """The library an entry is for; one the directory no longer lists, with its defaults."""
        return self.directory.partner(symbol) or Partner(
            symbol=symbol, name=symbol, protocol="", lends=False
        )

    async def _again(
        self, symbol: str, tried: int, mark: Callable[[float, bool], object], said: Any
    ) -> None:
        """A failed try of an entry for `symbol`, tried `tried` times: `mark(due, parked)`
        writes when it is tried again (the library's schedule, then parked), counted and
        logged through `said` (a logger bound to what names the entry)."""
        partner = self._partner(symbol)
        schedule = tuple(partner.retry_minutes)
        due, parked = next_try(tried, schedule, partner.parked_retry_minutes, time.time())
        await asyncio.to_thread(mark, due, parked)
        self.outcomes.labels(symbol, "parked" if parked else "failed").inc()
        again_in_s = round(due - time.time(), 1)
        said.warning(f"{self.events}.failed", attempts=tried, parked=parked, again_in_s=again_in_s)
