"""Property tests per codec (issue 24): canonical -> protocol -> canonical keeps every field
the protocol carries (its `CARRIES` table), with non-Latin text; a field it does not carry
reaches the protocol's note, readably, where the protocol has one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.core import fidelity
from connectors.core.contract import Limits, Outgoing
from connectors.core.directory import Partner
from connectors.core.model import Bibliographic, Event, Message, Money, ServiceType
from connectors.iso10161 import codec as ill_codec
from connectors.iso10161 import mapping
from connectors.iso18626 import codec as iso_codec
from connectors.iso18626 import tables as iso_tables
from connectors.iso18626 import writer as iso_writer
from connectors.ncip import codec as ncip_codec
from connectors.ncip import tables as ncip_tables
from connectors.ncip import writer as ncip_writer
from connectors.openurl import codec as openurl
from connectors.slnp import vocabulary
from connectors.slnp.codec import SlnpCodec

# Words in Latin, Polish, Czech, Greek, Cyrillic and CJK letters and digits: what readers
# trim (outer spaces) and what some formats use as separators (",", ";") are left out, since
# no real title is only those.
ALPHABET = st.sampled_from(list("abcXYZ019łżźćęąšřčěůΩπλжЯ漢字書"))
WORD = st.text(ALPHABET, min_size=1, max_size=8)
TEXT = st.lists(WORD, min_size=1, max_size=4).map(" ".join)
CODE = st.text(st.sampled_from(list("0123456789X")), min_size=4, max_size=13)
DAY = st.dates(min_value=datetime(2020, 1, 1).date(), max_value=datetime(2040, 1, 1).date()).map(
    lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC)
)
TEXT_FIELDS = (
    "title",
    "subtitle",
    "author",
    "title_of_component",
    "author_of_component",
    "edition",
    "pagination",
    "place_of_publication",
    "publication_date",
    "publication_date_of_component",
    "publisher",
    "series_title_number",
    "volume",
    "issue",
    "part",
    "chapter",
    "pages_requested",
    "call_number",
)
ID_FIELDS = ("isbn", "issn", "eissn", "oclc_number", "lccn", "doi", "pmid", "local_id", "ean")


@st.composite
def requests(draw: st.DrawFn) -> Message:
    bib: dict[str, Any] = {"title": draw(TEXT)}
    for name in (*TEXT_FIELDS[1:], *ID_FIELDS):
        if draw(st.booleans()):
            bib[name] = draw(CODE if name in ID_FIELDS else TEXT)
    if draw(st.booleans()):
        bib["bibliographic_level"] = draw(st.sampled_from(["Book", "Journal"]))
    if draw(st.booleans()):
        bib["medium_type"] = draw(st.sampled_from(["printed", "microform"]))
    fields: dict[str, Any] = {}
    for name, strategy in (
        ("patron_id", CODE),
        ("patron_name", TEXT),
        ("delivery_address", TEXT),
        ("delivery_email", st.just("ill@example.org")),
        ("pickup_location", TEXT),
        ("need_before", DAY),
        ("note", TEXT),
    ):
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    if draw(st.booleans()):
        cents = draw(st.integers(min_value=1, max_value=10**6))
        fields["max_cost"] = Money(amount=Decimal(cents).scaleb(-2), currency="EUR")
    return Message(
        event=Event.REQUEST,
        request_id="t0123456789abcdef.1",
        service_type=draw(st.sampled_from(list(ServiceType))),
        bibliographic=Bibliographic(**bib),
        **fields,
    )


def value(message: Message, path: str) -> Any:
    found = fidelity.FIELDS_BY_PATH[path].value_of(message)
    # A need-before date is a day (ISO 10161 and OpenURL write no time; OpenURL reads the
    # day's end): the day is what must arrive.
    return found.date() if isinstance(found, datetime) else found


def _ncip(message: Message) -> Message:
    return ncip_codec.decode(ncip_writer.encode(message, from_agency="A", to_agency="B"))


def _iso18626(version: str) -> Callable[[Message], Message]:
    def trip(message: Message) -> Message:
        body = iso_writer.encode(message, from_agency="A", to_agency="B", version=version)
        return iso_codec.to_canonical(iso_codec.parse(body))

    return trip


def _iso10161(message: Message) -> Message:
    return mapping.to_canonical(*ill_codec.decode(mapping.render(message, "A", "B")))


SLNP_LENDER = Partner(symbol="Z", name="Z", protocol="slnp", agency_ids=["456DEF"], lends=False)


def _slnp(message: Message) -> Message:
    codec = SlnpCodec()
    body = codec.render(Outgoing(message, "123ABC", SLNP_LENDER))
    return codec.decode(body, "Z", Limits(max_body_bytes=1 << 20)).message


OPENURL_LENDER = Partner(symbol="L", name="L", protocol="openurl", endpoint="https://l.example/")


def _openurl(message: Message) -> Message:
    url = openurl.CODEC.render(Outgoing(message, "HUB", OPENURL_LENDER))
    return openurl.to_message(openurl.parse(url.split(b"?", 1)[1]), "L")


# OpenURL checks identifiers (check digits, DOI prefix): valid ones stand for generated ones.
VALID_IDS = {
    "isbn": "9781611974492",
    "issn": "0025-6196",
    "eissn": "1942-5546",
    "doi": "10.4065/80.5.611",
    "pmid": "15887426",
    "oclc_number": "123456",
    "lccn": "n79021164",
}


def _openurl_request(message: Message) -> Message:
    bib = message.bibliographic
    assert bib is not None
    update: dict[str, Any] = {k: v for k, v in VALID_IDS.items() if getattr(bib, k)}
    # One author key (rft.au): the component's when there is a component, else the item's.
    update["author" if bib.title_of_component else "author_of_component"] = None
    return message.model_copy(update={"bibliographic": bib.model_copy(update=update)})


# protocol -> (round trip, fields it carries, whether it has a note, request adjustment)
CASES: dict[str, tuple[Callable[[Message], Message], frozenset[str], bool]] = {
    "ncip": (_ncip, ncip_tables.CARRIES, True),
    "iso18626-1.2": (_iso18626("1.2"), iso_tables.CARRIES, True),
    "iso18626-2021": (_iso18626("2021-2"), iso_tables.CARRIES_2021, True),
    "iso10161": (_iso10161, mapping.CARRIES, True),
    "slnp": (_slnp, vocabulary.CARRIES, True),
    "openurl": (_openurl, openurl.CARRIES, False),
}
# What a round trip cannot compare: the note (it gains the rest), the derived format.
NOT_COMPARED = frozenset({"note", "request_format"})


@pytest.mark.parametrize("protocol", sorted(CASES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=requests())
def test_canonical_protocol_canonical_keeps_what_the_protocol_carries(
    protocol: str, message: Message
) -> None:
    trip, carries, has_note = CASES[protocol]
    if protocol == "openurl":
        message = _openurl_request(message)
    back = trip(message)
    for path in sorted(carries - NOT_COMPARED):
        sent = value(message, path)
        if sent is not None:
            assert value(back, path) == sent, path
    if message.note and has_note:
        assert back.note is not None and back.note.startswith(message.note)
    if has_note:
        withheld = vocabulary.WITHHELD if protocol == "slnp" else frozenset()
        for piece in fidelity.missing(message, carries | withheld):
            assert back.note is not None and piece in back.note, piece
