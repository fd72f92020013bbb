"""The step log: what the transaction agent needs of Kafka, as an interface.

Four things: the records to apply, each acknowledged by hand; a transaction's row as last
written (the table, which the next step reads before the previous one's records landed); a
step's records written in order and acknowledged by the broker, with the row; and the
acknowledgement of an input. `hub.kafka.faust_app.FaustStepLog` implements it on faust;
tests implement it in memory, so the agent's pipeline is tested without a broker.

It lives in the Kafka layer, not beside the agent, because the implementation does and this
layer imports nothing of the runtime. Nothing here imports faust or aiokafka.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Consumed:
    """One record read from an input topic, not yet acknowledged."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Mapping[str, bytes]
    timestamp: float | None  # the broker's, in seconds; None when it gave none
    handle: Any = field(default=None, compare=False)  # the implementation's own event

    def where(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Encoded:
    """One record to write, already encoded (None: a tombstone)."""

    topic: str
    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Row:
    """A transaction's new row: set in the table, written to its changelog."""

    partition: int
    key: str
    value: dict[str, Any]
    data: bytes  # the value in the table's codec


class Inputs(Protocol):
    """Records to act on, each acknowledged by hand."""

    def records(self) -> AsyncIterator[Consumed]:
        """The inputs, in order per partition; each stays unacknowledged until `ack`."""
        ...

    async def ack(self, consumed: Consumed) -> None:
        """Acknowledge an input: the offset may be committed past it."""
        ...


class StepLog(Inputs, Protocol):
    """What the transaction agent needs of Kafka."""

    def row(self, key: str) -> dict[str, Any] | None:
        """The transaction's row as last set by `write` (or recovered), not as last durable."""
        ...

    async def write(self, records: Sequence[Encoded], row: Row | None = None) -> None:
        """Set `row` in the table at once (before anything is awaited), then write the
        records and the row in this order, after any earlier call's and before any later
        one's, and return once the broker acknowledged all of them. Raises when the broker
        refused them."""
        ...
