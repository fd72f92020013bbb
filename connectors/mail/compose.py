"""Composing outgoing mail (sans-IO): the same step always makes the same bytes.

The Message-ID is derived from the transaction and the step, and the Date from the step's
timestamp, so a mail re-sent after a crash is the same mail: the partner (or its MTA) can
recognise the duplicate, and the hub's audit shows one mail, not two.
"""

from __future__ import annotations

import email
import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, parseaddr


def message_id(transaction: str, step: str, domain: str) -> str:
    digest = hashlib.blake2b(f"{transaction}\x00{step}".encode(), digest_size=12).hexdigest()
    return f"<rshub.{digest}@{domain}>"


def compose(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    mid: str,
    date: datetime,
    reply_to: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A plain-text mail as RFC 5322 bytes (CRLF line ends). ASCII bodies go 7bit, others
    as UTF-8 8bit (every current MTA has 8BITMIME; quoted-printable would break the fixed
    line layouts partners' parsers read)."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["To"] = to
    if reply_to:
        mail["Reply-To"] = reply_to
    mail["Subject"] = subject
    mail["Date"] = format_datetime(date)
    mail["Message-ID"] = mid
    for name, value in (extra or {}).items():
        mail[name] = value
    ascii_only = text.isascii()
    mail.set_content(
        text,
        subtype="plain",
        charset="us-ascii" if ascii_only else "utf-8",
        cte="7bit" if ascii_only else "8bit",
    )
    return mail.as_bytes()


def envelope(raw: bytes) -> tuple[str, list[str]]:
    """The SMTP envelope of a composed mail: its From and its To/Cc addresses."""
    mail = email.message_from_bytes(raw)
    sender = parseaddr(str(mail.get("From", "")))[1]
    recipients = [
        address
        for _, address in getaddresses([str(v) for k in ("To", "Cc") for v in mail.get_all(k, [])])
        if address
    ]
    return sender, recipients
