"""The staff actions' operations layer (hub.ops.actions, what the console, the API and the
command line call) against the real hub with ISO 18626 and NCIP libraries: a message from
staff reaches a partner whose protocol has one, in that protocol, and the answer says it was
taken; a partner whose protocol has none is refused before anything is sent."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.core.directory import load
from connectors.core.model import Event, Message, transaction_id
from connectors.registry import CONNECTORS
from connectors.simulator import Library, running
from hub.cli.process import HubProcess
from hub.ops import actions
from tests.test_e2e_ncip import BOOK

pytestmark = pytest.mark.kafka


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    # Rota order: WEST (ISO 18626), SOUTH (NCIP); EAST (ISO 18626) borrows.
    libs = {
        "WEST": Library("WEST", "DK-710100", "west-secret", protocol="iso18626"),
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "EAST": Library("EAST", "DK-820010", "east-secret", protocol="iso18626"),
    }
    async with running(libs):
        yield libs


def link(bootstrap: str, tmp_path: Path) -> actions.Link:
    directory = load(tmp_path / "consortium.yaml", CONNECTORS.names)
    return actions.Link(
        bootstrap,
        wait_s=30.0,
        directory=directory,
        carries={c.name: c.codec.events_out for c in CONNECTORS},
    )


async def test_staff_message_reaches_each_party_in_its_protocol_or_is_refused(
    hub: HubProcess, libraries: dict[str, Library], bootstrap: str, tmp_path: Path
) -> None:
    east, west, south = libraries["EAST"], libraries["WEST"], libraries["SOUTH"]
    status, answer = await east.send(
        Message(event=Event.REQUEST, request_id="E-9", patron_id="p", bibliographic=BOOK)
    )
    assert status == 200 and answer.ok
    asked = await west.next()
    txn = transaction_id("EAST", "E-9")
    staff = actions.Staff(link(bootstrap, tmp_path))

    said = await staff.message(txn, "lender", "please check the shelf", "cli:ann", "WEST")
    assert said == (0, "BorrowerNotification to WEST: sent")
    note = await west.next()
    assert note.event is Event.BORROWER_NOTE and note.request_id == asked.request_id
    assert "please check the shelf" in (note.note or "")

    said = await staff.message(txn, "borrower", "your book is on its way", "cli:ann", "EAST")
    assert said.done, said
    told = await east.next()
    assert told.event is Event.LENDER_NOTE and told.request_id == "E-9"
    assert "your book is on its way" in (told.note or "")

    # NCIP has no message for it: refused at once, nothing goes to the hub.
    assert not staff.can_message("SOUTH")
    said = await staff.message(txn, "lender", "hello", "cli:ann", "SOUTH")
    assert said == (2, "SOUTH's protocol (ncip) has no message for staff")

    # A note tells nobody; a cancel tells the lender (ISO 18626 Cancel) and the borrower.
    assert (await staff.note(txn, "patron phoned", "cli:ann")).done
    said = await staff.cancel(txn, "patron found it", "cli:ann")
    assert said == (0, f"done: {txn} is now Cancelled")
    assert (await west.next()).event is Event.CANCEL
    assert (await east.next()).event is Event.CANCEL_REPLY
    assert west.received.empty() and east.received.empty() and south.received.empty()


async def rshub(hub: HubProcess, *args: str) -> tuple[int, str, str]:
    """The command line, as staff type it (not blocking the loop: the simulated libraries
    answer the hub's deliveries from this one)."""
    env = {k: v for k, v in hub.env.items() if k != "RSHUB_APP_ID"}
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(run.communicate(), 120)
    assert run.returncode is not None
    return run.returncode, out.decode(), err.decode()


async def test_the_command_line_acts_through_the_same_layer(
    hub: HubProcess, libraries: dict[str, Library]
) -> None:
    east, west, south = libraries["EAST"], libraries["WEST"], libraries["SOUTH"]
    status, answer = await east.send(
        Message(event=Event.REQUEST, request_id="E-10", patron_id="p", bibliographic=BOOK)
    )
    assert status == 200 and answer.ok
    asked = await west.next()
    txn = transaction_id("EAST", "E-10")

    code, out, err = await rshub(hub, "note", txn, "patron phoned")
    assert code == 0, err
    code, out, err = await rshub(hub, "message", txn, "--to", "lender", "check the shelf")
    assert (code, out.strip()) == (0, "BorrowerNotification to WEST: sent"), err
    note = await west.next()
    assert note.event is Event.BORROWER_NOTE and "check the shelf" in (note.note or "")
    # Nothing is out yet: a close is refused, saying what to do instead, and changes nothing.
    code, out, err = await rshub(hub, "close", txn, "--reason", "returned at the desk")
    assert code == 2 and "Requested" in err, (out, err)
    # The next lender: WEST gets one Cancel, SOUTH the request.
    code, out, err = await rshub(hub, "route", txn, "--next")
    assert code == 0, err
    assert (await west.next()).event is Event.CANCEL
    assert (await south.next()).event is Event.REQUEST
    code, out, err = await rshub(hub, "cancel", txn, "--reason", "patron found it")
    assert code == 0 and txn in out, err
    assert (await south.next()).event is Event.CANCEL
    code, out, err = await rshub(hub, "show", txn, "--no-raw")
    assert "cli:" in out and "patron phoned" in out and "patron found it" in out, out
    assert asked.request_id and west.received.empty()
