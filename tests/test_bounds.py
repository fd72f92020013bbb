"""Regression tests for the robustness issue, by item: the canonical model's bounds and each
protocol's error naming the element (1, 4, 5), DTDs refused in every encoding (6), keyed
transaction ids (8), IMPLICIT-tagged ISO 10161 APDUs (10), ISO 18626 requests without a title
(11), the due date of an NCIP RenewItemResponse (12)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from asn1tools.codecs.ber import encode_length_definite
from pydantic import ValidationError

from connectors import xmlsafe
from connectors.core.contract import Limits, Refusal
from connectors.core.model import (
    LIMITS,
    TXN_PATTERN,
    Bibliographic,
    Event,
    Message,
    Money,
    RenderError,
    id_key,
    lender_request_id,
    parse_lender_request_id,
    transaction_id,
)
from connectors.iso10161 import asn1, mapping
from connectors.iso10161 import codec as ill
from connectors.iso10161.transport import Iso10161Codec
from connectors.iso18626 import codec as iso
from connectors.iso18626 import writer as iso_writer
from connectors.iso18626.connector import Iso18626Codec
from connectors.ncip import codec as ncip
from connectors.ncip import writer as ncip_writer
from connectors.ncip.connector import NcipCodec
from tests.asn1_values import value_for

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards"
LIMIT = Limits(max_body_bytes=1_048_576)

NCIP_REQUEST = """<?xml version="1.0" encoding="UTF-8"?>
<NCIPMessage xmlns="http://www.niso.org/2008/ncip" version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd">
<RequestItem><InitiationHeader><FromAgencyId><AgencyId>01A||MAIN</AgencyId></FromAgencyId>
<ToAgencyId><AgencyId>01B||MAIN</AgencyId></ToAgencyId></InitiationHeader>
<UserId><UserIdentifierValue>p1</UserIdentifierValue></UserId>
<RequestId><RequestIdentifierValue>{rid}</RequestIdentifierValue></RequestId>
<RequestType>Physical</RequestType><RequestScopeType>Item</RequestScopeType>
<ItemOptionalFields><BibliographicDescription><Author>Eco, Umberto</Author>
<Title>{title}</Title><BibliographicLevel>Book</BibliographicLevel></BibliographicDescription>
</ItemOptionalFields>
<AcknowledgedFeeAmount><CurrencyCode>EUR</CurrencyCode><MonetaryValue>{fee}</MonetaryValue>
</AcknowledgedFeeAmount></RequestItem></NCIPMessage>"""


def ncip_request(rid: str = "R-1", title: str = "The Name of the Rose", fee: str = "500") -> bytes:
    return NCIP_REQUEST.format(rid=rid, title=title, fee=fee).encode()


def ncip_problem(body: bytes) -> ncip.Problem:
    with pytest.raises(Refusal) as caught:
        NcipCodec().decode(body, "A", LIMIT)
    problems = ncip.read_response(caught.value.answer.body).problems
    assert len(problems) == 1 and len(caught.value.answer.body) < 4_000
    return problems[0]


ISO_REQUEST = iso_writer.encode(
    Message(
        event=Event.REQUEST,
        request_id="R-1",
        bibliographic=Bibliographic(title="The Name of the Rose", author="Eco"),
    ),
    from_agency="ISIL:A",
    to_agency="ISIL:B",
).decode()


def iso_request(replace: tuple[str, str] | None = None) -> bytes:
    body = ISO_REQUEST
    if replace:
        assert replace[0] in body
        body = body.replace(*replace, 1)
    return body.encode()


def iso_error(body: bytes) -> iso.Confirmation:
    with pytest.raises(Refusal) as caught:
        Iso18626Codec().decode(body, "A", LIMIT)
    confirmation = iso.read_confirmation(caught.value.answer.body)
    assert not confirmation.ok and len(caught.value.answer.body) < 4_000
    return confirmation


def ill_request(**changes: object) -> dict:
    value = mapping.from_canonical(
        Message(
            event=Event.REQUEST,
            request_id="R-1",
            bibliographic=Bibliographic(title="T"),
        ),
        "A",
        "B",
    )[1]
    value.update(changes)
    return value


def ill_error(data: bytes) -> str:
    with pytest.raises(Refusal) as caught:
        Iso10161Codec().decode(data, "A", LIMIT)
    name, report = ill.decode(caught.value.answer.body)
    assert name == "Status-Or-Error-Report" and "error-report" in report
    return caught.value.reason


# -- 1. every field bounded at decode time, named in the protocol's error ------------------


def test_the_issues_small_messages_are_refused_naming_the_element() -> None:
    body = ncip_request(fee="1E400000")
    assert len(body) < 1_500
    problem = ncip_problem(body)
    assert (problem.type, problem.element) == (
        "Invalid Amount",
        "AcknowledgedFeeAmount.MonetaryValue",
    )

    cjk = "書" * 20_000
    assert len(cjk.encode()) >= 60_000
    confirmation = iso_error(
        iso_request(("<requestingAgencyRequestId>", f"<requestingAgencyRequestId>{cjk}"))
    )
    assert confirmation.error_type == "UnrecognisedDataValue"
    assert confirmation.error_value.startswith("header/requestingAgencyRequestId: ")

    title = iso_error(iso_request(("<title>", "<title>" + "x" * 150_000)))
    assert title.error_value.startswith("bibliographicInfo/title: ")

    value = ill_request()
    value["transaction-id"]["transaction-qualifier"] = ("generalstring", "q" * 100_000)
    reason = ill_error(ill.encode("ILL-Request", value))
    assert reason.startswith("transaction-id/transaction-qualifier: ") and len(reason) < 200


@pytest.mark.parametrize(
    "field,limit",
    [
        ("request_id", "id"),
        ("patron_id", "id"),
        ("note", "note"),
        ("delivery_address", "address"),
        ("pickup_location", "text"),
    ],
)
def test_each_bound_is_the_limit_of_its_table_entry(field: str, limit: str) -> None:
    Message(event=Event.REQUEST, **{field: "x" * LIMITS[limit]})
    with pytest.raises(ValidationError):
        Message(event=Event.REQUEST, **{field: "x" * (LIMITS[limit] + 1)})


def test_bibliographic_fields_and_amounts_are_bounded() -> None:
    Bibliographic(title="t" * LIMITS["title"], author="a" * LIMITS["text"])
    for fields in ({"title": "t" * (LIMITS["title"] + 1)}, {"isbn": "9" * (LIMITS["id"] + 1)}):
        with pytest.raises(ValidationError):
            Bibliographic(**fields)
    assert Money(amount="1E+3").amount == Decimal("1000")
    assert f"{Money(amount='1E+3').amount:f}" == "1000"
    for amount in ("NaN", "Infinity", "-1", "1E400000", "1.00001", "abc"):
        with pytest.raises(ValidationError):
            Money(amount=amount)


def test_repeated_elements_and_unknown_content_are_bounded() -> None:
    repeated = "<Foo>x</Foo>" * 50 + "".join(f"<F{i}>x</F{i}>" for i in range(600))
    body = ncip_request().replace(b"<RequestType>", f"<Ext>{repeated}</Ext><RequestType>".encode())
    problem = ncip_problem(body)
    assert (problem.type, problem.element) == ("Element Rule Violated", "Ext")
    assert "more than 500" in problem.detail
    unread = "<Foo>" + "x" * (LIMITS["extension_text"] + 1) + "</Foo>"
    body = ncip_request().replace(b"<RequestType>", f"{unread}<RequestType>".encode())
    assert ncip_problem(body).element == "Foo"
    iso = iso_error(iso_request(("</serviceInfo>", f"</serviceInfo>{unread}")))
    assert iso.error_value.startswith("Foo: longer than")


def test_characters_xml_cannot_carry_are_refused() -> None:
    value = ill_request(**{"requester-note": ("generalstring", "a\x01b")})
    assert "requester-note: character U+0001" in ill_error(ill.encode("ILL-Request", value))
    with pytest.raises(ValidationError):
        Message(event=Event.REQUEST, note="\ud800")


# -- 4 and 5. values that used to crash are refused at decode, writers raise only two errors --


@pytest.mark.parametrize("value", ["abc", "1e999999", "NaN", "1E400000", "-5"])
def test_iso18626_monetary_value_is_validated_at_decode(value: str) -> None:
    costs = (
        "<billingInfo><maximumCosts><currencyCode>USD</currencyCode>"
        f"<monetaryValue>{value}</monetaryValue></maximumCosts></billingInfo>"
    )
    body = iso_request(("</serviceInfo>", "</serviceInfo>" + costs))
    assert iso_error(body).error_value.startswith("billingInfo/maximumCosts/monetaryValue: ")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1E999999999", "1.5E3"])
def test_ncip_monetary_value_is_validated_at_decode(value: str) -> None:
    problem = ncip_problem(ncip_request(fee=value))
    assert (problem.type, problem.element) == (
        "Invalid Amount",
        "AcknowledgedFeeAmount.MonetaryValue",
    )


def test_ncip_item_note_that_isdigit_but_is_no_number_is_a_free_text_reason() -> None:
    body = ncip_writer.encode(
        Message(event=Event.UNFILLED, request_id="t0123456789abcdef.1", note="x"),
        from_agency="A",
        to_agency="B",
    ).replace(b"<ns1:NoticeContent>", b"<ns1:ItemNote>\xc2\xb2</ns1:ItemNote><ns1:NoticeContent>")
    message = ncip.decode(body)
    assert message.reason is not None
    assert (message.reason.code, message.reason.note) == (27, "²")
    assert ncip.decode(body.replace("²".encode(), b"0" * 3000)).reason.code == 27
    with pytest.raises(ncip.NcipError) as caught:  # int() refuses 4,300 digits and more
        ncip.decode(body.replace("²".encode(), b"0" * 5000))
    assert caught.value.problem.element == "Ext.ItemNote"


def test_writers_raise_render_error_for_what_they_cannot_carry() -> None:
    untitled = Message(event=Event.REQUEST, request_id="R", bibliographic=Bibliographic(isbn="1"))
    with pytest.raises(RenderError, match=r"BibliographicDescription\.Title"):
        ncip_writer.encode(untitled, from_agency="A", to_agency="B")
    # ISO 10161 carries what its Amount cannot hold in the note, and any text as UTF-8.
    costly = Message(event=Event.LOANED, request_id="R", cost=Money(amount="123456789.5"))
    assert b"Cost: 123456789.5" in mapping.render(costly, "A", "B")
    greek = Message(event=Event.REQUEST, request_id="R", bibliographic=Bibliographic(title="Ω"))
    assert "Ω".encode() in mapping.render(greek, "A", "B")
    with pytest.raises(RenderError):
        iso_writer.encode(untitled, from_agency="A", to_agency="B", version="3")


def test_amounts_are_written_as_plain_decimals() -> None:
    # (A currency: an amount without one is written into the note, not as costs.)
    message = Message(event=Event.LOANED, request_id="R", cost=Money(amount="1E+3", currency="EUR"))
    assert b"<monetaryValue>1000</monetaryValue>" in iso_writer.encode(
        message, from_agency="A", to_agency="B"
    )
    cents = Money(amount="5.125", currency="EUR")
    written = ncip_writer.encode(
        message.model_copy(update={"cost": cents}), from_agency="A", to_agency="B"
    )
    assert b"<ns1:MonetaryValue>513</ns1:MonetaryValue>" in written


# -- 5 and 6. DTDs refused in the parser, for every encoding ---------------------------------

DTD_DOCUMENTS = [
    "<!DOCTYPE a [<!ENTITY % p \"<!ENTITY x 'y'>\"> %p;]><a>&x;</a>",
    '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    "<!DOCTYPE a [<!ELEMENT a ANY>]><a/>",
]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be", "utf-32", "utf-32-le"])
@pytest.mark.parametrize("document", DTD_DOCUMENTS)
def test_dtd_declarations_are_refused_in_every_encoding(encoding: str, document: str) -> None:
    for text in (document, f'<?xml version="1.0" encoding="{encoding}"?>{document}'):
        with pytest.raises(xmlsafe.UnsafeXml, match=r"DTD|well-formed"):
            xmlsafe.parse(text.encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_dtd_in_utf16_and_utf32_gets_the_protocols_syntax_error(encoding: str) -> None:
    document = DTD_DOCUMENTS[0].replace("<a>&x;</a>", "<NCIPMessage>&x;</NCIPMessage>")
    body = f'<?xml version="1.0" encoding="{encoding}"?>{document}'.encode(encoding)
    assert ncip_problem(body).type == "Invalid Message Syntax Error"
    assert iso_error(body).error_type == "BadlyFormedMessage"


def test_a_doctype_without_declarations_is_still_read() -> None:
    ncip1 = SAMPLES / "ncip" / "samples" / "shareit-autographics__RequestItem__v1_0.xml"
    assert b"<!DOCTYPE" in ncip1.read_bytes()
    assert xmlsafe.local(xmlsafe.parse(ncip1.read_bytes())) == "NCIPMessage"


# -- 8. transaction ids keyed with a per-deployment secret -----------------------------------


def test_transaction_ids_are_keyed_and_stable() -> None:
    one, other = b"k" * 32, b"j" * 32
    assert transaction_id("B", "R-1", key=one) == transaction_id("B", "R-1", key=one)
    assert transaction_id("B", "R-1", key=one) != transaction_id("B", "R-1", key=other)
    txn = transaction_id("B", "R-1", key=one)
    assert parse_lender_request_id(lender_request_id(txn, 3)) == (txn, 3)
    assert TXN_PATTERN.match(f"{txn}.1")


def test_the_secret_comes_from_the_environment_or_a_file_made_once(tmp_path: Path) -> None:
    assert id_key({"RSHUB_ID_SECRET": "s3cret", "RSHUB_DATA_DIR": str(tmp_path)}) == b"s3cret"
    folder = tmp_path / "data"
    first = id_key({"RSHUB_DATA_DIR": str(folder)})
    secret = folder / "id-secret"
    assert len(first) == 32 and secret.read_bytes() == first
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert id_key({"RSHUB_DATA_DIR": str(folder)}) == first
    assert [p.name for p in folder.iterdir()] == ["id-secret"]  # no temporary left behind
    unkeyed = "t" + __import__("hashlib").blake2b(b"B\x00R-1", digest_size=8).hexdigest()
    assert transaction_id("B", "R-1", key=first) != unkeyed


# -- 10. IMPLICIT [APPLICATION n] and inner tags, as Convert::ASN1-based encoders write -------


@pytest.mark.parametrize("name", asn1.APDUS)
def test_implicitly_tagged_apdus_decode_to_the_same_value(name: str) -> None:
    value = value_for(asn1.compiled().types[name].type, True)
    standard = ill.encode(name, value)
    implicit = bytes(asn1.compiled_implicit().encode("ILL-APDU", (name.lower(), value)))
    assert implicit != standard
    assert ill.decode(implicit) == ill.decode(standard)


def _tlv(data: bytes) -> list[tuple[int, bytes | list]]:
    """BER (definite lengths, one-byte tags) as a tree: (tag, content or children)."""
    out, at = [], 0
    while at < len(data):
        tag, length, at = data[at], data[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(data[at : at + count], "big"), at + count
        content = data[at : at + length]
        out.append((tag, _tlv(content) if tag & 0x20 else content))
        at += length
    return out


def _ber(tree: list[tuple[int, bytes | list]]) -> bytes:
    out = b""
    for tag, content in tree:
        body = content if isinstance(content, bytes) else _ber(content)
        out += bytes([tag]) + bytes(encode_length_definite(len(body))) + body
    return out


def _implicit(node: tuple[int, bytes | list]) -> tuple[int, bytes | list]:
    """An explicit tag around one element written IMPLICIT: the tag takes the inner content
    (primitive for a string, constructed for a SEQUENCE), as Convert::ASN1 writes it."""
    tag, content = node
    assert isinstance(content, list) and len(content) == 1
    _inner_tag, inner = content[0]
    return (tag if isinstance(inner, list) else tag & ~0x20, inner)


def test_implicit_ill_string_and_outer_tag_written_by_hand() -> None:
    value = {
        "protocol-version-num": 2,
        "transaction-id": {
            "transaction-group-qualifier": ("generalstring", "g"),
            "transaction-qualifier": ("generalstring", "abc"),
        },
        "service-date-time": {"date-time-of-this-service": {"date": "20260101"}},
    }
    standard = ill.encode("Cancel", value)
    [apdu] = _tlv(standard)
    assert apdu[1][0][0] == 0x30  # 66 len 30 len ...
    tag, fields = _implicit(apdu)  # 66 len 80 01 02 ...
    assert isinstance(fields, list)
    transaction = next(i for i, (t, _c) in enumerate(fields) if t == 0xA1)
    members = list(fields[transaction][1])
    members = [_implicit(m) if m[0] == 0xA2 else m for m in members]  # [2] ILL-String
    fields[transaction] = (0xA1, members)
    implicit = _ber([(tag, fields)])
    assert b"\x82\x03abc" in implicit and implicit[2] != 0x30
    assert ill.decode(implicit) == ill.decode(standard)


def test_an_implicitly_tagged_apdu_is_answered_in_the_standard_form() -> None:
    value = value_for(asn1.compiled().types["Received"].type, True)
    implicit = bytes(asn1.compiled_implicit().encode("ILL-APDU", ("received", value)))
    endpoint = Iso10161Codec()
    decoded = endpoint.decode(implicit, "A", LIMIT)
    reply = endpoint.accept(decoded).body
    assert reply[0] == 0x73 and reply[1] == 0x81 and reply[3] == 0x30  # [APPLICATION 19] SEQ
    assert ill.decode(reply)[0] == "Status-Or-Error-Report"


# -- 11. ISO 18626 bibliographicInfo/title is optional ----------------------------------------


def test_iso18626_request_identified_without_title() -> None:
    info = iso_request().split(b"<bibliographicInfo>")[1].split(b"</bibliographicInfo>")[0]
    isbn = (
        b"<bibliographicItemId><bibliographicItemIdentifierCode>ISBN"
        b"</bibliographicItemIdentifierCode><bibliographicItemIdentifier>9780151446476"
        b"</bibliographicItemIdentifier></bibliographicItemId>"
    )
    body = iso_request().replace(info, isbn)
    message = iso.to_canonical(iso.parse(body))
    assert message.bibliographic is not None
    assert (message.bibliographic.title, message.bibliographic.isbn) == (None, "9780151446476")
    nothing = iso_request().replace(info, b"<author>Someone</author>")
    assert "names no item" in iso_error(nothing).error_value
    with pytest.raises(RenderError, match="Title"):
        ncip_writer.encode(message, from_agency="A", to_agency="B")


# -- 12. an NCIP RenewItemResponse keeps its new due date -------------------------------------


def test_renew_item_response_keeps_its_due_date() -> None:
    body = (SAMPLES / "ncip" / "samples" / "alma-princeton__RenewItemResponse.xml").read_bytes()
    response = ncip.read_response(body)
    assert response.ok and response.due_date == datetime(2022, 6, 20, tzinfo=UTC)
    assert response.item_id == "32044061963013"
