"""The OpenURL codec: KEV -> canonical request (inbound), canonical request -> a partner's
OpenURL (outbound). Sans-IO.

Inbound, the bytes are a query string: a borrower's link as it came, plus the keys the intake
adds once it has authenticated the borrower and verified the patron (`rshub.*`, see
`keys.HUB_PREFIX`). Outbound, `render` writes the whole link (base address and query) in the
partner's dialect; its `Sender` sends it or records it for staff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError

from connectors.core.contract import Answer, Attempt, Decoded, Fault, Limits, Outgoing, Refusal
from connectors.core.model import (
    Event,
    Message,
    NotApplicable,
    RenderError,
    RequestFormat,
    ServiceType,
    shown,
    violation,
)
from connectors.openurl.citation import Citation, bibliographic, citation, openurl_extension
from connectors.openurl.kev import ContextObject, KevError, clean_text, context, pairs
from connectors.openurl.keys import SERVICE_WORDS
from connectors.openurl.options import OpenUrlCorrelation, OpenUrlOptions

PROTOCOL = "openurl"
JSON = "application/json; charset=utf-8"

# HTTP status of each failure (OpenURL has no error vocabulary of its own; HTTP's is it).
STATUS: dict[Fault, int] = {
    Fault.SYNTAX: 400,
    Fault.TOO_LARGE: 413,
    Fault.UNKNOWN_PARTNER: 404,
    Fault.UNAUTHENTICATED: 401,
    Fault.UNKNOWN_REQUEST: 404,
    Fault.STATE: 409,
    Fault.UNAVAILABLE: 503,
}
# Private data kept with the request for staff: bounded, it is the referrer's, not ours.
PRIVATE_KEYS, PRIVATE_CHARS = 40, 1_000


@dataclass
class Parsed:
    """An OpenURL read: its context object and the citation in it."""

    context: ContextObject
    citation: Citation


def parse(body: bytes, max_pairs: int = 500) -> Parsed:
    """Any bytes: the context object and citation, or `KevError` (too many pairs). Missing
    data is not an error here: the intake asks for it in the form."""
    co = context(pairs(body, max_pairs))
    return Parsed(co, citation(co))


def need_before(text: str) -> datetime | None:
    """A YYYY-MM-DD date as the end of that day (UTC); ValueError if it is not one."""
    if not text:
        return None
    return datetime.combine(date.fromisoformat(text.strip()), time(23, 59, 59), UTC)


def _private(co: ContextObject) -> dict[str, str]:
    kept = list(co.private.items())[:PRIVATE_KEYS]
    return {key: values[0][:PRIVATE_CHARS] for key, values in kept if values and values[0]}


def to_message(parsed: Parsed, sender: str) -> Message:
    """The canonical request; ValueError (pydantic's, naming the field) if a value breaks the
    model's bounds."""
    co, cite = parsed.context, parsed.citation
    service, request_format, _type = cite.kind()
    chosen = SERVICE_WORDS.get(co.hub.get("service", "").strip().lower())
    if chosen is not None and chosen is not service:  # the patron chose in the form
        service = chosen
        copy = chosen is ServiceType.COPY
        request_format = RequestFormat.DIGITAL if copy else RequestFormat.PHYSICAL
    extension: dict[str, object] = {"version": co.version, **openurl_extension(cite)}
    if co.referrer:
        extension["referrer"] = clean_text(co.referrer)[:PRIVATE_CHARS]
    private = _private(co)
    if private:
        extension["private"] = private
    request_id = co.hub.get("request_id", "")
    return Message(
        event=Event.REQUEST,
        sender=sender,
        request_id=request_id,
        source_protocol=PROTOCOL,
        patron_id=co.hub.get("patron") or None,
        delivery_email=co.hub.get("email") or None,
        service_type=service,
        request_format=request_format,
        bibliographic=bibliographic(cite),
        # The hub's form key, else the 1.0 service key rshub writes to lenders (svc.neededby).
        need_before=need_before(
            co.hub.get("need_before", "") or next(iter(co.service.get("svc.neededby", [])), "")
        ),
        pickup_location=clean_text(co.hub.get("pickup", "")) or None,
        note=co.hub.get("note", "").strip() or None,
        correlation=OpenUrlCorrelation(
            request_id=request_id, referrer=clean_text(co.referrer)[:256]
        ),
        extensions={PROTOCOL: extension},
    )


# Canonical fields of a request an OpenURL 1.0 link carries (0.1 lacks e-ISSN, LCCN, series
# and part). An OpenURL has no free-text key for a lender: what is not here cannot reach it.
CARRIES: frozenset[str] = frozenset(
    {
        *(
            f"bibliographic.{field}"
            for field in (
                "title",
                "title_of_component",
                "author",
                "author_of_component",
                "publication_date",
                "volume",
                "issue",
                "part",
                "pages_requested",
                "edition",
                "publisher",
                "place_of_publication",
                "series_title_number",
                "isbn",
                "issn",
                "eissn",
                "doi",
                "pmid",
                "oclc_number",
                "lccn",
            )
        ),
        "need_before",
    }
)


def carried(message: Message) -> frozenset[str]:
    """What a link carries of this request: OpenURL has one author key (rft.au), the
    component's author when the request names a component, so the item's author is then not
    carried (a lender has no note to read it in)."""
    bib = message.bibliographic
    if bib is not None and bib.title_of_component:
        return CARRIES - {"bibliographic.author"}
    return CARRIES


def _query(items: list[tuple[str, str]]) -> str:
    return urlencode([(k, v) for k, v in items if v], quote_via=quote)


class OpenUrlCodec:
    protocol = PROTOCOL
    content_type = "application/x-www-form-urlencoded"
    events_in = frozenset({Event.REQUEST})
    events_out = frozenset({Event.REQUEST})
    # An OpenURL carries a request and nothing after it: the patron follows the request on
    # its status page; a lender reached by OpenURL is followed up by staff.
    not_applicable = frozenset(set(Event) - {Event.REQUEST})

    def __init__(self, max_pairs: int = 500) -> None:
        self.max_pairs = max_pairs

    # --- inbound ---
    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Parsed]:
        limit = limits.max_body_bytes
        if len(body) > limit:
            detail = f"OpenURL of {len(body)} bytes exceeds the limit of {limit} bytes"
            raise Refusal(detail, self.fault(Fault.TOO_LARGE, detail))
        try:
            parsed = parse(body, self.max_pairs)
        except KevError as error:
            fault = Fault.TOO_LARGE if error.too_large else Fault.SYNTAX
            raise Refusal(str(error), self.fault(fault, str(error))) from None
        if not parsed.citation.complete:
            detail = "the OpenURL has no title and no valid identifier"
            if parsed.citation.rejected:
                detail += f" ({'; '.join(parsed.citation.rejected[:3])})"
            raise Refusal(detail, self.fault(Fault.SYNTAX, detail))
        try:
            message = to_message(parsed, sender)
        except ValidationError as error:
            found = violation(error)
            detail = f"{found.field}: {found.reason}"
            raise Refusal(detail, self.fault(Fault.SYNTAX, detail)) from None
        except ValueError as error:  # a need-before date that is not one
            detail = f"need_before: {shown(str(error))}"
            raise Refusal(detail, self.fault(Fault.SYNTAX, detail)) from None
        return Decoded(message, parsed)

    def accept(self, decoded: Decoded[Parsed], state: str | None = None) -> Answer:
        body = {
            "status": "accepted",
            "request_id": decoded.message.request_id,
            "state": state,
        }
        return Answer(json.dumps(body).encode(), JSON, 201)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Parsed] | None = None,
        state: str | None = None,
    ) -> Answer:
        body = {"status": "refused", "fault": fault.value, "detail": detail, "state": state}
        return Answer(json.dumps(body).encode(), JSON, STATUS[fault])

    # --- outbound ---
    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event is not Event.REQUEST:
            raise NotApplicable(f"OpenURL carries requests only, not {message.event.value}")
        options = OpenUrlOptions.model_validate(outgoing.recipient.options)
        base = options.base_url or outgoing.recipient.endpoint
        if not base:
            raise RenderError(f"{outgoing.recipient.symbol} has no OpenURL base address")
        bib = message.bibliographic
        if bib is None or not (bib.title or bib.title_of_component or bib.identified):
            raise RenderError("the request has no title and no identifier")
        extension = message.extensions.get(PROTOCOL, {})
        items = list(options.resolved_extra(_genre(message)[1]).items())
        if options.resolved_version() == "0.1":
            items += _keys_01(message, extension, options)
        else:
            items += _keys_10(message, extension, options)
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}{_query(items)}".encode()

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None  # `rshub decode` shows partners' messages; answers read as refusals

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        if status is None:
            return Attempt(False, True, "no answer from the partner")
        if 200 <= status < 400:
            return Attempt(True, False, f"HTTP {status}", body)
        retry = status in (408, 425, 429) or status >= 500
        return Attempt(False, retry, f"HTTP {status}", body)


def _genre(message: Message) -> tuple[str, str]:
    """(1.0 format, genre) of a canonical request."""
    bib = message.bibliographic
    level = (bib.bibliographic_level if bib else None) or ""
    if message.service_type is ServiceType.COPY or level == "Article":
        if level == "Chapter":
            return "book", "bookitem"
        return "journal", "article"
    return "book", "book"


def _text(extension: object, key: str) -> str:
    return str(extension.get(key, "")) if isinstance(extension, dict) else ""


def _keys_10(message: Message, extension: object, options: OpenUrlOptions) -> list[tuple[str, str]]:
    bib = message.bibliographic
    assert bib is not None
    fmt, genre = _genre(message)
    whole = "rft.jtitle" if fmt == "journal" else "rft.btitle"
    items = [
        ("url_ver", "Z39.88-2004"),
        ("ctx_ver", "Z39.88-2004"),
        ("ctx_enc", "info:ofi/enc:UTF-8"),
        ("ctx_id", message.request_id),
        ("rfr_id", options.rfr_id),
        ("rft_val_fmt", f"info:ofi/fmt:kev:mtx:{fmt}"),
        ("rft.genre", genre),
        (whole, bib.title or ""),
        ("rft.title", bib.title or ""),
        ("rft.atitle", bib.title_of_component or ""),
        ("rft.au", bib.author_of_component or bib.author or ""),
        ("rft.date", bib.publication_date or ""),
        ("rft.volume", bib.volume or ""),
        ("rft.issue", bib.issue or ""),
        ("rft.spage", _page_range(bib.pages_requested or "")[0]),
        ("rft.epage", _page_range(bib.pages_requested or "")[1]),
        ("rft.pages", bib.pages_requested or ""),
        ("rft.part", bib.part or ""),  # a journal key; written for books as volume is
        ("rft.series", bib.series_title_number or ""),
        ("rft.edition", bib.edition or ""),
        ("rft.pub", bib.publisher or ""),
        ("rft.place", bib.place_of_publication or ""),
        ("rft.isbn", bib.isbn or ""),
        ("rft.issn", bib.issn or ""),
        ("rft.eissn", bib.eissn or ""),
    ]
    ids = [
        ("info:doi/", bib.doi or ""),
        ("info:pmid/", bib.pmid or _text(extension, "pmid")),
        ("info:oclcnum/", bib.oclc_number or ""),
        ("info:lccn/", bib.lccn or ""),
        ("urn:ISBN:", bib.isbn or ""),
        ("urn:ISSN:", bib.issn or ""),
    ]
    items += [("rft_id", prefix + value) for prefix, value in ids if value]
    if message.need_before:
        items.append(("svc.neededby", message.need_before.date().isoformat()))
    return items


# Between the authors of a canonical author field ("Jacob, G; Smith, J"): ISO 18626 and the
# catalogues write several authors in one field, OpenURL's aulast/aufirst name one person.
AUTHOR_SEPARATOR = ";"


def _first_author(author: str) -> tuple[str, str]:
    """(last name, first names) of the first of several authors."""
    first_person = author.split(AUTHOR_SEPARATOR)[0]
    last, _, given = first_person.partition(",")
    return last.strip(), given.strip()


def _page_range(pages: str) -> tuple[str, str]:
    """(start page, end page) of a simple range such as 611-614 (ILLiad and most resolvers
    read spage/epage, not pages); empty where the pages are not one range."""
    start, dash, end = pages.replace("\u2013", "-").partition("-")
    start, end = start.strip(), end.strip()
    if not start or " " in start or "," in start or (dash and (not end or " " in end)):
        return "", ""
    return start, end


def _keys_01(message: Message, extension: object, options: OpenUrlOptions) -> list[tuple[str, str]]:
    bib = message.bibliographic
    assert bib is not None
    _fmt, genre = _genre(message)
    author = bib.author_of_component or bib.author or ""
    last, first = _first_author(author)
    spage, epage = _page_range(bib.pages_requested or "")
    items = [
        ("sid", options.rfr_id.removeprefix("info:sid/")),
        ("genre", genre),
        ("title", bib.title or ""),
        ("atitle", bib.title_of_component or ""),
        ("aulast", last),
        ("aufirst", first),
        # Every author where there are several: aulast/aufirst name only the first.
        ("au", author if AUTHOR_SEPARATOR in author else ""),
        ("date", bib.publication_date or ""),
        ("volume", bib.volume or ""),
        ("issue", bib.issue or ""),
        ("spage", spage),
        ("epage", epage),
        ("pages", bib.pages_requested or ""),
        ("issn", bib.issn or ""),
        ("isbn", bib.isbn or ""),
        ("pub", bib.publisher or ""),
        ("place", bib.place_of_publication or ""),
        ("edition", bib.edition or ""),
    ]
    if bib.doi:
        items.append(("id", f"doi:{bib.doi}"))
    pmid = bib.pmid or _text(extension, "pmid")
    if pmid:
        items.append(("id", f"pmid:{pmid}"))
    if bib.oclc_number:
        items.append(("rfe_dat", f"<accessionnumber>{bib.oclc_number}</accessionnumber>"))
    items.append(("pid", message.request_id))
    return items


CODEC = OpenUrlCodec()
