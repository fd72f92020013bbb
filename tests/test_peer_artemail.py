"""`rshub peer` plays the British Library over ARTEmail against a real hub (real process,
real broker): the peer is the SMTP server the hub's ARTEmail connector submits orders to, and
writes its BLDSS reports into the mailbox the hub reads, on a real IMAP server (Dovecot), or,
with `--mailbox`, one it serves itself (a newcomer's machine: no mail server at all).
An NCIP borrower (also played by `rshub peer`) asks the BL for a loan and for a copy; the
loan comes back with its due date, the copy as shipped; by hand, a sample report lends."""

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

pytestmark = pytest.mark.kafka
needs_dovecot = pytest.mark.skipif(not available(), reason="dovecot is not installed (.ci/run)")
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


async def _peer(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "peer",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _ready(process: asyncio.subprocess.Process, seen: list[str]) -> None:
    assert process.stdout is not None
    await asyncio.wait_for(
        _read_until(process.stdout, lambda s: s and s[-1].startswith("ready"), seen), 60
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)


async def _send(env: dict[str, str], *args: str) -> str:
    send = await _peer(env, "send", *args)
    out, _ = await asyncio.wait_for(send.communicate(), 60)
    assert send.returncode == 0, out.decode()
    return out.decode()


def _heard(lines: list[str], symbol: str, event: str) -> list[str]:
    return [line for line in lines if line.split()[1:5] == [symbol, "<-", "hub", event]]


@needs_dovecot
async def test_the_british_library_peer_lends_copies_and_is_stepped_by_hand(
    bootstrap: str, servers: MailServers, tmp_path: Path
) -> None:
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(_directory(free_port()), sort_keys=False))
    hub = HubProcess(bootstrap, directory, tmp_path / "hub", _env(servers))
    await hub.start()
    env = {**hub.env, "PYTHONPATH": str(ROOT), "RSHUB_DATA_DIR": str(tmp_path / "peer")}
    north, bl = await _peer(env, "NORTH"), await _peer(env, "BL")
    north_seen: list[str] = []
    bl_seen: list[str] = []
    manual: list[str] = []
    assert north.stdout is not None and bl.stdout is not None
    try:
        await _ready(north, north_seen)
        await _ready(bl, bl_seen)
        assert any(line.startswith("BL (artemail") for line in bl_seen), bl_seen
        for extra in ([], ["--copy"]):
            out = await _send(env, "NORTH", "request", "--to", "BL", *extra)
            assert "[accepted]" in out, out

        def answered(lines: list[str]) -> bool:
            return bool(
                _heard(lines, "NORTH", "Loaned") and _heard(lines, "NORTH", "CopyCompleted")
            )

        await asyncio.wait_for(_read_until(north.stdout, answered, north_seen), 120)
        await _stop(bl)
        remaining = await bl.stdout.read()
        bl_seen += remaining.decode().splitlines(keepends=True)
        assert len(_heard(bl_seen, "BL", "Request")) == 2, bl_seen
        reports = [line for line in bl_seen if line.split()[1:4] == ["BL", "->", "hub"]]
        assert sorted(r.split()[4] for r in reports) == ["CopyCompleted", "Loaned"], bl_seen
        assert all("[accepted]" in r for r in reports), bl_seen
        (loaned,) = _heard(north_seen, "NORTH", "Loaned")
        assert " due " in loaned, loaned  # the BL's DUE date reached the borrower

        # By hand: the BL only prints the order; its report is a sample sent as it is.
        bl = await _peer(env, "BL", "--behaviour", "manual")
        assert bl.stdout is not None
        await _ready(bl, manual)
        await _send(env, "NORTH", "request", "--to", "BL", "--title", "Gödel, Escher, Bach")
        await asyncio.wait_for(
            _read_until(bl.stdout, lambda s: bool(_heard(s, "BL", "Request")), manual), 60
        )
        reference = _heard(manual, "BL", "Request")[0].split()[5]
        sample = ROOT / "examples" / "samples" / "artemail" / "report-due.eml"
        out = await _send(env, "BL", "--file", str(sample), "--txn", reference)
        assert "[accepted]" in out, out

        def lent_by_hand(lines: list[str]) -> bool:
            return any("due 2026-04-01" in line for line in _heard(lines, "NORTH", "Loaned"))

        await asyncio.wait_for(_read_until(north.stdout, lent_by_hand, north_seen), 60)
    finally:
        await _stop(bl)
        await _stop(north)
        hub.stop()
    text = "".join(north_seen + bl_seen + manual)
    assert "REFUSED" not in text and "NOT SENT" not in text, text


async def test_the_british_library_serves_the_hubs_mailbox_itself(
    bootstrap: str, tmp_path: Path
) -> None:
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(_directory(free_port()), sort_keys=False))
    prefix = "RSHUB_ARTEMAIL_"
    env = {
        "RSHUB_SECRET_NORTH": "north-secret",
        "RSHUB_BL_CUSTOMER_CODE": "87-1234",
        "RSHUB_BL_ART_PASSWORD": "ARTSECRET",
        "RSHUB_BL_MAILBOX_PASSWORD": "hub-bl-pw",
        prefix + "SMTP_PORT": str(free_port()),
        prefix + "SMTP_TLS": "none",
        # The hub reads the mailbox the peer serves: plain IMAP on loopback.
        prefix + "IMAP_PORT": str(free_port()),
        prefix + "IMAP_TLS": "none",
        prefix + "RECONNECT_S": "0.2",
        prefix + "RECONNECT_MAX_S": "0.5",
        prefix + "TIMEOUT_S": "10",
    }
    hub = HubProcess(bootstrap, directory, tmp_path / "hub", env)
    await hub.start()
    env = {**hub.env, "PYTHONPATH": str(ROOT), "RSHUB_DATA_DIR": str(tmp_path / "peer")}
    # The BL is stepped by hand: its report goes from another process, by IMAP APPEND to the
    # server the running peer serves (its own answers are put there in place).
    north = await _peer(env, "NORTH")
    bl = await _peer(env, "BL", "--mailbox", "--behaviour", "manual")
    seen: list[str] = []
    bl_seen: list[str] = []
    assert north.stdout is not None and bl.stdout is not None
    try:
        await _ready(north, seen)
        await _ready(bl, bl_seen)
        assert any("reports into its own mailbox hub-bl" in line for line in bl_seen), bl_seen
        await _send(env, "NORTH", "request", "--to", "BL")
        await asyncio.wait_for(
            _read_until(bl.stdout, lambda s: bool(_heard(s, "BL", "Request")), bl_seen), 60
        )
        reference = _heard(bl_seen, "BL", "Request")[0].split()[5]
        out = await _send(env, "BL", "loaned", "--txn", reference, "--due", "2026-06-01")
        assert "[accepted]" in out, out

        def lent_by_hand(lines: list[str]) -> bool:
            return any("due 2026-06-01" in line for line in _heard(lines, "NORTH", "Loaned"))

        await asyncio.wait_for(_read_until(north.stdout, lent_by_hand, seen), 60)
    finally:
        await _stop(bl)
        await _stop(north)
        hub.stop()
    text = "".join(seen + bl_seen)
    assert "REFUSED" not in text and "NOT SENT" not in text, text
