"""How the simulated British Library answers under each `rshub peer` behaviour, without a hub:
the hub's order mails are submitted to its SMTP server as the hub's mail sender does, and the
reports it would append to the hub's mailbox are caught and read by the hub's ARTEmail codec.
A relay member's behaviours are in tests/test_peer_relay.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from connectors.artemail.codec import CODEC
from connectors.artemail.simulator import MailLibrary
from connectors.core.connections import free_port
from connectors.core.contract import Limits
from connectors.core.model import Event, Message
from connectors.mail.options import MailSettings
from connectors.simulator import Answer
from hub.cli.peer import Peer

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "samples" / "artemail"


@dataclass
class CaughtLibrary(MailLibrary):
    """The BL with its mailbox replaced by a queue of the report mails it appends."""

    appended: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Any]:
        self.appended.put_nowait(body)
        return 200, Answer(True, [])


@pytest.fixture
async def bl() -> AsyncIterator[CaughtLibrary]:
    library = CaughtLibrary(
        "BL",
        "BL",
        "bldss@bl.uk",
        "hub-bl@localhost",
        MailSettings(smtp_port=free_port()),
        "hub-bl",
        "unused",
    )
    yield library
    await library.stop()


async def _order(library: MailLibrary, name: str, timeout: float = 10) -> None:
    await aiosmtplib.send(
        (SAMPLES / name).read_bytes(),
        sender="hub-bl@localhost",
        recipients=["artemail@art.bl.uk"],
        hostname="127.0.0.1",
        port=library.settings.smtp_port,
        start_tls=False,
        use_tls=False,
        timeout=timeout,
    )


async def _reports(library: CaughtLibrary, n: int) -> list[Message]:
    out = []
    for _ in range(n):
        body = await asyncio.wait_for(library.appended.get(), 10)
        out.append(CODEC.decode(body, "BL", Limits()).message)
    return out


async def _serve(library: CaughtLibrary, behaviour: str) -> asyncio.Task[None]:
    await library.start()
    return asyncio.create_task(Peer(library, behaviour, 0).listen())


@pytest.mark.parametrize(
    ("behaviour", "loan", "copy"),
    [
        ("lend", Event.LOANED, Event.COPY_COMPLETED),
        ("copy", Event.COPY_COMPLETED, Event.COPY_COMPLETED),
        ("unfill", Event.UNFILLED, Event.UNFILLED),
        ("slow", Event.LOANED, Event.COPY_COMPLETED),
    ],
)
async def test_the_british_library_answers_each_order_by_its_behaviour(
    bl: CaughtLibrary, behaviour: str, loan: Event, copy: Event
) -> None:
    listening = await _serve(bl, behaviour)
    try:
        await _order(bl, "order-loan.eml")
        (first,) = await _reports(bl, 1)
        await _order(bl, "order-copy.eml")
        (second,) = await _reports(bl, 1)
    finally:
        listening.cancel()
    assert (first.event, second.event) == (loan, copy)
    assert first.request_id == second.request_id == "t0123456789abcdef.1"
    if loan is Event.LOANED:
        assert first.due_date is not None  # DUE carries the date the loan is due back


async def test_a_batch_order_is_answered_request_by_request(bl: CaughtLibrary) -> None:
    listening = await _serve(bl, "lend")
    try:
        await _order(bl, "order-batch.eml")
        reports = await _reports(bl, 2)
    finally:
        listening.cancel()
    got = sorted((m.request_id, m.event) for m in reports)
    assert got == [
        ("t0123456789abcdef.1", Event.COPY_COMPLETED),
        ("t0123456789abcdef.2", Event.LOANED),
    ]


async def test_a_hung_british_library_takes_the_order_and_never_answers_the_smtp_data(
    bl: CaughtLibrary,
) -> None:
    bl.hang = True  # as `rshub peer --behaviour hang` builds it; nothing answers
    await bl.start()
    # An answer that never comes can only be waited for: the sender's time-out is the hub's.
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await _order(bl, "order-loan.eml", timeout=1)
    heard = await bl.next(5)
    assert heard.event is Event.REQUEST  # taken (and printed) ...
    assert bl.appended.empty()  # ... never answered


async def test_a_mail_that_is_no_order_is_refused_at_smtp(bl: CaughtLibrary) -> None:
    await bl.start()
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await _order(bl, "report-due.eml")
    assert refused.value.code == 550 and bl.received.empty()


async def test_with_its_own_mailbox_the_british_library_puts_its_reports_there() -> None:
    from connectors.mail.simulator import Mailbox

    settings = MailSettings(smtp_port=free_port(), imap_port=free_port())
    mailbox = Mailbox("hub-bl", "pw", port=settings.imap_port)
    library = MailLibrary(
        "BL", "BL", "bldss@bl.uk", "hub-bl@localhost", settings, "hub-bl", "pw", mailbox=mailbox
    )
    await library.start()
    try:
        await _order(library, "order-copy.eml")
        listening = asyncio.create_task(Peer(library, "lend", 0).listen())
        arrival = mailbox.arrival
        await asyncio.wait_for(arrival.wait(), 10)
        listening.cancel()
    finally:
        await library.stop()
    (report,) = mailbox.folders["INBOX"].mails.values()
    message = CODEC.decode(report, "BL", Limits()).message
    assert (message.event, message.request_id) == (Event.COPY_COMPLETED, "t0123456789abcdef.1")
