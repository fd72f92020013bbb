"""Feeding the engine in tests as the transaction agent does (see `hub.runtime.agents`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.core.directory import Directory
from connectors.core.model import Message
from connectors.core.records import DeliveryResult, Tick
from hub.domain.engine import Record, apply
from hub.domain.load import LoadView
from hub.domain.transaction import Result, Transaction


def feed(
    txn: Transaction | None,
    given: Record,
    directory: Directory,
    load: LoadView | None = None,
    at: datetime | None = None,
) -> Result:
    """Apply one input at its own time, as the agent gives it: a message's receipt, a
    delivery result's or a tick's time. Other inputs (a search's answer, a staff command)
    take theirs from the topic, so the test names it."""
    if at is None:
        if isinstance(given, Message):
            at = given.timestamp
        elif isinstance(given, (DeliveryResult, Tick)):
            at = given.at
        else:
            raise TypeError(f"say when the {type(given).__name__} is applied")
    return apply(txn, given, at, directory=directory, load=load)


def row(result: Result) -> Transaction:
    """The transaction an applied input left."""
    assert result.transaction is not None
    return result.transaction


def records(result: Result, topic: str) -> list[dict[str, Any]]:
    """The records written to `topic` (a prefix: "ill.outbound." for every protocol)."""
    return [o.value for o in result.outputs if o.topic.startswith(topic) and o.value is not None]
