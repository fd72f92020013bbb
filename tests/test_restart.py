"""A hub killed in the middle of a loan (SIGKILL, no clean-up) resumes it on restart with no
step lost and none applied or delivered twice."""

from __future__ import annotations

import pytest

from connectors.core.model import Event, Message
from connectors.ncip import writer
from tests.test_e2e_ncip import lend, say

pytestmark = pytest.mark.kafka


async def test_loan_survives_a_crash_of_the_hub(hub, libraries) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    lender_id = await lend(north, south, "N-R", "BC-R")

    # Accepted and applied, then the process dies before or while delivering it.
    received_body = writer.encode(
        Message(event=Event.RECEIVED, request_id="N-R", item_id="BC-R"),
        from_agency=north.agency_id,
        to_agency="RSHUB",
    )
    status, response = await north.post(received_body)
    assert status == 200 and response.ok
    hub.kill()
    await hub.start()

    received = await south.next()
    assert (received.event, received.request_id) == (Event.RECEIVED, lender_id)

    # The table was recovered: the loan goes on from Received, and a re-sent message is a
    # duplicate, not a second step.
    status, response = await north.post(received_body)
    assert status == 200 and response.ok
    await say(north, Event.SHIPPED_RETURN, "N-R", item_id="BC-R")
    assert (await south.next()).event is Event.SHIPPED_RETURN
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-R")
    assert (await north.next()).event is Event.LOAN_COMPLETED

    # Nothing was delivered twice.
    assert south.received.empty() and north.received.empty()
    status, response = await south.send(
        Message(event=Event.LOAN_COMPLETED, request_id=lender_id, item_id="BC-R2")
    )
    assert response.errors and response.errors[0].startswith("State Transition Prohibited")
