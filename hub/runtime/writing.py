"""Engine outputs as the records the broker takes: encoded, their size checked first.

A record larger than the broker takes must never reach the producer: the broker's refusal is
fatal to the worker (`hub.runtime.transaction_agent.fatal`), and the input that made it would
fail again after every restart. So every service encodes a step's records, all of them,
before it writes any (`TooLarge` then leaves nothing written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from hub.domain.transaction import Output
from hub.kafka import codec as jsonbytes
from hub.kafka.steplog import Encoded, Row
from hub.runtime import metrics


class TooLarge(ValueError):
    """An output, or the transaction's row, would exceed the largest record the broker takes."""


class Writes(Protocol):
    async def write(self, records: Sequence[Encoded], row: Row | None = None) -> None: ...


def sized(what: str, value: Any, limit: int) -> bytes:
    """`value` as the bytes of a record; TooLarge if the broker would not take them."""
    data = jsonbytes.dumps(value)
    if len(data) > limit:
        raise TooLarge(f"{what} would be {len(data)} bytes (the limit is {limit})")
    return data


def encode(outputs: Sequence[Output], limit: int) -> list[Encoded]:
    """The records; TooLarge (before anything is written) if one would not fit."""
    return [
        Encoded(
            o.topic,
            o.key,
            None if o.value is None else sized(f"a record for {o.topic}", o.value, limit),
        )
        for o in outputs
    ]


class Writer:
    """Outputs written all or none (sizes are checked before anything is produced), then
    counted in the metrics once acknowledged."""

    def __init__(self, log: Writes, limit: int) -> None:
        self.log = log
        self.limit = limit

    async def write(self, outputs: Sequence[Output]) -> None:
        await self.log.write(encode(outputs, self.limit))
        counted(outputs)


def counted(outputs: Sequence[Output]) -> None:
    for output in outputs:
        metrics.written(output.topic, output.value)
