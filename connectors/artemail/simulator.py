"""A simulated British Library for `rshub peer`, the demo and the tests: it takes the hub's
ARTEmail orders and answers with BLDSS status reports, by mail, with no mail system of its own.

- Orders: it is the SMTP server the hub's ARTEmail connector submits to
  (`RSHUB_ARTEMAIL_SMTP_HOST`/`_PORT`, plain text: `RSHUB_ARTEMAIL_SMTP_TLS=none`); each mail
  is read by the ARTEmail codec into one Request per TX block, and never delivered further.
- Reports: it writes each into the mailbox the hub reads for the BL (the partner's
  `mailbox_user` on the connector's IMAP server, logged in with the same password the hub
  uses) by IMAP APPEND, as the BL's mail would arrive there. The hub then reads it as any BL
  reply; its From is the BL's address, so the partner needs `accept_unverified: true` (no MTA
  writes a DKIM verdict on a mail that never crossed one).

`report` writes the report mail of a canonical step (the reverse of connectors.artemail.codes:
DUE for a loan, SHIPPED COPY, NOT ..., RENEWED*/NO RENEW, NCANC, *FINAL DEMAND); the samples
in examples/samples/artemail are written by it and read back by the hub's codec.

It holds no state of its own but the queue of what it heard: a restarted BL has forgotten
nothing the hub relies on (the hub keeps the reference in every report's subject).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aioimaplib
from aiosmtpd.smtp import SMTP, AuthResult

from connectors.artemail.codec import CODEC
from connectors.core.contract import Limits, Refusal
from connectors.core.model import Event, Message, NotApplicable
from connectors.mail import listener
from connectors.mail.compose import compose
from connectors.mail.options import MailSettings, TlsMode
from connectors.mail.simulator import Mailbox

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope, Session

# aiosmtpd itself sets its deprecated Session.login_data on every successful AUTH and logs a
# warning about it: noise in `rshub peer`'s output, about code that is not ours.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage()
)

# Which BLDSS code a canonical step is written as. Unfilled is NOT unless its reason has a
# code of its own (the reason numbers of connectors.artemail.codes).
UNFILLED_CODES = {17: "CRF*CANNOT MATCH ITEM", 18: "NOT*NUKL", 23: "*INVALID ORDERING OPTIONS"}
# Plain English after the code, as the BL's reports carry it.
WORDS: dict[str, str] = {
    "DUE": "Loan despatched. Please return by the date shown.",
    "SHIPPED COPY": "Copy despatched.",
    "NOT": "Not available for supply.",
    "CANC": "Your request has been cancelled.",
    "NCANC": "Your request could not be cancelled: already despatched.",
    "RENEWED*": "Loan renewed to the date shown.",
    "NO RENEW": "Renewal refused: please return the loan.",
    "*FINAL DEMAND": "This loan is overdue. Please return it immediately.",
    "CAT*REAPPLY": "Item being catalogued. Please reapply after the weeks shown.",
    "*TOTAL LIBRARY MAX COST": "Supply exceeds your maximum cost.",
    "CRF*CANNOT MATCH ITEM": "We cannot match the item from the details given.",
    "NOT*NUKL": "Not available in UK libraries.",
    "*INVALID ORDERING OPTIONS": "The ordering options are not valid for this item.",
}


def _day(value: datetime | None) -> str:
    return value.strftime("%d-%m-%Y") if value else ""


def report_line(message: Message) -> str:
    """The coded line of a step's report (NotApplicable: the BL reports no such step)."""
    event = message.event
    if event is Event.LOANED:
        code, value = "DUE", _day(message.due_date)
    elif event is Event.COPY_COMPLETED:
        code, value = "SHIPPED COPY", ""
    elif event is Event.UNFILLED:
        number = message.reason.code if message.reason else None
        code, value = UNFILLED_CODES.get(number or 0, "NOT"), ""
    elif event is Event.CANCEL_REPLY:
        # A cancellation agreed is the BL cancelling the order (CANC); refused, NCANC.
        code, value = ("CANC" if message.answer else "NCANC"), ""
    elif event is Event.RENEW_ANSWER:
        yes = message.answer is not False
        code, value = ("RENEWED*", _day(message.due_date)) if yes else ("NO RENEW", "")
    elif event is Event.OVERDUE:
        code, value = "*FINAL DEMAND", ""
    elif event is Event.RETRY_POSSIBLE:
        code, value = "CAT*REAPPLY", "4 WEEKS"
    elif event is Event.CONDITIONAL:
        cost = message.cost.amount if message.cost else None
        code, value = "*TOTAL LIBRARY MAX COST", f"{cost} GBP" if cost is not None else ""
    elif event is Event.LENDER_NOTE:
        # No code: the hub keeps an uncoded report as the BL's note.
        return message.note or "Your request is being processed."
    else:
        raise NotApplicable(f"the British Library sends no {event.value} by ARTEmail")
    separator = "" if code.endswith("*") or not value else " "
    return f"{code}{separator}{value} {WORDS[code]}".replace("  ", " ")


def report(message: Message, sender: str, to: str, at: datetime | None = None) -> bytes:
    """The BLDSS status report mail of a step: our reference quoted back in the subject
    (FILEREFNO, as the BL does with the order's) and on the line before the code."""
    reference = message.request_id
    text = f"Your ref: TX{reference}\nBL order: {_bl_order(reference)}\n{report_line(message)}\n"
    when = at or message.timestamp
    return compose(
        sender=f"British Library Document Supply <{sender}>",
        to=to,
        subject=f"BLDSS status report FILEREFNO {reference}",
        text=text,
        mid=f"<bldss.{message.event.value.lower()}.{reference}@{sender.rsplit('@', 1)[-1]}>",
        date=when,
    )


def _bl_order(reference: str) -> str:
    """The BL's own order number for a reference (stable, so the samples do not change)."""
    return "W" + str(sum(ord(c) * (i + 1) for i, c in enumerate(reference)) % 10**8).zfill(8)


@dataclass
class MailLibrary:
    """The British Library as a running peer (see the module docstring)."""

    symbol: str
    agency_id: str
    address: str  # the BL's From
    hub_address: str  # the hub's address for the BL (To of the reports)
    settings: MailSettings  # the hub's ARTEmail connector settings: where to listen, deliver
    mailbox_user: str
    mailbox_password: str
    hang: bool = False
    protocol: str = "artemail"
    received: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    refused: list[str] = field(default_factory=list)  # orders the codec could not read
    # The hub's mailbox for the BL served by the BL itself (connectors/mail/simulator.py),
    # when no IMAP server holds it; None: the mailbox is on the connector's IMAP server.
    mailbox: Mailbox | None = None
    _server: asyncio.Server | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def endpoint(self) -> str:
        s = self.settings
        own = "its own " if self.mailbox is not None else ""
        return (
            f"smtp://{s.smtp_host}:{s.smtp_port} (orders), reports into {own}mailbox "
            f"{self.mailbox_user} at imap://{s.imap_host}:{s.imap_port}"
        )

    async def start(self) -> None:
        def factory() -> SMTP:
            return SMTP(
                self,
                hostname="bl.simulated",
                # The hub logs in when RSHUB_ARTEMAIL_SMTP_USER is set: any login will do.
                authenticator=lambda *_: AuthResult(success=True),
                auth_require_tls=False,
            )

        loop = asyncio.get_running_loop()
        if self.mailbox is not None:
            await self.mailbox.start()
        self._server = await loop.create_server(
            factory, self.settings.smtp_host, self.settings.smtp_port
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.mailbox is not None:
            await self.mailbox.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        body = envelope.original_content or b""
        try:
            decoded = CODEC.decode(body, "rshub", Limits())
        except Refusal as refusal:
            self.refused.append(refusal.reason)
            return f"550 5.6.0 not an ARTEmail order: {refusal.reason[:200]}"
        messages = (decoded.message, *decoded.more)
        if any(m.event is not Event.REQUEST for m in messages):
            # The codec reads the BL's own reports too; a BL is sent orders only.
            self.refused.append("a status report, not an order")
            return "550 5.6.0 not an ARTEmail order: a status report"
        for message in messages:
            self.received.put_nowait(message)
        if self.hang:
            # A hung BL: the mail is taken, the SMTP answer never comes; the hub's delivery
            # times out and is retried.
            await self._stopping.wait()
        return "250 2.0.0 order received"

    async def next(self, timeout: float = 60.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    def encode(self, message: Message, to_agency: str = "RSHUB") -> bytes:
        return report(message, self.address, self.hub_address)

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, Any]:
        return await self.post(self.encode(message, to_agency))

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Any]:
        from connectors.simulator import Answer

        if self.mailbox is not None:  # its own mailbox: delivered in place
            await self.mailbox.deliver(body, self.settings.inbox)
            return 200, Answer(True, [])
        s = self.settings
        if s.imap_tls is TlsMode.TLS:
            imap: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                s.imap_host, s.imap_port, timeout=s.timeout_s, ssl_context=listener.tls_context(s)
            )
        else:
            imap = aioimaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.timeout_s)
        try:
            await imap.wait_hello_from_server()
            if s.imap_tls is TlsMode.STARTTLS:
                # The hub's own STARTTLS (aioimaplib has none): the same server, the same way.
                await listener._starttls(imap, listener.tls_context(s), s.timeout_s)
            login = await imap.login(self.mailbox_user, self.mailbox_password)
            if login.result != "OK":
                return 200, Answer(False, [f"IMAP login {self.mailbox_user}: {login.result}"])
            appended = await imap.append(body, mailbox=s.inbox)
            if appended.result != "OK":
                return 200, Answer(False, [f"IMAP APPEND: {appended.result}"])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(imap.logout(), 5)
        # A mail has no verdict: "accepted" is "in the hub's mailbox".
        return 200, Answer(True, [])
