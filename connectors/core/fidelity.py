"""What a request says, field by field, and how a field a protocol cannot carry is written
into its free-text note so that a person at the lender reads it.

Pure data and formatting: no codec is imported here. Each codec declares the canonical
fields its protocol carries (`CARRIES` in its tables); `note_for` turns the rest of a request
into one readable line ("Vol. 84, no. 3, pp. 301-329; DOI 10.1000/xyz") appended to the note.
`docs/translation.md` is generated from the same tables (see tests/test_fidelity_doc.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.core.model import Message, Money, RequestFormat, ServiceType

# Parts of the citation a lender reads as one phrase, in the order it is written.
CITATION: tuple[tuple[str, str], ...] = (
    ("bibliographic.volume", "Vol. {}"),
    ("bibliographic.issue", "no. {}"),
    ("bibliographic.part", "pt. {}"),
    ("bibliographic.chapter", "ch. {}"),
    ("bibliographic.pages_requested", "pp. {}"),
)


def _money(value: Money) -> str:
    if value.currency:
        return f"{value.amount:f} {value.currency}"
    return f"{value.amount:f} (currency not given)"


def _day(value: datetime) -> str:
    return value.date().isoformat()


@dataclass(frozen=True)
class Field:
    """One canonical field of a request: its path, what a person calls it, how it reads."""

    path: str
    label: str
    template: str = "{label}: {value}"
    show: Callable[[Any], str] = str

    def value_of(self, message: Message) -> Any:
        value: Any = message
        for part in self.path.split("."):
            value = getattr(value, part, None) if value is not None else None
        if self.path == "patron_name":
            return message.patron_full_name
        return value if value not in (None, "") else None

    def render(self, value: Any) -> str:
        return self.template.format(label=self.label, value=self.show(value))


_B = "bibliographic."
# Every field of a request a lender may need, in the order a note lists them. The citation
# parts (CITATION) are written together, first. `patron_name` stands for the name however it
# came (whole, or surname and given name).
REQUEST_FIELDS: tuple[Field, ...] = (
    Field(_B + "title", "Title"),
    Field(_B + "subtitle", "Subtitle"),
    Field(_B + "author", "Author"),
    Field(_B + "title_of_component", "Article/chapter"),
    Field(_B + "author_of_component", "Article/chapter author"),
    Field(_B + "edition", "Edition"),
    Field(_B + "series_title_number", "Series"),
    *(Field(path, path.split(".")[1].replace("_", " "), template) for path, template in CITATION),
    Field(_B + "pagination", "Extent"),
    Field(_B + "publisher", "Publisher"),
    Field(_B + "place_of_publication", "Place"),
    Field(_B + "publication_date", "Date"),
    Field(_B + "publication_date_of_component", "Article date"),
    Field(_B + "bibliographic_level", "Level"),
    Field(_B + "medium_type", "Medium"),
    Field(_B + "isbn", "ISBN", "ISBN {value}"),
    Field(_B + "issn", "ISSN", "ISSN {value}"),
    Field(_B + "eissn", "eISSN", "eISSN {value}"),
    Field(_B + "oclc_number", "OCLC", "OCLC {value}"),
    Field(_B + "lccn", "LCCN", "LCCN {value}"),
    Field(_B + "doi", "DOI", "DOI {value}"),
    Field(_B + "pmid", "PMID", "PMID {value}"),
    Field(_B + "ean", "EAN", "EAN {value}"),
    Field(_B + "local_id", "Supplier record id"),
    Field(_B + "call_number", "Call number"),
    Field("patron_id", "Patron id"),
    Field("patron_name", "Patron"),
    Field("patron_email", "Patron e-mail"),
    Field("delivery_address", "Deliver to"),
    Field("delivery_email", "Deliver electronically to"),
    Field("pickup_location", "Pickup at"),
    Field("service_type", "Service", show=lambda v: v.value),
    Field("request_format", "Format", show=lambda v: v.value),
    Field("loan_condition", "Loan condition"),
    Field("need_before", "Needed before", show=_day),
    Field("max_cost", "Maximum cost", show=_money),
    Field("note", "Note"),
)
FIELDS_BY_PATH: dict[str, Field] = {f.path: f for f in REQUEST_FIELDS}
# Fields a message says about the loan after the request (answers, shipping notices).
STEP_FIELDS: tuple[Field, ...] = (
    Field("cost", "Cost", show=_money),
    Field("loan_condition", "Loan condition"),
)
_CITATION_PATHS = frozenset(path for path, _ in CITATION)
# The format a service type implies: a note names the format only when it differs (a copy
# delivered digitally).
_IMPLIED: dict[ServiceType | None, RequestFormat] = {
    ServiceType.LOAN: RequestFormat.PHYSICAL,
    ServiceType.COPY: RequestFormat.NON_RETURNABLE,
}
# Said in the note of a message that is no request only when the protocol lacks them.
SEPARATOR = "; "


def missing(message: Message, carried: Collection[str]) -> list[str]:
    """Readable pieces for each field the message has and the protocol does not carry."""
    fields = REQUEST_FIELDS if message.event.value == "Request" else STEP_FIELDS
    pieces: list[str] = []
    citation = [
        template.format(FIELDS_BY_PATH[path].value_of(message))
        for path, template in CITATION
        if path not in carried and FIELDS_BY_PATH[path].value_of(message) is not None
    ]
    if citation and fields is REQUEST_FIELDS:
        pieces.append(", ".join(citation))
    for field in fields:
        if field.path in _CITATION_PATHS or field.path == "note" or field.path in carried:
            continue
        if field.path == "request_format" and message.request_format is _IMPLIED.get(
            message.service_type
        ):
            continue  # a loan is physical, a copy kept: said by the service type already
        value = field.value_of(message)
        if value is not None:
            pieces.append(field.render(value))
    return pieces


def note_for(message: Message, carried: Collection[str], limit: int | None = None) -> str | None:
    """The note a protocol writes: the message's own note, then what it cannot carry
    otherwise. `limit`: the longest note the protocol takes; the partner's own words come
    first, so a cut loses the least wanted (the added pieces' tail)."""
    pieces = ([message.note] if message.note else []) + missing(message, carried)
    text = SEPARATOR.join(pieces) or None
    if text is not None and limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
