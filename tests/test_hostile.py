"""Hostile and broken input at the NCIP endpoint: each gets a clear NCIP Problem with the
right HTTP status, and a record on ill.deadletter; the hub keeps serving."""

from __future__ import annotations

import pytest

from connectors.core.model import Event, Message
from hub.runtime.settings import Settings
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import ask, say

pytestmark = pytest.mark.kafka

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<NCIPMessage xmlns="http://www.niso.org/2008/ncip"><RequestItem>&xxe;</RequestItem></NCIPMessage>"""
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<NCIPMessage xmlns="http://www.niso.org/2008/ncip"><RequestItem>&lol3;</RequestItem></NCIPMessage>"""
MALFORMED = b"<NCIPMessage><RequestItem></NCIPMessage>"


async def test_hostile_input_is_refused_and_dead_lettered(hub, libraries, bootstrap) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    limit = Settings().max_body_bytes
    cases = [
        ("xxe", north.post(XXE), 400, "Invalid Message Syntax Error", "entity declarations"),
        ("entity bomb", north.post(BOMB), 400, "Invalid Message Syntax Error", "entity"),
        ("malformed", north.post(MALFORMED), 400, "Invalid Message Syntax Error", "well-formed"),
        (
            "oversized",
            north.post(b"<a>" + b"x" * (limit + 10) + b"</a>"),
            413,
            "Invalid Message Syntax Error",
            "exceeds the limit",
        ),
        (
            "wrong credentials",
            north.post(b"<x/>", secret="guess"),
            401,
            "Agency Authentication Failed",
            "credentials for NORTH",
        ),
        (
            "unknown partner",
            north.post(b"<x/>", symbol="NOWHERE"),
            404,
            "Unknown Agency",
            "NOWHERE",
        ),
    ]
    for name, call, status, problem, words in cases:
        got_status, response = await call
        assert got_status == status, name
        assert response.errors and response.errors[0].startswith(problem + ":"), name
        letter = await wait_for_record(
            bootstrap, "ill.deadletter", lambda r, w=words: w in r["error"]
        )
        assert letter["partner"] in ("NORTH", "NOWHERE"), name

    # Illegal transition: the borrower cannot check an item in for the lender.
    await ask(north, "N-H")
    lender_id = (await south.next()).request_id
    status, response = await north.send(
        Message(event=Event.RECEIVED, request_id="N-H", item_id="BC")
    )
    assert status == 200
    assert response.errors[0].startswith("State Transition Prohibited: ")
    assert "Received from the borrower is not allowed in state Requested" in response.errors[0]
    letter = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: r["stage"] == "apply" and "Received" in r["error"]
    )
    assert letter["detail"]["state"] == "Requested"
    # The transaction is unchanged: the lender can still answer.
    await say(south, Event.LOANED, lender_id, item_id="BC")
    assert (await north.next()).event is Event.LOANED
