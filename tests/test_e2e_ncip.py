"""End to end: NCIP libraries (real HTTP servers) and the hub (real process, real broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.model import Bibliographic, Event, Message, RequestFormat, Role
from tests.libraries import Library

pytestmark = pytest.mark.kafka

DUE = datetime(2027, 1, 15, tzinfo=UTC)
BOOK = Bibliographic(title="The Name of the Rose", author="Eco, Umberto", isbn="9780151446476",
                     bibliographic_level="Book")


def request(request_id: str) -> Message:
    return Message(event=Event.REQUEST, request_id=request_id, patron_id="patron-7",
                   request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)


async def say(lib: Library, event: Event, request_id: str, **fields: object) -> None:
    status, response = await lib.send(Message(event=event, request_id=request_id, **fields))
    assert status == 200 and response.ok, (event, status, response)


async def test_full_loan_is_relayed_both_ways(hub, libraries) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    await say(north, Event.REQUEST, "N-1", patron_id="patron-7",
              request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)

    asked = await south.next()
    assert asked.event is Event.REQUEST
    assert asked.bibliographic and asked.bibliographic.isbn == BOOK.isbn
    assert asked.from_agency == north.agency_id and asked.to_agency == south.agency_id
    lender_id = asked.request_id

    await say(south, Event.LOANED, lender_id, item_id="SOUTH-BC-1", due_date=DUE)
    shipped = await north.next()
    assert (shipped.event, shipped.request_id, shipped.item_id) == (Event.LOANED, "N-1", "SOUTH-BC-1")
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
