"""`rshub peer` plays the British Library over ARTEmail against a real hub (real process,
real broker) and a real IMAP server (Dovecot): the peer is the SMTP server the hub's ARTEmail
connector submits orders to, and writes its BLDSS reports into the mailbox the hub reads.
An NCIP borrower (also played by `rshub peer`) asks the BL for a loan and for a copy; the
loan comes back with its due date, the copy as shipped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.core.connections import free_port
from hub.cli.process import HubProcess
from tests.mail_servers import USERS, MailServers, available, mail_servers
from tests.test_peer import _read_until

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(not available(), reason="dovecot is not installed (.ci/run)"),
]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def servers() -> Iterator[MailServers]:
    with mail_servers() as running_servers:
        yield running_servers


def _directory(north_port: int) -> dict[str, Any]:
    return {
        "consortium": "A library and the British Library",
        "partners": [
            {
                "symbol": "NORTH",
                "name": "North University",
                "protocol": "ncip",
                "endpoint": f"http://127.0.0.1:{north_port}/ncip",
                "agency_ids": ["01NORTH_INST||MAIN"],
                "lends": False,
                "inbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_NORTH"},
            },
            {
                "symbol": "BL",
                "name": "British Library",
                "protocol": "artemail",
                "endpoint": "mailto:artemail@bl.uk",
                "retry_minutes": [],
                "options": {
                    "reply_to": "hub-bl@localhost",
                    "mailbox_user": "hub-bl",
                    "mailbox_password_env": "RSHUB_BL_MAILBOX_PASSWORD",
                    "from_addresses": ["@bl.uk"],
                    # The peer writes into the mailbox itself: no MTA verifies its mail.
                    "accept_unverified": True,
                },
            },
        ],
        "rotas": [{"name": "default", "members": ["BL"]}],
        "default_rota": "default",
    }


def _env(servers: MailServers) -> dict[str, str]:
    prefix = "RSHUB_ARTEMAIL_"
    return {
        "RSHUB_SECRET_NORTH": "north-secret",
        "RSHUB_BL_CUSTOMER_CODE": "87-1234",
        "RSHUB_BL_ART_PASSWORD": "ARTSECRET",
        "RSHUB_BL_MAILBOX_PASSWORD": USERS["hub-bl"],
        # The hub submits its orders to the peer (plain SMTP on loopback) ...
        prefix + "SMTP_PORT": str(free_port()),
        prefix + "SMTP_TLS": "none",
        # ... and reads the BL's mailbox on Dovecot, where the peer appends its reports.
        prefix + "IMAP_PORT": str(servers.dovecot.imap_port),
        prefix + "IMAP_TLS": "starttls",
        prefix + "CA_FILE": str(servers.dovecot.cert),
        prefix + "RECONNECT_S": "0.2",
        prefix + "TIMEOUT_S": "10",
    }


async def test_the_british_library_peer_lends_and_copies_by_mail(
    bootstrap: str, servers: MailServers, tmp_path: Path
) -> None:
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(_directory(free_port()), sort_keys=False))
    hub = HubProcess(bootstrap, directory, tmp_path / "hub", _env(servers))
    await hub.start()
    env = {**hub.env, "PYTHONPATH": str(ROOT), "RSHUB_DATA_DIR": str(tmp_path / "peer")}
    command = [sys.executable, "-m", "hub.cli", "peer"]
    peers = await asyncio.create_subprocess_exec(
        *command,
        "NORTH",
        "BL",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert peers.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(
            _read_until(peers.stdout, lambda s: s and s[-1].startswith("ready"), seen), 60
        )
        assert any(line.startswith("BL (artemail") for line in seen), seen
        for extra in ([], ["--copy"]):
            send = await asyncio.create_subprocess_exec(
                *command,
                "send",
                "NORTH",
                "request",
                "--to",
                "BL",
                *extra,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(send.communicate(), 60)
            assert send.returncode == 0 and "[accepted]" in out.decode(), out.decode()

        def answered(lines: list[str]) -> bool:
            heard = [line for line in lines if line.split()[1:4] == ["NORTH", "<-", "hub"]]
            return any(" Loaned " in h for h in heard) and any(
                " CopyCompleted " in h for h in heard
            )

        await asyncio.wait_for(_read_until(peers.stdout, answered, seen), 120)
    finally:
        if peers.returncode is None:
            peers.terminate()
            await asyncio.wait_for(peers.wait(), 20)
        hub.stop()
    text = "".join(seen)
    assert "REFUSED" not in text and "NOT SENT" not in text, text
    orders = [line for line in seen if line.split()[1:5] == ["BL", "<-", "hub", "Request"]]
    assert len(orders) == 2, text
    reports = [line for line in seen if line.split()[1:4] == ["BL", "->", "hub"]]
    assert sorted(r.split()[4] for r in reports) == ["CopyCompleted", "Loaned"], text
    assert all("[accepted]" in r for r in reports), text
    (loaned,) = (line for line in seen if " NORTH " in line and "<- hub  Loaned " in line)
    assert " due " in loaned, loaned  # the BL's DUE date reached the borrower
