"""ILLiad e-mail import (sans-IO): one field per line, `<marker> <value>`, in the order of the
partner's markers, then the OpenURL link for staff. ILLiad's later circulation reaches the hub
through NCIP, so this codec only writes requests; nothing comes back by mail."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from connectors.core import fidelity
from connectors.core.contract import Answer, Attempt, Decoded, Fault, Limits, Outgoing, Refusal
from connectors.core.model import Event, Message, NotApplicable, RenderError, ServiceType
from connectors.illiad_email.options import DEFAULT_MARKERS, IlliadEmailOptions
from connectors.mail.channel import TEXT, fault_answer, partner_address
from connectors.mail.compose import compose, message_id

PROTOCOL = "illiad-email"


# ILLiad Transactions field -> canonical field (dotted), per request type. ISSN holds the ISBN
# of a book (ILLiad has one field for both).
COMMON_FIELDS: dict[str, str] = {
    "Username": "patron_id",
    "ILLNumber": "request_id",
    "ESPNumber": "bibliographic.oclc_number",
    "CallNumber": "bibliographic.call_number",
}
COPY_FIELDS: dict[str, str] = {
    "PhotoJournalTitle": "bibliographic.title",
    "PhotoArticleTitle": "bibliographic.title_of_component",
    "PhotoArticleAuthor": "bibliographic.author_of_component",
    "PhotoJournalVolume": "bibliographic.volume",
    "PhotoJournalIssue": "bibliographic.issue",
    "PhotoJournalYear": "bibliographic.publication_date",
    "PhotoJournalInclusivePages": "bibliographic.pages_requested",
    "PhotoItemPublisher": "bibliographic.publisher",
    "PhotoItemPlace": "bibliographic.place_of_publication",
    "PhotoItemEdition": "bibliographic.edition",
}
LOAN_FIELDS: dict[str, str] = {
    "LoanTitle": "bibliographic.title",
    "LoanAuthor": "bibliographic.author",
    "LoanPublisher": "bibliographic.publisher",
    "LoanPlace": "bibliographic.place_of_publication",
    "LoanDate": "bibliographic.publication_date",
    "LoanEdition": "bibliographic.edition",
}
# Written whatever the markers: the request's kind and the standard number.
FIXED = ("RequestType", "DocumentType", "ISSN", "NotWantedAfter", "Notes")


def _value(message: Message, path: str) -> str | None:
    value: object = message
    for part in path.split("."):
        value = getattr(value, part, None) if value is not None else None
    return value if isinstance(value, str) and value else None


def carried(message: Message, markers: Collection[str]) -> frozenset[str]:
    """The canonical fields this request's ILLiad fields carry, given the partner's markers
    (a field without a marker is not imported, so it goes into Notes)."""
    copy = message.service_type is ServiceType.COPY
    table = {**COMMON_FIELDS, **(COPY_FIELDS if copy else LOAN_FIELDS)}
    out = {path for name, path in table.items() if name in markers}
    if "NotWantedAfter" in markers:
        out.add("need_before")
    if "ISSN" in markers:
        bib = message.bibliographic
        out.add("bibliographic.issn" if bib is None or bib.issn else "bibliographic.isbn")
    return frozenset(out | {"service_type", "request_format", "note"})


def fields(message: Message, markers: Collection[str] | None = None) -> dict[str, str]:
    """ILLiad field -> value, for the fields this request has; what the partner's markers
    leave out is said in Notes."""
    bib = message.bibliographic
    copy = message.service_type is ServiceType.COPY
    table = {**COMMON_FIELDS, **(COPY_FIELDS if copy else LOAN_FIELDS)}
    names = set(DEFAULT_MARKERS.values()) if markers is None else set(markers)
    values: dict[str, str | None] = {name: _value(message, path) for name, path in table.items()}
    if copy and bib is not None and not bib.author_of_component:
        values["PhotoArticleAuthor"] = bib.author
    values |= {
        "RequestType": "Article" if copy else "Loan",
        "DocumentType": "Article" if copy else "Book",
        "NotWantedAfter": message.need_before.date().isoformat() if message.need_before else None,
        "ISSN": (bib.issn or bib.isbn) if bib is not None else None,
        "Notes": fidelity.note_for(message, carried(message, names)),
    }
    return {k: " ".join(v.split()) for k, v in values.items() if v}


def openurl(base: str, message: Message) -> str:
    bib = message.bibliographic
    copy = message.service_type is ServiceType.COPY
    keys: list[tuple[str, str | None]] = [
        ("Action", "10"),
        ("Form", "22" if copy else "30"),
        ("rft.genre", "article" if copy else "book"),
        ("rft.title", bib.title if bib else None),
        ("rft.atitle", bib.title_of_component if bib else None),
        ("rft.au", (bib.author_of_component or bib.author) if bib else None),
        ("rft.date", bib.publication_date if bib else None),
        ("rft.pub", bib.publisher if bib else None),
        ("rft.place", bib.place_of_publication if bib else None),
        ("rft.isbn", bib.isbn if bib else None),
        ("rft.issn", bib.issn if bib else None),
        ("rft.volume", bib.volume if bib else None),
        ("rft.issue", bib.issue if bib else None),
        ("rft.pages", bib.pages_requested if bib else None),
        ("rft_id", f"info:doi/{bib.doi}" if bib and bib.doi else None),
        ("rft.pmid", bib.pmid if bib else None),
        ("rfe_dat", bib.oclc_number if bib else None),
        ("rfr_id", "info:sid/rshub"),
    ]
    return f"{base}?{urlencode([(k, v) for k, v in keys if v])}"


def body(message: Message, options: IlliadEmailOptions) -> str:
    values = fields(message, options.markers.values())
    if "Username" not in values:
        raise RenderError("ILLiad needs a Username: the request has no patron id")
    lines = [
        f"{marker} {values[field]}" for marker, field in options.markers.items() if field in values
    ]
    if options.openurl_base:
        lines += ["", "OpenURL:", openurl(options.openurl_base, message)]
    return "\n".join(lines) + "\n"


class IlliadEmailCodec:
    protocol = PROTOCOL
    content_type = "message/rfc822"
    events_in: frozenset[Event] = frozenset()
    events_out = frozenset({Event.REQUEST})
    # ILLiad's own circulation reaches the hub over NCIP; by mail only the request goes.
    not_applicable = frozenset(Event) - events_out

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Any]:
        detail = "ILLiad sends nothing by mail (its circulation comes over NCIP)"
        raise Refusal(detail, fault_answer(Fault.SYNTAX, detail))

    def accept(self, decoded: Decoded[Any], state: str | None = None) -> Answer:
        return Answer(b"", TEXT)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Any] | None = None,
        state: str | None = None,
    ) -> Answer:
        return fault_answer(fault, detail)

    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event is not Event.REQUEST:
            raise NotApplicable(f"ILLiad's mail import takes no {message.event}")
        try:
            options = IlliadEmailOptions.model_validate(outgoing.recipient.options)
        except ValidationError as error:
            raise RenderError(f"options: {error.errors()[0]['msg']}") from None
        address = partner_address(outgoing.recipient, options)
        if not address:
            raise RenderError("the partner has no mail address (options.address or mailto:)")
        sender = options.reply_to or "rshub@localhost"
        title = message.bibliographic.title if message.bibliographic else ""
        return compose(
            sender=sender,
            to=address,
            subject=f"ILL request {message.request_id}: {(title or '')[:80]}",
            text=body(message, options),
            mid=message_id(
                message.transaction_id or message.request_id,
                f"{message.event}:{message.request_id}",
                sender.rsplit("@", 1)[-1],
            ),
            date=message.timestamp,
        )

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None  # a mail is a message; `rshub decode` shows it as one

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        return Attempt(True, False, "accepted by the SMTP server")


CODEC = IlliadEmailCodec()
