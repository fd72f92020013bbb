"""The tests' own view of the mailboxes, over IMAP as any mail client has it: wait (with IDLE)
until a folder holds a number of mails, and read them; send a mail through the SMTP server.

The hub's listener is what is tested; these helpers only look, from a separate session, at
what the listener and the SMTP server did (the British Library reading its mailbox, an
operator looking at Processed and Failed)."""

from __future__ import annotations

import asyncio
import contextlib
import re

import aioimaplib
import aiosmtplib

from tests.mail_servers import USERS, MailServers

_EXISTS = re.compile(rb"^(\d+) EXISTS")


def _exists(lines: list[bytes]) -> int:
    return max((int(m.group(1)) for line in lines if (m := _EXISTS.match(bytes(line)))), default=0)


async def wait_for_mails(
    servers: MailServers, user: str, folder: str = "INBOX", count: int = 1, timeout: float = 60
) -> list[bytes]:
    """The mails in `user`'s `folder` once it holds at least `count` (in UID order), waiting
    for the server's EXISTS pushes in IDLE rather than polling."""
    imap = aioimaplib.IMAP4("127.0.0.1", servers.dovecot.imap_port, timeout=10)
    await imap.wait_hello_from_server()
    await imap.login(user, USERS[user])

    async def until() -> list[bytes]:
        # The folder may not exist yet (the hub's listener creates Processed and Failed);
        # creating it here is what the listener does too (an existing folder is kept).
        await imap.create(folder)
        while True:
            selected = await imap.select(folder)
            if _exists(selected.lines) >= count:
                break
            idle = await imap.idle_start(timeout=10)
            # A mail that came between SELECT and IDLE is announced as IDLE starts; the
            # renewal after 10 s is only a guard against a lost notification.
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await imap.wait_server_push(timeout=10)
            imap.idle_done()
            await asyncio.wait_for(idle, 10)
        fetched = await imap.fetch("1:*", "(BODY.PEEK[])")
        return [bytes(line) for line in fetched.lines if isinstance(line, bytearray)]

    try:
        return await asyncio.wait_for(until(), timeout)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(imap.logout(), 5)


async def submit(servers: MailServers, raw: bytes, sender: str, to: str) -> None:
    """Hand a mail to the SMTP server (STARTTLS + AUTH), which delivers it into Dovecot."""
    await aiosmtplib.send(
        raw,
        sender=sender,
        recipients=[to],
        hostname="127.0.0.1",
        port=servers.smtp.port,
        start_tls=True,
        tls_context=servers.dovecot.client_tls(),
        username="hub-out",
        password=USERS["hub-out"],
        timeout=30,
    )
