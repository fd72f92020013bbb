"""End to end: a hung lender and a borrower that is down cost the other partners nothing; what
could not be delivered is retried on the hub's clock, listed, redelivered in order, once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from connectors.core.model import Event, now, transaction_id
from connectors.core.records import Tick
from connectors.simulator import Library, running
from hub.cli.process import HubProcess
from hub.kafka.producer import KafkaIO
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import ask, say

pytestmark = pytest.mark.kafka


@dataclass
class HungLibrary(Library):
    """Accepts the connection and the request, and answers only once `gate` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def _receive(self, request: web.Request) -> web.Response:
        await self.gate.wait()
        return await super()._receive(request)


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    libs: dict[str, Library] = {
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "SOUTH": HungLibrary("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "EAST": Library("EAST", "01EAST_INST||CENTRAL", "east-secret"),
    }
    async with running(libs):
        yield libs
        hung = libs["SOUTH"]
        assert isinstance(hung, HungLibrary)
        hung.gate.set()


async def tick(bootstrap: str, txn: str, minutes: float) -> None:
    """Move one transaction's clock forward (the engine reads time only from Ticks)."""
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        record = Tick(transaction_id=txn, at=now() + timedelta(minutes=minutes))
        await kafka.send("ill.control", txn, record.model_dump_json().encode())
    finally:
        await kafka.stop()


def rshub(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in hub.env.items() if k != "RSHUB_APP_ID"}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_a_hung_lender_delays_no_one_else_and_loses_its_request_in_time(
    hub, libraries, bootstrap
) -> None:
    north, east = libraries["NORTH"], libraries["EAST"]
    await ask(north, "N-1")  # first lender: SOUTH, which hangs
    await ask(east, "E-1")  # first lender: NORTH
    asked = await north.next()
    assert asked.event is Event.REQUEST and asked.request_id.endswith(".1")
    # The delivery to SOUTH had not even failed yet when NORTH got its request.
    failed = await wait_for_record(
        bootstrap, "ill.delivery", lambda r: r["recipient"] == "SOUTH" and r["outcome"] == "failed"
    )
    assert failed["retryable"] and failed["event"] == "Request"

    # SOUTH still has not taken the request within its unreachable_after (30 minutes).
    txn = transaction_id("NORTH", "N-1")
    await tick(bootstrap, txn, minutes=31)
    moved = await east.next()
    assert moved.event is Event.REQUEST and moved.request_id.endswith(".2")
    routing = await wait_for_record(
        bootstrap, "ill.routing", lambda r: r["transaction_id"] == txn and r["attempt"] == 2
    )
    assert "Unreachable" in routing["reason"]


@pytest.fixture
def directory_extra() -> dict[str, dict[str, object]]:
    # The borrower's retries: 5 minutes, then parked (tried again hourly, or on demand).
    return {"NORTH": {"retry_minutes": [5]}}


async def test_a_borrower_down_gets_every_step_afterwards_in_order_once(
    hub, libraries, bootstrap
) -> None:
    north = libraries["NORTH"]
    hung = libraries["SOUTH"]
    assert isinstance(hung, HungLibrary)
    hung.gate.set()  # SOUTH answers normally in this test
    await ask(north, "N-2")
    lender_id = (await libraries["SOUTH"].next()).request_id
    txn = transaction_id("NORTH", "N-2")

    await north.stop()  # the borrower's system does not take messages
    south = libraries["SOUTH"]
    await say(south, Event.LOANED, lender_id, item_id="BC-2")  # ships
    await wait_for_record(
        bootstrap,
        "ill.events",
        lambda e: (
            e["transaction_id"] == txn and e["kind"] == "delivery" and e["event"] == "Loaned:failed"
        ),
    )
    await say(north, Event.RECEIVED, "N-2", item_id="BC-2")  # staff still send from NORTH
    await say(south, Event.RECALLED, lender_id, item_id="BC-2")
    await say(north, Event.SHIPPED_RETURN, "N-2", item_id="BC-2")
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-2")  # received and checked in
    # Five minutes later it is still down: the step is parked.
    await tick(bootstrap, txn, minutes=6)
    await wait_for_record(
        bootstrap,
        "ill.events",
        lambda e: e["transaction_id"] == txn and "parked" in e["detail"],
    )
    listed = rshub(hub, "deliveries")
    assert listed.returncode == 0, listed.stderr
    assert "NORTH: 0 retrying, 1 parked" in listed.stdout and txn in listed.stdout

    await north.start()  # back
    done = rshub(hub, "redeliver", "--partner", "NORTH")
    assert done.returncode == 0, done.stderr
    got = [await north.next() for _ in range(3)]
    assert [m.event for m in got] == [Event.LOANED, Event.RECALLED, Event.LOAN_COMPLETED]
    assert all(m.request_id == "N-2" for m in got)
    # Once: the last step's acceptance is recorded, and nothing more came.
    await wait_for_record(
        bootstrap,
        "ill.delivery",
        lambda r: (
            r["recipient"] == "NORTH" and r["event"] == "LoanCompleted" and r["outcome"] == "sent"
        ),
    )
    assert north.received.empty()
    nothing = rshub(hub, "redeliver", txn)
    assert nothing.returncode == 2 and "nothing waits for delivery" in nothing.stderr


async def test_a_reroute_while_the_lender_is_down_leaves_it_nothing_but_a_cancel(
    hub, libraries, bootstrap
) -> None:
    north, south, east = libraries["NORTH"], libraries["SOUTH"], libraries["EAST"]
    assert isinstance(south, HungLibrary)
    south.gate.set()
    await south.stop()  # the first lender is down
    await ask(north, "N-3")
    txn = transaction_id("NORTH", "N-3")
    await wait_for_record(
        bootstrap,
        "ill.delivery",
        lambda r: (
            r["transaction_id"] == txn and r["recipient"] == "SOUTH" and r["outcome"] == "failed"
        ),
    )
    # Listed as needing attention from the first failed try, with the reason.
    needing = rshub(hub, "find", "--needs-attention", "--json")
    assert needing.returncode == 0, needing.stderr
    [listed] = [r for r in json.loads(needing.stdout) if r["id"] == txn]
    assert "delivery of Request to SOUTH failing" in listed["attention"]
    routed = rshub(hub, "route", txn, "--lender", "EAST")
    assert routed.returncode == 0, routed.stderr
    asked = await east.next()
    assert asked.event is Event.REQUEST and asked.request_id.endswith(".2")
    withdrawn = await wait_for_record(
        bootstrap,
        "ill.events",
        lambda e: e["transaction_id"] == txn and "never received the request" in e["detail"],
    )
    assert "withdrawn before sent to SOUTH: Request" in withdrawn["detail"]

    await south.start()  # back: the hub hears it answers again, every retry is due
    back = rshub(hub, "redeliver", "--partner", "SOUTH")
    assert back.returncode == 0, back.stderr
    await tick(bootstrap, txn, minutes=600)
    # Read after both on the transaction's partition: nothing waited for SOUTH.
    nothing = rshub(hub, "redeliver", txn, "--partner", "SOUTH")
    assert nothing.returncode == 2 and "nothing waits for delivery" in nothing.stderr
    assert south.received.empty()  # neither the old Request nor a Cancel for it
