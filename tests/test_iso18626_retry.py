"""ISO 18626 Retry with a new id (requestingAgencyRequestId new, requestingAgencyPreviousRequestId
the earlier one): the Retry continues the earlier request's transaction, and from then on the
borrower's new id names that transaction too, also after a restart (the name is a record on
the compacted ill.items topic, not process memory).

The unit tests go through what the hub does with each body: the ISO 18626 codec, the
gateway's addressing against the item index (`ItemIndex`, fed as the transaction agent feeds
it), and the engine. The end-to-end test runs the real hub, restarted in between."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from connectors.core.directory import Directory
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    lender_request_id,
    transaction_id,
)
from connectors.core.records import VerdictOutcome
from connectors.iso18626 import codec, writer
from connectors.simulator import Library, running
from hub.domain.addressing import address, retried_key
from hub.domain.transaction import Result, Transaction
from hub.kafka.followers import ItemIndex
from tests.engine_steps import feed, records

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BOOK = Bibliographic(title="The Name of the Rose", isbn="9780151446476")
DIRECTORY = Directory.model_validate(
    {
        "consortium": "T",
        "partners": [
            {
                "symbol": symbol,
                "name": symbol,
                "protocol": "iso18626",
                "endpoint": f"http://127.0.0.1:1/{symbol}",
                "agency_ids": [f"{symbol}-ID"],
            }
            for symbol in ("B", "L1")
        ],
        "rotas": [{"name": "r", "members": ["B", "L1"]}],
        "default_rota": "r",
    }
)


def request_body(request_id: str, **fields: object) -> bytes:
    message = Message(event=Event.REQUEST, request_id=request_id, bibliographic=BOOK, **fields)
    return writer.encode(message, from_agency="B-ID", to_agency="L1-ID")


def retry_body(new_id: str, previous_id: str) -> bytes:
    """A Retry as ISO 18626 has it: a request with a new id naming the earlier one."""
    body = request_body(
        new_id, previous_request_id=previous_id, max_cost=Money(amount="60", currency="EUR")
    )
    return body.replace(b"<requestType>New</requestType>", b"<requestType>Retry</requestType>")


def cancel_body(request_id: str) -> bytes:
    message = Message(event=Event.CANCEL, request_id=request_id)
    return writer.encode(message, from_agency="B-ID", to_agency="L1-ID")


class Hub:
    """The gateway's addressing and the transaction agent's steps, with the item index the
    gateway reads and the ill.items records the agent writes (the topic, in order)."""

    def __init__(self) -> None:
        self.index = ItemIndex("no broker: never started")
        self.items_topic: list[tuple[str, dict[str, str] | None]] = []
        self.rows: dict[str, Transaction] = {}

    def restart(self) -> None:
        """A new process: nothing in memory; the index is read back from the topic."""
        self.index = ItemIndex("no broker: never started")
        for key, value in self.items_topic:
            self.index.handle(key, None if value is None else json.dumps(value).encode())

    def receive(self, body: bytes, sender: str = "B") -> tuple[str | None, Result | None]:
        message = codec.to_canonical(codec.parse(body), sender=sender)
        txn = address(message, self.index)
        if txn is None:
            return None, None
        result = feed(
            self.rows.get(txn), message.model_copy(update={"transaction_id": txn}), DIRECTORY
        )
        if result.transaction is not None:
            self.rows[txn] = result.transaction
        for output in result.outputs:
            if output.topic == "ill.items":
                self.items_topic.append((output.key, output.value))
                self.index.handle(output.key, output.value)
        return txn, result


def applied(result: Result | None) -> Result:
    assert result is not None and result.verdict is not None
    assert result.verdict.outcome is VerdictOutcome.APPLIED, result.verdict
    return result


def sent(result: Result) -> list[tuple[str, str, str]]:
    return [
        (r["recipient"], r["message"]["event"], r["message"]["request_id"])
        for r in records(result, "ill.outbound.")
    ]


def retried(hub: Hub) -> str:
    """B asks under R-1, L1 will supply, B retries (a higher maximum cost) as R-2."""
    txn, _ = hub.receive(request_body("R-1", max_cost=Money(amount="10", currency="EUR")))
    assert txn == transaction_id("B", "R-1")
    will = Message(event=Event.WILL_SUPPLY, request_id=lender_request_id(txn, 1))
    body = writer.encode(will, from_agency="L1-ID", to_agency="B-ID")
    applied(hub.receive(body, sender="L1")[1])
    again, result = hub.receive(retry_body("R-2", "R-1"))
    assert again == txn
    assert ("L1", "Request", lender_request_id(txn, 2)) in sent(applied(result))
    return txn


def test_a_retry_names_its_transaction_by_the_new_id_on_ill_items() -> None:
    hub = Hub()
    txn = retried(hub)
    assert (retried_key("B", "R-2"), {"transaction_id": txn}) in hub.items_topic
    # The key can be no item's: item keys start with a partner symbol, which has no '#'.
    assert not retried_key("B", "R-2").split("|")[0][0].isalnum()


@pytest.mark.parametrize("restart", [False, True], ids=["running", "after a restart"])
def test_a_later_message_under_the_new_id_reaches_the_same_transaction(restart: bool) -> None:
    hub = Hub()
    txn = retried(hub)
    if restart:
        hub.restart()
    addressed, result = hub.receive(cancel_body("R-2"))
    assert addressed == txn
    assert sent(applied(result)) == [("L1", "Cancel", lender_request_id(txn, 2))]


def test_the_earlier_id_still_names_the_transaction_and_a_retry_of_a_retry_chains() -> None:
    hub = Hub()
    txn = retried(hub)
    again, result = hub.receive(retry_body("R-3", "R-2"))  # names the Retry's id
    assert again == txn
    applied(result)
    for request_id in ("R-1", "R-2", "R-3"):
        message = codec.to_canonical(codec.parse(cancel_body(request_id)), sender="B")
        assert address(message, hub.index) == txn


def test_a_retry_keeping_its_id_or_refused_names_nothing_new() -> None:
    hub = Hub()
    txn, _ = hub.receive(request_body("R-1"))
    _same, result = hub.receive(retry_body("R-1", "R-1"))
    applied(result)
    assert hub.items_topic == []
    # A Retry of a request rshub does not know is refused and names nothing.
    unknown, refused = hub.receive(retry_body("R-8", "R-7"))
    assert unknown == transaction_id("B", "R-7") != txn
    assert refused is not None and refused.verdict is not None
    assert refused.verdict.outcome is VerdictOutcome.REFUSED
    assert hub.items_topic == []
    message = codec.to_canonical(codec.parse(cancel_body("R-8")), sender="B")
    assert address(message, hub.index) == transaction_id("B", "R-8")  # unknown to the engine


# -- end to end: the real hub, restarted between the Retry and the later message ----------


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    libs = {
        "WEST": Library("WEST", "DK-710100", "west-secret", protocol="iso18626"),
        "EAST": Library("EAST", "DK-820010", "east-secret", protocol="iso18626"),
    }
    async with running(libs):
        yield libs


async def hears(lib: Library, event: Event, request_id: str | None = None) -> Message:
    message = await lib.next()
    assert message.event is event, (lib.symbol, message)
    assert request_id is None or message.request_id == request_id, (lib.symbol, message)
    return message


@pytest.mark.kafka
async def test_after_a_retry_the_borrower_cancels_under_its_new_id_across_a_restart(
    hub, libraries
) -> None:
    west, east = libraries["WEST"], libraries["EAST"]
    ok = 200
    asked = Message(event=Event.REQUEST, request_id="W-1", bibliographic=BOOK, patron_id="p")
    status, answer = await west.send(asked)
    assert status == ok and answer.ok, answer
    first = await hears(east, Event.REQUEST)
    status, answer = await east.send(Message(event=Event.WILL_SUPPLY, request_id=first.request_id))
    assert status == ok and answer.ok, answer
    await hears(west, Event.WILL_SUPPLY, "W-1")

    retry = west.encode(
        asked.model_copy(
            update={
                "request_id": "W-2",
                "previous_request_id": "W-1",
                "max_cost": Money(amount="60", currency="EUR"),
            }
        )
    ).replace(b"<requestType>New</requestType>", b"<requestType>Retry</requestType>")
    status, answer = await west.post(retry)
    assert status == ok and answer.ok, answer
    # The lender holding it is withdrawn and asked again on the same transaction.
    await hears(east, Event.CANCEL, first.request_id)
    again = await hears(east, Event.REQUEST)
    txn = first.request_id.split(".")[0]
    assert again.request_id == lender_request_id(txn, 2)
    assert again.max_cost == Money(amount="60", currency="EUR")

    hub.stop()  # nothing of the Retry's new id may live only in the process
    await hub.start()

    status, answer = await west.send(Message(event=Event.CANCEL, request_id="W-2"))
    assert status == ok and answer.ok, answer
    await hears(east, Event.CANCEL, again.request_id)  # the same transaction, its lender
