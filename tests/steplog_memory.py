"""A `hub.kafka.steplog.StepLog` in memory, for the transaction agent's tests: the test
decides when the broker acknowledges each write (or refuses it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.core.records import Verdict
from hub.domain.load import LoadBook
from hub.kafka.producer import REPLY_TO
from hub.kafka.steplog import Consumed, Encoded, Row

INSTANCE = "this-worker"


@dataclass
class Write:
    """One call of `write`: its records, the row, and the broker's answer to come."""

    records: list[Encoded]
    row: Row | None
    durable: asyncio.Future[None] = field(repr=False)

    def topics(self) -> list[str]:
        return [r.topic for r in self.records]


class MemoryStepLog:
    def __init__(self, *, hold: bool = False) -> None:
        """`hold`: writes wait for the test's `acknowledge(i)` (else the broker takes them
        at once)."""
        self.hold = hold
        self.inputs: asyncio.Queue[Consumed | None] = asyncio.Queue()
        self.table: dict[str, dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.acked: list[int] = []
        self.pulled = 0
        self._offsets: dict[tuple[str, int], int] = {}
        self._changed = asyncio.Event()

    # -- the test's side ---------------------------------------------------------------------

    def feed(self, topic: str, key: str, value: bytes, *, local: bool = False) -> Consumed:
        """An input on partition 0 of `topic`; `local`: its partner waits at this worker."""
        offset = self._offsets.get((topic, 0), 0)
        self._offsets[(topic, 0)] = offset + 1
        headers = {REPLY_TO: INSTANCE.encode()} if local else {}
        record = Consumed(topic, 0, offset, key, value, headers, None)
        self.inputs.put_nowait(record)
        return record

    def end(self) -> None:
        self.inputs.put_nowait(None)

    def acknowledge(self, index: int) -> None:
        self.writes[index].durable.set_result(None)

    def refuse(self, index: int, error: BaseException) -> None:
        self.writes[index].durable.set_exception(error)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (event-driven, no timer) until `condition` holds after a change."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    # -- the StepLog -------------------------------------------------------------------------

    async def records(self) -> AsyncIterator[Consumed]:
        while (record := await self.inputs.get()) is not None:
            self.pulled += 1
            self._changed.set()
            yield record

    def row(self, key: str) -> dict[str, Any] | None:
        return self.table.get(key)

    async def write(self, records: Sequence[Encoded], row: Row | None = None) -> None:
        if row is not None:
            self.table[row.key] = row.value
        durable = asyncio.get_running_loop().create_future()
        if not self.hold:
            durable.set_result(None)
        self.writes.append(Write(list(records), row, durable))
        self._changed.set()
        try:
            await asyncio.shield(durable)
        finally:
            self._changed.set()

    async def ack(self, consumed: Consumed) -> None:
        self.acked.append(consumed.offset)
        self._changed.set()


class Followers:
    """The gateway side of the worker: verdicts handed over, items noted, load counted."""

    instance = INSTANCE

    def __init__(self) -> None:
        self.verdicts = _Verdicts()
        self.items = _Items()
        self.load = _Load()


class _Verdicts:
    def __init__(self) -> None:
        self.resolved: list[Verdict] = []

    def resolve(self, verdict: Verdict) -> None:
        self.resolved.append(verdict)


class _Items:
    def __init__(self) -> None:
        self.handled: list[tuple[str, Any]] = []

    def handle(self, key: str, value: Any) -> None:
        self.handled.append((key, value))


class _Load:
    def __init__(self) -> None:
        self.book = LoadBook()
        self.ready = asyncio.Event()
        self.ready.set()
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
