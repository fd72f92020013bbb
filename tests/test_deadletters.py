"""`rshub deadletters`: refused messages with their reasons; one replayed once the hub can
take it reaches its partner, on a real hub and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.core.model import Event, Message, transaction_id
from connectors.simulator import Library
from hub.cli.process import HubProcess
from tests.test_e2e_ncip import DUE, ask, say

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


def rshub(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": hub.env["KAFKA_BOOTSTRAP_SERVERS"],
        "RSHUB_DATA_DIR": hub.env["RSHUB_DATA_DIR"],
        "RSHUB_DIRECTORY": hub.env["RSHUB_DIRECTORY"],
    }
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_refused_message_is_listed_and_replayed(
    hub: HubProcess, libraries: dict[str, Library]
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    await ask(north, "D-1")
    lender_id = (await south.next()).request_id
    # The borrower says Received before the lender shipped (its system ran ahead): refused.
    status, answer = await north.send(
        Message(event=Event.RECEIVED, request_id="D-1", item_id="BC-D1")
    )
    assert status == 200 and answer.errors
    # A lender's answer naming no request the hub knows: refused before the state machine.
    status, answer = await south.send(
        Message(event=Event.LOANED, request_id="NO-SUCH-REQUEST", item_id="X", due_date=DUE)
    )
    assert answer.errors and answer.errors[0].startswith("Unknown Request")

    listed = rshub(hub, "deadletters", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    early = next(x for x in letters if x["partner"] == "NORTH")
    unknown = next(x for x in letters if x["partner"] == "SOUTH")
    txn = transaction_id("NORTH", "D-1")
    assert (early["stage"], early["transaction_id"]) == ("apply", txn)
    assert "Received" in early["error"] and early["replayable"] is True
    assert unknown["stage"] == "address" and unknown["replayable"] is True
    text = rshub(hub, "deadletters", "--partner", "NORTH")
    assert early["ref"] in text.stdout and early["error"] in text.stdout
    assert unknown["ref"] not in text.stdout
    assert json.loads(rshub(hub, "deadletters", "--stage", "address", "--json").stdout) == [
        {**unknown, "replayable": True}
    ]

    # Still nothing it can be applied to: refused again, with the reason, and recorded.
    again = rshub(hub, "deadletters", "replay", unknown["ref"])
    assert again.returncode == 2 and "refused again (address)" in again.stderr

    # Still illegal in the state machine (the lender has not shipped): refused again, not a
    # success holding the partner's fault; the refusal is a dead letter of its own.
    early_again = rshub(hub, "deadletters", "replay", early["ref"])
    assert early_again.returncode == 2, early_again.stdout
    assert "refused again (apply)" in early_again.stderr
    letters = json.loads(rshub(hub, "deadletters", "--partner", "NORTH", "--json").stdout)
    assert next(x for x in letters if x["ref"] == early["ref"])["replayed"]
    [second] = [x for x in letters if x["ref"] != early["ref"]]
    assert second["replayed"] is None and second["acknowledged"] is None

    # Once the lender has shipped, the borrower's Received is replayed as it was sent.
    await say(south, Event.LOANED, lender_id, item_id="BC-D1", due_date=DUE)
    assert (await north.next()).event is Event.LOANED
    replayed = rshub(hub, "deadletters", "replay", early["ref"])
    assert replayed.returncode == 0, replayed.stderr
    received = await south.next()
    assert (received.event, received.request_id) == (Event.RECEIVED, lender_id)

    missing = rshub(hub, "deadletters", "replay", "ill.deadletter/0/999")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr

    # The refusal the replay left needs attention until staff acknowledge it (kept, marked).
    assert "dead letter" in _attention(hub, txn)
    acked = rshub(hub, "deadletters", "ack", second["ref"], "--note", "replayed later")
    assert acked.returncode == 0, acked.stderr
    assert "dead letter" not in _attention(hub, txn)
    [marked] = json.loads(rshub(hub, "deadletters", "--partner", "NORTH", "--json").stdout)[:1]
    assert marked["ref"] == second["ref"] and "replayed later" in marked["acknowledged"]


def _attention(hub: HubProcess, txn: str) -> str:
    found = rshub(hub, "find", "--open", "--json")
    assert found.returncode in (0, 1), found.stderr
    rows = json.loads(found.stdout or "[]")
    return next((str(r.get("attention")) for r in rows if r["id"] == txn), "")
