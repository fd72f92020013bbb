"""End to end across protocols: ISO 18626 and NCIP libraries (real HTTP servers) through the
hub (real process, real broker). Each side sees every step in its own protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from connectors.core.model import Event, Message, Reason
from connectors.simulator import Library, running
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import BOOK, DUE

pytestmark = pytest.mark.kafka


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    # Rota order: WEST (ISO 18626), SOUTH (NCIP), NORTH (NCIP), EAST (ISO 18626).
    libs = {
        "WEST": Library("WEST", "DK-710100", "west-secret", protocol="iso18626"),
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "EAST": Library("EAST", "DK-820010", "east-secret", protocol="iso18626"),
    }
    async with running(libs):
        yield libs


async def say(lib: Library, event: Event, request_id: str, **fields: object) -> None:
    status, answer = await lib.send(Message(event=event, request_id=request_id, **fields))
    assert status == 200 and answer.ok, (lib.symbol, event, status, answer)


async def hears(lib: Library, event: Event, request_id: str) -> Message:
    message = await lib.next()
    assert (message.event, message.request_id) == (event, request_id), (lib.symbol, message)
    return message


async def test_iso18626_borrower_hears_expect_to_supply_when_lender_changes(hub, libraries) -> None:
    east, south, north = libraries["EAST"], libraries["SOUTH"], libraries["NORTH"]
    await say(east, Event.REQUEST, "E-1", patron_id="p", bibliographic=BOOK)
    first = await libraries["WEST"].next()
    await say(libraries["WEST"], Event.UNFILLED, first.request_id, reason=Reason.from_code(1))
    moved = await hears(east, Event.LENDER_NOTE, "E-1")
    assert "InUseOnLoan" in (moved.note or "")
    assert moved.extensions["iso18626"]["fields"]["statusInfo/status"] == "ExpectToSupply"
    second = await south.next()
    await say(south, Event.UNFILLED, second.request_id, reason=Reason.from_code(5))
    await hears(east, Event.LENDER_NOTE, "E-1")
    third = await north.next()
    await say(north, Event.UNFILLED, third.request_id, reason=Reason.from_code(4))
    told = await hears(east, Event.UNFILLED, "E-1")  # rota exhausted: now Unfilled
    assert told.reason is not None and told.reason.name == "NonCirculating"


async def test_iso18626_borrower_ncip_lender_full_loan(hub, libraries) -> None:
    west, south = libraries["WEST"], libraries["SOUTH"]
    await say(west, Event.REQUEST, "W-1", patron_id="p-9", bibliographic=BOOK, note="urgent")
    asked = await south.next()  # NCIP RequestItem
    assert asked.event is Event.REQUEST and asked.bibliographic.isbn == BOOK.isbn
    assert asked.patron_id == "p-9" and asked.from_agency == "DK-710100"
    lender_id = asked.request_id

    await say(south, Event.LOANED, lender_id, item_id="S-1", due_date=DUE)
    shipped = await hears(west, Event.LOANED, "W-1")  # ISO 18626 supplyingAgencyMessage Loaned
    assert (shipped.item_id, shipped.due_date, shipped.from_agency) == (
        "S-1",
        DUE,
        "01SOUTH_INST||MAIN",
    )

    await say(west, Event.RECEIVED, "W-1")
    await hears(south, Event.RECEIVED, lender_id)
    await say(west, Event.SHIPPED_RETURN, "W-1", note="sent back by post")
    await hears(south, Event.SHIPPED_RETURN, lender_id)
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="S-1")
    await hears(west, Event.LOAN_COMPLETED, "W-1")


async def test_ncip_borrower_iso18626_lender_with_renewal(hub, libraries) -> None:
    north, west = libraries["NORTH"], libraries["WEST"]
    await say(
        north, Event.REQUEST, "N-1", patron_id="p", bibliographic=BOOK, request_format="Physical"
    )
    asked = await west.next()  # ISO 18626 request
    assert asked.event is Event.REQUEST and asked.bibliographic.title == BOOK.title
    lender_id = asked.request_id
    await say(west, Event.WILL_SUPPLY, lender_id)
    # NCIP has no will-supply message: NORTH hears nothing until the item is shipped.
    await say(west, Event.LOANED, lender_id, item_id="W-77", due_date=DUE)
    shipped = await hears(north, Event.LOANED, "N-1")
    assert shipped.item_id == "W-77" and shipped.due_date == DUE
    await say(north, Event.RECEIVED, "N-1", item_id="W-77")
    await hears(west, Event.RECEIVED, lender_id)

    later = datetime(2027, 3, 1, tzinfo=UTC)
    await say(north, Event.RENEW, "", item_id="W-77", desired_due_date=later)  # by item id only
    await hears(west, Event.RENEW, lender_id)
    await say(west, Event.RENEW_ANSWER, lender_id, answer=True, due_date=later)
    answer = await hears(north, Event.RENEW_ANSWER, "N-1")
    assert (answer.answer, answer.due_date) == (True, later)


async def test_unfilled_crosses_protocols_to_the_next_lender(hub, libraries) -> None:
    north, west, south = libraries["NORTH"], libraries["WEST"], libraries["SOUTH"]
    await say(
        north, Event.REQUEST, "N-2", patron_id="p", bibliographic=BOOK, request_format="Physical"
    )
    first = await west.next()  # ISO 18626 lender first
    await say(west, Event.UNFILLED, first.request_id, reason=Reason.from_code(5))
    second = await south.next()  # then the NCIP lender; NCIP NORTH is not told (no message)
    assert second.event is Event.REQUEST and second.request_id.endswith(".2")
    await say(south, Event.LOANED, second.request_id, item_id="S-9")
    await hears(north, Event.LOANED, "N-2")
    # The first lender's late answer belongs to a closed attempt: refused, nothing relayed.
    status, answer = await west.send(
        Message(event=Event.LOANED, request_id=first.request_id, item_id="X")
    )
    assert status == 200 and not answer.ok
    assert answer.errors[0].startswith("UnsupportedReasonForMessageType: ")


async def test_iso18626_endpoint_refuses_hostile_input_with_confirmations(
    hub, libraries, bootstrap
) -> None:
    west = libraries["WEST"]
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<ISO18626Message><request>&x;</request></ISO18626Message>"
    )
    cases = [
        (west.post(xxe), 400, "BadlyFormedMessage"),
        (west.post(b"<ISO18626Message/>", secret="nope"), 401, "UnrecognisedDataValue"),
        (west.post(b"<ISO18626Message/>", symbol="SOUTH"), 404, "UnrecognisedDataValue"),
        (west.post(b"<a>" + b"x" * 1_048_600 + b"</a>"), 413, "BadlyFormedMessage"),
    ]
    for call, status, error_type in cases:
        got_status, answer = await call
        assert (got_status, answer.ok) == (status, False)
        assert answer.errors[0].startswith(error_type + ":")
    letter = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: r["protocol"] == "iso18626" and r["stage"] == "parse"
    )
    assert letter["partner"] == "WEST"
