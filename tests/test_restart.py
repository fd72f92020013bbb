"""A hub killed in the middle of a loan (SIGKILL, no clean-up) resumes it on restart with no
step lost and none applied or delivered twice.

The kill lands at a chosen point, not wherever the scheduler happens to be: while the lender
holds the hub's call unanswered. That call is the one a crash may re-send (no protocol the
hub speaks lets a partner recognise a repeated call); every step whose delivery the hub
recorded before the crash must not be sent again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from connectors.core.model import Event, Message
from connectors.ncip import writer
from connectors.simulator import Library
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import lend, say

pytestmark = pytest.mark.kafka


@asynccontextmanager
async def holding(library: Library, arrived: asyncio.Event) -> AsyncIterator[None]:
    """`library` accepts the next call's body and never answers it while the block runs (the
    hub dies with its call in flight); afterwards the library is back to normal."""
    released = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        await released.wait()
        return web.Response(status=503)

    await library.stop()
    app = web.Application()
    app.router.add_post(f"/{library.protocol}", hold)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", library.port).start()
    try:
        yield
    finally:
        released.set()
        await runner.cleanup()
        await library.start()


async def test_loan_survives_a_crash_of_the_hub(hub, libraries, bootstrap) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    lender_id = await lend(north, south, "N-R", "BC-R")
    # Both deliveries so far (the request to SOUTH, the loan to NORTH) are recorded as done.
    await wait_for_record(
        bootstrap,
        f"{hub.env['RSHUB_APP_ID']}-delivered-changelog",
        lambda done: isinstance(done, list) and len(done) >= 2,
    )

    # Accepted and applied, then the process dies while delivering it.
    received_body = writer.encode(
        Message(event=Event.RECEIVED, request_id="N-R", item_id="BC-R"),
        from_agency=north.agency_id,
        to_agency="RSHUB",
    )
    arrived = asyncio.Event()
    async with holding(south, arrived):
        status, response = await north.post(received_body)
        assert status == 200 and response.ok
        await asyncio.wait_for(arrived.wait(), 60)
        hub.kill()
    await hub.start()

    # The call that was in flight is made again; nothing delivered before the crash is.
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
