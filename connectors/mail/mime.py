"""Reading a partner's mail within limits (sans-IO).

A mailbox receives whatever anyone sends: mails of any size, MIME bombs (thousands of parts,
parts nested hundreds deep), wrong or unknown charsets, HTML-only bodies. Each of these is a
`MailError` naming what is wrong, so the listener can file the mail under Failed with a dead
letter; nothing here raises anything else for any input.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr

from connectors.core.contract import Fault


@dataclass(frozen=True)
class MailLimits:
    """How much of a mail the hub is willing to read."""

    max_bytes: int = 2_000_000
    max_parts: int = 50
    max_depth: int = 5
    max_text_chars: int = 200_000


class MailError(ValueError):
    """A mail the hub will not read: the contract's fault and what was wrong, in words."""

    def __init__(self, fault: Fault, detail: str) -> None:
        super().__init__(detail)
        self.fault, self.detail = fault, detail


@dataclass(frozen=True)
class ParsedMail:
    subject: str
    senders: tuple[str, ...]  # From addresses, lower case
    message_id: str
    text: str  # the text/plain body, decoded
    headers: tuple[tuple[str, str], ...]


# Headers start a mail: a field name, a colon, on the first line.
_HEADER_START = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)


def looks_like_mail(raw: bytes) -> bool:
    """Whether `raw` is a whole mail (headers, blank line, body) rather than a plain body: the
    first line is a header field and a blank line follows the header block."""
    first = raw.lstrip(b"\r\n").split(b"\n", 1)[0]
    return bool(_HEADER_START.match(first)) and (b"\n\n" in raw or b"\r\n\r\n" in raw)


def _walk(part: Message, depth: int, limits: MailLimits, count: list[int]) -> list[Message]:
    """Leaf parts, depth first; MailError when there are too many or they nest too deep."""
    count[0] += 1
    if count[0] > limits.max_parts:
        raise MailError(Fault.TOO_LARGE, f"more than {limits.max_parts} MIME parts")
    if depth > limits.max_depth:
        raise MailError(Fault.SYNTAX, f"MIME parts nested deeper than {limits.max_depth}")
    if part.is_multipart():
        payload = part.get_payload()
        children = payload if isinstance(payload, list) else []
        return [
            leaf
            for child in children
            if isinstance(child, Message)
            for leaf in _walk(child, depth + 1, limits, count)
        ]
    return [part]


def _text_of(part: Message, limits: MailLimits) -> str:
    raw = part.get_payload(decode=True)
    data = raw if isinstance(raw, bytes) else b""
    declared = part.get_content_charset()
    charset = declared or "utf-8"  # undeclared: ASCII is a subset of UTF-8
    try:
        text = data.decode(charset)
    except LookupError:
        raise MailError(Fault.SYNTAX, f"unknown charset {declared!r}") from None
    except UnicodeDecodeError as error:
        raise MailError(
            Fault.SYNTAX, f"body is not valid {charset} (byte {error.start} of the text part)"
        ) from None
    if len(text) > limits.max_text_chars:
        raise MailError(Fault.TOO_LARGE, f"text body over {limits.max_text_chars} characters")
    return text.replace("\r\n", "\n")


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def parse_mail(raw: bytes, limits: MailLimits | None = None) -> ParsedMail:
    """A whole mail (RFC 5322 bytes) read within `limits`, or MailError."""
    limits = limits or MailLimits()
    if len(raw) > limits.max_bytes:
        raise MailError(Fault.TOO_LARGE, f"mail of {len(raw)} bytes, over {limits.max_bytes}")
    # Each multipart declares a boundary: counting them first keeps a MIME bomb from ever
    # reaching the parser (whose nesting is recursive).
    if len(_BOUNDARY.findall(raw)) > limits.max_parts:
        raise MailError(Fault.TOO_LARGE, f"more than {limits.max_parts} multipart boundaries")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        leaves = _walk(message, 0, limits, [0])
        plain = [
            p for p in leaves if p.get_content_type() == "text/plain" and not _is_attachment(p)
        ]
        if not plain:
            kinds = sorted({p.get_content_type() for p in leaves})
            if "text/html" in kinds:
                raise MailError(Fault.SYNTAX, "HTML-only mail: no text/plain part to read")
            raise MailError(Fault.SYNTAX, f"no text/plain part (parts: {', '.join(kinds)})")
        text = "\n".join(_text_of(p, limits) for p in plain)
        senders = tuple(
            address.lower()
            for _, address in getaddresses([str(v) for v in message.get_all("From", [])])
            if address
        )
        headers = tuple((k, " ".join(str(v).split())) for k, v in message.items())
        return ParsedMail(
            subject=_header(message, "Subject"),
            senders=senders,
            message_id=_header(message, "Message-ID"),
            text=text,
            headers=headers,
        )
    except MailError:
        raise
    except RecursionError:
        raise MailError(Fault.SYNTAX, "MIME structure nested too deep") from None
    except (ValueError, TypeError, LookupError, IndexError, AttributeError) as error:
        # The standard library's parser is lenient but its header classes raise these on
        # some malformed fields; whatever the cause, the mail cannot be read.
        raise MailError(Fault.SYNTAX, f"unreadable mail: {type(error).__name__}") from None


def _is_attachment(part: Message) -> bool:
    if isinstance(part, EmailMessage):
        return part.is_attachment()
    return "attachment" in str(part.get("Content-Disposition", "")).lower()


def address_of(value: str) -> str:
    """The bare address of `Name <a@b>` (lower case)."""
    return parseaddr(value)[1].lower()
