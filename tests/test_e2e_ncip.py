"""End to end: NCIP libraries (real HTTP servers) and the hub (real process, real broker)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

import pytest

from connectors.core.model import Bibliographic, Event, Message, Reason, RequestFormat, Role
from connectors.simulator import Library
from tests.kafka_reader import wait_for_record

pytestmark = pytest.mark.kafka

DUE = datetime(2027, 1, 15, tzinfo=UTC)
BOOK = Bibliographic(
    title="The Name of the Rose",
    author="Eco, Umberto",
    isbn="9780151446476",
    bibliographic_level="Book",
)


def request(request_id: str) -> Message:
    return Message(
        event=Event.REQUEST,
        request_id=request_id,
        patron_id="patron-7",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
    )


async def say(lib: Library, event: Event, request_id: str, **fields: object) -> None:
    status, response = await lib.send(Message(event=event, request_id=request_id, **fields))
    assert status == 200 and response.ok, (event, status, response)


async def ask(borrower: Library, request_id: str) -> None:
    """The borrower requests BOOK for a patron."""
    await say(
        borrower,
        Event.REQUEST,
        request_id,
        patron_id="p",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
    )


async def lend(borrower: Library, lender: Library, request_id: str, item_id: str) -> str:
    """Request, first lender ships, borrower is told; the lender's request id."""
    await ask(borrower, request_id)
    lender_id = (await lender.next()).request_id
    await say(lender, Event.LOANED, lender_id, item_id=item_id, due_date=DUE)
    assert (await borrower.next()).event is Event.LOANED
    return lender_id


async def test_full_loan_is_relayed_both_ways(hub, libraries) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    await say(
        north,
        Event.REQUEST,
        "N-1",
        patron_id="patron-7",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
    )

    asked = await south.next()
    assert asked.event is Event.REQUEST
    assert asked.bibliographic and asked.bibliographic.isbn == BOOK.isbn
    assert asked.from_agency == north.agency_id and asked.to_agency == south.agency_id
    lender_id = asked.request_id

    await say(south, Event.LOANED, lender_id, item_id="SOUTH-BC-1", due_date=DUE)
    shipped = await north.next()
    assert (shipped.event, shipped.request_id, shipped.item_id) == (
        Event.LOANED,
        "N-1",
        "SOUTH-BC-1",
    )
    assert shipped.due_date == DUE

    await say(north, Event.RECEIVED, "N-1", item_id="SOUTH-BC-1")
    assert (await south.next()).event is Event.RECEIVED

    await say(north, Event.SHIPPED_RETURN, "N-1", item_id="SOUTH-BC-1")
    returned = await south.next()
    assert (returned.event, returned.request_id) == (Event.SHIPPED_RETURN, lender_id)

    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="SOUTH-BC-1")
    done = await north.next()
    assert (done.event, done.request_id) == (Event.LOAN_COMPLETED, "N-1")
    assert Role.BORROWER  # the borrower heard of every lender step


async def test_unfilled_moves_to_next_lender_then_borrower_hears_unfilled(hub, libraries) -> None:
    north, south, east = libraries["NORTH"], libraries["SOUTH"], libraries["EAST"]
    await ask(north, "N-2")
    first = await south.next()
    await say(south, Event.UNFILLED, first.request_id, reason=Reason.from_code(10))
    second = await east.next()
    assert second.event is Event.REQUEST and second.request_id != first.request_id
    assert second.bibliographic and second.bibliographic.title == BOOK.title
    await say(east, Event.UNFILLED, second.request_id, reason=Reason.from_code(5))
    told = await north.next()
    assert (told.event, told.request_id) == (Event.UNFILLED, "N-2")
    assert told.reason and told.reason.code == 5
    assert north.received.empty() and south.received.empty()


async def test_cancel_is_confirmed_by_the_lender(hub, libraries) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    await ask(north, "N-3")
    asked = await south.next()
    await say(north, Event.CANCEL, "N-3", patron_id="p")
    cancel = await south.next()
    assert (cancel.event, cancel.request_id) == (Event.CANCEL, asked.request_id)
    await say(south, Event.CANCEL_REPLY, asked.request_id, answer=True, patron_id="p")
    reply = await north.next()
    assert (reply.event, reply.request_id, reply.answer) == (Event.CANCEL_REPLY, "N-3", True)
    # The transaction is closed: the lender can no longer ship it.
    status, response = await south.send(
        Message(event=Event.LOANED, request_id=asked.request_id, item_id="X")
    )
    assert status == 200 and response.errors[0].startswith("State Transition Prohibited")


async def test_renew_is_answered_with_a_new_due_date(hub, libraries) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    await lend(north, south, "N-4", "SOUTH-BC-4")
    await say(north, Event.RECEIVED, "N-4", item_id="SOUTH-BC-4")
    await south.next()
    # RenewItem carries only the item id (and our RequestId in Ext): address by item.
    wanted = datetime(2027, 2, 15, tzinfo=UTC)
    await say(north, Event.RENEW, "", item_id="SOUTH-BC-4", desired_due_date=wanted)
    renew = await south.next()
    assert (renew.event, renew.item_id, renew.desired_due_date) == (
        Event.RENEW,
        "SOUTH-BC-4",
        wanted,
    )
    await say(south, Event.RENEW_ANSWER, "", item_id="SOUTH-BC-4", answer=True, due_date=wanted)
    answer = await north.next()
    assert (answer.event, answer.answer, answer.due_date) == (Event.RENEW_ANSWER, True, wanted)


@pytest.fixture
def directory_extra() -> dict[str, dict[str, object]]:
    # SOUTH has no retry schedule: a request it cannot be reached for moves on at once (the
    # schedule in minutes is tested with a controlled clock in tests/test_delivery.py).
    return {"SOUTH": {"retry_minutes": []}}


async def test_unreachable_lender_is_retried_reported_and_skipped(
    hub, libraries, bootstrap
) -> None:
    north, south, east = libraries["NORTH"], libraries["SOUTH"], libraries["EAST"]
    await south.stop()  # SOUTH's server is down: connection refused
    await ask(north, "N-5")
    asked = await east.next()
    assert asked.event is Event.REQUEST and asked.request_id.endswith(".2")

    failure = await wait_for_record(
        bootstrap, "ill.delivery", lambda r: r["recipient"] == "SOUTH" and r["outcome"] == "failed"
    )
    assert failure["tries"] == 3 and failure["event"] == "Request"
    routing = await wait_for_record(bootstrap, "ill.routing", lambda r: r["chosen"] == "EAST")
    assert routing["attempt"] == 2 and "Unreachable" in routing["reason"]
    assert routing["skipped"] == [{"lender": "SOUTH", "reason": "already tried"}]


async def test_tail_follows_state_changes(hub, libraries, bootstrap) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "tail",
        "--from-beginning",
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await ask(north, "N-6")
        await south.next()
        assert tail.stdout is not None
        line = await asyncio.wait_for(tail.stdout.readline(), 60)
        assert b"transition" in line and b"Request" in line and b"New -> Requested" in line
    finally:
        tail.terminate()
        await tail.wait()


async def test_a_step_for_a_request_never_made_is_an_unknown_request(hub, libraries) -> None:
    """Issue 24: NCIP has Unknown Request for this; it was answered State Transition
    Prohibited (ISO 10161 and ISO 18626 take the same fault: unknown-transaction-id,
    UnrecognisedDataValue)."""
    north = libraries["NORTH"]
    status, response = await north.send(
        Message(event=Event.CANCEL, request_id="N-NEVER-ASKED", patron_id="p")
    )
    assert status == 200
    assert response.errors and response.errors[0].startswith("Unknown Request"), response.errors
