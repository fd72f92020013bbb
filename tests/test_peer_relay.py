"""`rshub peer` plays the NCIP relay's parties against a real hub (real process, real broker):
the members NORTH-CIRC (an Alma-like NCIP 2.0 responder, demanding the hub's bearer token) and
SOUTH-CIRC (an NCIP 1.0 ILS) answer as `rshub peer` runs them, and `rshub peer send RELAIS loan`
makes a broker's whole loan between them: six calls, each relayed to its member and answered."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connectors.core.connections import free_port
from connectors.core.directory import Partner
from connectors.ncip import codec as ncip
from hub.cli import peer
from hub.cli.process import HubProcess
from tests.relay_fixtures import SUPPORTED, relay_partners
from tests.test_peer import _read_until

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "RSHUB_SECRET_RELAIS": "relais-token",
    "RSHUB_SECRET_INNREACH": "innreach-token",
    "RSHUB_SECRET_NORTH_CIRC": "north-token",
    "RSHUB_NORTH_NCIP_AUTH": "north-agency-auth",
}


def _endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}/view/NCIPServlet"


@pytest.mark.kafka
async def test_a_broker_loan_between_two_peer_members(bootstrap: str, tmp_path: Path) -> None:
    directory = tmp_path / "consortium.yaml"
    document = {
        "consortium": "Relay consortium",
        "supported_protocols": sorted(SUPPORTED),
        "partners": relay_partners(_endpoint(), _endpoint()),
    }
    directory.write_text(yaml.safe_dump(document, sort_keys=False))
    hub = HubProcess(bootstrap, directory, tmp_path / "hub", SECRETS)
    await hub.start()
    env = {**hub.env, "PYTHONPATH": str(ROOT), "RSHUB_DATA_DIR": str(tmp_path / "peer")}
    command = [sys.executable, "-m", "hub.cli", "peer"]
    members = await asyncio.create_subprocess_exec(
        *command,
        "NORTH-CIRC",
        "SOUTH-CIRC",
        "RELAIS",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert members.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(
            _read_until(members.stdout, lambda s: s and s[-1].startswith("ready"), seen), 60
        )
        assert sum("listening at" in line for line in seen) == 2, seen
        assert any(line.startswith("RELAIS (ncip-relay broker): calls only") for line in seen)
        loan = await asyncio.create_subprocess_exec(
            *command,
            "send",
            "RELAIS",
            "loan",
            "--to",
            "NORTH-CIRC",
            "--to",
            "SOUTH-CIRC",
            "--txn",
            "REQ-7",
            "--item",
            "LOAN-7",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(loan.communicate(), 120)
        text = out.decode()
        assert loan.returncode == 0, text
        sent = [line.split()[4] for line in text.splitlines() if " -> hub " in line]
        assert sent == [
            "LookupUser",
            "AcceptItem",
            "RequestItem",
            "CheckOutItem",
            "CheckInItem",
            "CheckInItem",
        ], text
        answers = [line for line in text.splitlines() if " <- hub " in line]
        assert len(answers) == 6 and all(" ok" in line for line in answers), text
        assert "due " in answers[3], text  # the lender's CheckOutItem answer names the due date

        def heard_everything(lines: list[str]) -> bool:
            return sum(" -> hub " in line for line in lines) == 6

        await asyncio.wait_for(_read_until(members.stdout, heard_everything, seen), 60)
    finally:
        if members.returncode is None:
            members.terminate()
            await asyncio.wait_for(members.wait(), 20)
        hub.stop()
    calls = [line.split()[1:5] for line in seen if " <- hub " in line]
    assert calls == [
        ["NORTH-CIRC", "<-", "hub", "LookupUser"],
        ["NORTH-CIRC", "<-", "hub", "AcceptItem"],
        ["SOUTH-CIRC", "<-", "hub", "RequestItem"],
        ["SOUTH-CIRC", "<-", "hub", "CheckOutItem"],
        ["NORTH-CIRC", "<-", "hub", "CheckInItem"],
        ["SOUTH-CIRC", "<-", "hub", "CheckInItem"],
    ], seen
    south = [line for line in seen if line.split()[1:2] == ["SOUTH-CIRC"] and "<- hub" in line]
    assert all("NCIP 1.0" in line for line in south), south  # relayed in the member's version


async def test_an_unfilling_member_answers_the_lending_calls_with_a_problem() -> None:
    (south,) = (p for p in relay_partners(_endpoint(), _endpoint()) if p["symbol"] == "SOUTH-CIRC")
    member = peer.member_peer(Partner.model_validate(south), "unfill", 0)
    for service, refused in (("CheckOutItem", True), ("LookupUser", False)):
        call = peer.relay.Broker("RELAIS", "Relais", "", version="1.0").call(
            service, "01SOUTH_INST"
        )
        answer = ncip.read_response(member.answer(ncip.parse(call)))
        problems = [p.type for p in answer.problems]
        assert problems == (["Item Does Not Circulate"] if refused else []), service
