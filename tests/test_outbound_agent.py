"""The outbound agent notes a call durably before making it (issue 23.6): a command that
comes again after the worker died during its call is delivered as a re-send, said in its
result and the log; a command whose call ended (delivered or failed) is not."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import Attempt
from connectors.core.directory import Directory
from connectors.core.model import Event, Message
from connectors.core.records import Delivery, DeliveryOutcome
from connectors.registry import CONNECTORS
from hub.kafka.steplog import Consumed
from hub.runtime.outbound_agent import RESENT, SENDING, OutboundAgent
from hub.runtime.partner_queues import PartnerQueues
from hub.runtime.settings import Settings

DIRECTORY = Directory.model_validate(
    {
        "consortium": "t",
        "partners": [
            {"symbol": "NORTH", "protocol": "ncip", "endpoint": "http://n.test/", "name": "N"},
            {"symbol": "SOUTH", "protocol": "ncip", "endpoint": "http://s.test/", "name": "S"},
        ],
    }
)


class Table:
    """The `delivered` table in memory; what it held at each call."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}

    def get(self, transaction_id: str) -> list[str]:
        return list(self.rows.get(transaction_id, []))

    async def set(self, partition: int, transaction_id: str, done: list[str]) -> None:
        self.rows[transaction_id] = list(done)


class Sender:
    def __init__(self, table: Table, ok: bool = True) -> None:
        self.table, self.ok, self.seen = table, ok, []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, partner: Any, body: bytes) -> Attempt:
        self.seen.append(self.table.get("t1"))  # what was durable when the call was made
        return Attempt(self.ok, not self.ok, "ok" if self.ok else "refused")


class Writer:
    def __init__(self) -> None:
        self.written: list[Any] = []

    async def write(self, outputs: list[Any]) -> None:
        self.written += outputs


def agent(table: Table, sender: Sender) -> OutboundAgent:
    connector = CONNECTORS.get("ncip")
    assert connector is not None
    settings = Settings(outbound_retries=1)

    async def announce(symbol: str) -> None: ...

    return OutboundAgent(
        connector, sender, DIRECTORY, settings, Writer(), table, PartnerQueues(4, 64), announce
    )  # type: ignore[arg-type]


def command() -> Delivery:
    message = Message(event=Event.LOANED, request_id="R-1", sender="SOUTH", item_id="I-1")
    return Delivery(
        command_id="c1", transaction_id="t1", recipient="NORTH", protocol="ncip", message=message
    )


async def test_the_call_is_noted_before_it_is_made_and_cleared_once_delivered() -> None:
    table = Table()
    sender = Sender(table)
    result = await agent(table, sender).attempt(command(), partition=0)
    assert result.outcome is DeliveryOutcome.SENT and RESENT not in result.detail
    assert sender.seen == [[SENDING + "c1"]]


async def test_a_command_whose_call_was_cut_off_is_a_resend() -> None:
    table = Table()
    table.rows["t1"] = [SENDING + "c1"]  # the worker died during the call
    sender = Sender(table)
    result = await agent(table, sender).attempt(command(), partition=0)
    assert result.outcome is DeliveryOutcome.SENT and result.detail.startswith(RESENT)
    assert len(sender.seen) == 1  # sent once more, not twice


class Inputs:
    def __init__(self) -> None:
        self.acked: list[Consumed] = []

    async def ack(self, record: Consumed) -> None:
        self.acked.append(record)


def consumed(delivery: Delivery) -> Consumed:
    body = delivery.model_dump_json().encode()
    return Consumed("ill.outbound.ncip", 0, 7, "t1", body, {}, None)


async def test_once_the_call_ended_the_mark_is_gone_delivered_or_failed() -> None:
    for ok, kept in ((True, ["c1"]), (False, [])):
        table = Table()
        inputs = Inputs()
        given = command()
        accepted = await agent(table, Sender(table, ok=ok)).deliver(given, consumed(given), inputs)
        assert accepted is ok and table.get("t1") == kept and len(inputs.acked) == 1
