"""A transaction whose row would outgrow the largest record the broker takes: the step is
refused with the protocol's error and dead-lettered, and the worker goes on. (Produced
anyway, the broker would refuse the row: fatal, and the same again after every restart.)"""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.core.model import Bibliographic, Event, Message, RequestFormat, transaction_id
from connectors.simulator import Library
from hub.cli.process import HubProcess
from tests.test_deadletters import rshub
from tests.test_e2e_ncip import ask

pytestmark = pytest.mark.kafka
LIMIT = 20_000
BODY = 7_900  # the largest body whose audit record fits LIMIT (the settings check it)


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"RSHUB_MAX_RECORD_BYTES": str(LIMIT), "RSHUB_MAX_BODY_BYTES": str(BODY)}


# Each field within the model's limits and the message within the body limit; a quote costs
# one byte in XML and two in JSON, and the request's row keeps the request and the step's
# outputs (for a replay), so the row is several times the message.
LONG = Bibliographic(
    title='"' * 2000,
    author='"' * 1000,
    publisher='"' * 1000,
    place_of_publication='"' * 1000,
    edition='"' * 900,
    bibliographic_level="Book",
)


async def test_a_row_too_large_for_the_broker_is_refused_and_the_worker_goes_on(
    hub: HubProcess, libraries: dict[str, Library]
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    status, answer = await north.send(
        Message(
            event=Event.REQUEST,
            request_id="BIG-1",
            patron_id="p",
            request_format=RequestFormat.PHYSICAL,
            bibliographic=LONG,
        )
    )
    assert status == 200 and answer.errors, answer

    # The next request goes through: the worker was not stopped by the first. The lender
    # never heard of the refused one.
    await ask(north, "SMALL-1")
    assert (await asyncio.wait_for(south.next(), 30)).request_id != "BIG-1"

    listed = rshub(hub, "deadletters", "--json", "--partner", "NORTH")
    assert listed.returncode == 0, listed.stderr
    txn = transaction_id("NORTH", "BIG-1")
    (letter,) = [x for x in json.loads(listed.stdout) if x["transaction_id"] == txn]
    assert f"transaction {txn}'s row would be" in letter["error"]
    # The letter points at the raw message, so the operators can read it and replay it.
    assert letter["protocol"] == "ncip" and letter["audit_ref"]
