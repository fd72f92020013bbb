"""The step log and the hub's tables on faust (faust-streaming, pinned below 0.16).

Holds the faust workarounds the agents need, so that the services in `hub.runtime` see only
`hub.kafka.steplog.StepLog` and the small helpers here:

- the `transactions` table, whose changelog is `ill.transactions` with plain string keys and
  rows in the `rshub-json` codec (faust's Table takes neither serializer as an argument: they
  are set on the table after construction, read by the store it creates on first use);
- writing a step's records straight to faust's producer (`app.producer.send`), past
  `Topic.send`, whose stampede guard (`app.maybe_start_producer`) yields to the event loop up to
  three times per record, and past `Table.send_changelog`'s buffer;
- `stream.noack()` (manual acknowledgement, which faust's `StreamT` does not declare);
- a table's rows in this worker's active partitions, from `app.assignor.assigned_actives()`;
- a durable assignment to a table (faust's own only schedules the changelog record).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NamedTuple, cast

import faust
from faust.serializers import codecs

from connectors.core.topics import Topic
from hub.kafka import codec as jsonbytes
from hub.kafka.partitioning import PARTITIONER
from hub.kafka.steplog import Consumed, Encoded, Row

ROW_CODEC = "rshub-json"  # the transactions table's values: see hub.kafka.codec
TRANSACTIONS_TABLE = "transactions"
TRANSACTIONS_TOPIC = Topic.TRANSACTIONS  # the transactions table's changelog
RAW: dict[str, Any] = {"key_type": str, "value_type": bytes, "value_serializer": "raw"}


class _RowCodec(codecs.Codec):
    def _dumps(self, value: Any) -> bytes:
        return jsonbytes.dumps(value)

    def _loads(self, data: bytes) -> Any:
        return jsonbytes.loads(data)


codecs.register(ROW_CODEC, _RowCodec())


def transactions_table(app: faust.App, partitions: int = 4) -> Any:
    """The table of transaction rows. Its changelog is ill.transactions, the row of every
    transaction that `rshub deliveries`, the operators' index and any monitoring read: one
    record per step, not a changelog record and a snapshot of the same row. Given at
    construction (faust's recovery knows a table's changelog by the name it had then). Keys
    are the plain transaction ids every other topic has (faust would write them as JSON
    strings), read back as str."""
    changelog = app.topic(
        TRANSACTIONS_TOPIC,
        key_type=str,
        key_serializer="raw",
        value_serializer=ROW_CODEC,
        partitions=partitions,
        compacting=True,
        acks=False,
        internal=True,
    )
    table = app.Table(
        TRANSACTIONS_TABLE,
        default=None,
        partitions=partitions,
        key_type=str,
        changelog_topic=changelog,
    )
    # What the store (created on first use) reads keys and values back with at recovery
    # (`FaustStepLog.write` writes the rows in these).
    cast(Any, table).key_serializer = "raw"
    cast(Any, table).value_serializer = ROW_CODEC
    return table


def consumed(event: Any) -> Consumed:
    """A faust event as the step log's record (the event kept for its acknowledgement)."""
    message = event.message
    key = event.key
    return Consumed(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key.decode() if isinstance(key, bytes) else str(key),
        value=event.value,
        headers=dict(event.headers or {}),
        timestamp=message.timestamp,
        handle=event,
    )


class Records:
    """A faust agent's stream with manual acknowledgement: `records()` and `ack()`."""

    def __init__(self, stream: faust.StreamT) -> None:
        self._manual = stream.noack()  # type: ignore[attr-defined]  # StreamT omits noack

    async def records(self) -> AsyncIterator[Consumed]:
        async for event in self._manual.events():
            yield consumed(event)

    async def ack(self, record: Consumed) -> None:
        await self._manual.ack(record.handle)


class Changelog(NamedTuple):
    """A table's changelog record as faust would write it: key and value already in the
    table's serializers, on the key's partition."""

    topic: str
    key: bytes
    value: bytes
    partition: int


class Producing:
    """Records written in order to faust's producer, each call's after the previous one's."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._sending = asyncio.Lock()

    async def write(
        self, records: Sequence[Encoded], row: Row | None = None, *changelog: Changelog
    ) -> None:
        futures = []
        # Straight to faust's producer, not through Topic.send (see the module's docstring):
        # same producer, same bytes, same partitioner (key only).
        producer = self.app.producer
        if row is not None:
            # The table's changelog record, as Table.send_changelog would write it (raw
            # key, the row codec's bytes, the row's partition), without faust's buffer
            # and its stampede guard; its callback only records offsets for persistent
            # stores, and this table's is in memory.
            changelog = (
                Changelog(TRANSACTIONS_TOPIC, row.key.encode(), row.data, row.partition),
                *changelog,
            )
        async with self._sending:  # one step's records in order, before the next step's
            for record in records:
                futures.append(
                    await producer.send(
                        record.topic, record.key.encode(), record.value, None, None, None
                    )
                )
            for entry in changelog:
                futures.append(
                    await producer.send(
                        entry.topic, entry.key, entry.value, entry.partition, None, None
                    )
                )
        for future in futures:
            await future  # acknowledged by the broker


class FaustStepLog:
    """`hub.kafka.steplog.StepLog` on faust: the transactions table, faust's producer, and
    the stream of the agent's current actor (`attach`: faust hands each actor its stream)."""

    def __init__(self, app: faust.App, table: Any, producing: Producing) -> None:
        self.app = app
        self.table = table
        self._producing = producing
        self._stream: Records | None = None

    def attach(self, stream: faust.StreamT) -> None:
        self._stream = Records(stream)

    def records(self) -> AsyncIterator[Consumed]:
        assert self._stream is not None, "attach(stream) first"
        return self._stream.records()

    async def ack(self, record: Consumed) -> None:
        assert self._stream is not None, "attach(stream) first"
        await self._stream.ack(record)

    def row(self, key: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, self.table.get(key))

    async def write(self, records: Sequence[Encoded], row: Row | None = None) -> None:
        if row is not None:
            # Set before anything is awaited: the next step, already started, reads it.
            self.table.data[row.key] = row.value
        await self._producing.write(records, row)

    def owned_rows(self) -> list[tuple[str, Any]]:
        return active_items(self.app, self.table)


def active_items(app: Any, table: Any) -> list[tuple[str, Any]]:
    """The table's rows in this worker's active partitions. With several workers each also
    holds standby copies of the others' partitions (faust's table_standby_replicas): the
    clock, the partner agent and the gauges act on the rows this worker owns only."""
    owned = {table.changelog_topic.get_topic_name(), Topic.INBOUND}  # co-partitioned
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in owned}
    count = table.partitions or app.conf.topic_partitions
    # A row's partition is its key's, as the producers' default partitioner placed it.
    return [
        (key, row)
        for key, row in list(table.items())
        if PARTITIONER.hash(str(key).encode()) % count in active
    ]


class DurableTable:
    """A faust table whose assignment returns once its changelog record is acknowledged
    (faust's own assignment only schedules it). `get` gives `missing()` for a key the table
    lacks (`delivered`: an empty list; `relay_replays`: None). Given `producing`, the
    changelog record goes straight to the producer (as `Producing.write` does for the
    transactions table), serialized by the table's own changelog topic, so recovery reads
    it back as faust wrote it; past faust's producer buffer, a measurable share of the
    outbound agent's CPU."""

    def __init__(
        self,
        table: Any,
        missing: Callable[[], Any] = lambda: None,
        producing: Producing | None = None,
    ) -> None:
        self.table = table
        self.missing = missing
        self.producing = producing

    def get(self, key: str) -> Any:
        return self.table.get(key, self.missing())

    async def set(self, partition: int, key: str, value: Any) -> None:
        if self.producing is None:
            future = self.table.send_changelog(partition, key, value)
            self.table.data[key] = value
            await future
            return
        record = self.changelog(partition, key, value)
        self.table.data[key] = value
        await self.producing.write((), None, record)

    def changelog(self, partition: int, key: str, value: Any) -> Changelog:
        """The changelog record `Table.send_changelog` would write."""
        table = self.table
        topic = table.changelog_topic
        data, _ = topic.prepare_key(key, table.key_serializer)
        encoded, _ = topic.prepare_value(value, table.value_serializer)
        return Changelog(topic.get_topic_name(), data, encoded, partition)


async def to_every_partition(topic: Any, key: str, value: bytes) -> None:
    """One copy of a record on each partition of `topic` (a faust topic): every worker reads
    one, whichever partitions it holds."""
    for partition in range(topic.partitions or 4):
        await topic.send(key=key, value=value, partition=partition)
