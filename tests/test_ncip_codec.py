"""The NCIP codec without a network: round trips, schema validity, tolerance, hardening."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors import xmlsafe
from connectors.core.model import Bibliographic, Event, Message, Money, Reason, RequestFormat
from connectors.ncip import codec, schema, tables, writer

WHEN = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
FIELDS = dict(
    request_id="t0123456789abcdef.1",
    patron_id="p1",
    item_id="BC1",
    bibliographic=Bibliographic(title="T", author="A", bibliographic_level="Book", isbn="123"),
    request_format=RequestFormat.PHYSICAL,
    due_date=WHEN,
    desired_due_date=WHEN,
    date_received=WHEN,
    date_shipped=WHEN,
    reason=Reason.from_code(10),
    cost=Money(amount="5.00", currency="EUR"),
)


def sample(event: Event) -> Message:
    answer = True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None
    return Message(event=event, answer=answer, **FIELDS)


@pytest.mark.parametrize("event", list(tables.ENCODE))
def test_every_p2p_message_round_trips_and_validates(event: Event) -> None:
    body = writer.encode(sample(event), from_agency="01A||MAIN", to_agency="01B||MAIN")
    parsed = codec.parse(body)
    back = codec.to_canonical(parsed, sender="A")
    assert back.event is event
    assert (back.from_agency, back.to_agency) == ("01A||MAIN", "01B||MAIN")
    errors = schema.diagnose(parsed.root)
    # Alma's Ext/Answer is not an NCIP element; the schema's strict wildcard rejects it.
    assert [e for e in errors if "Answer" not in e] == []
    response = writer.encode_response(parsed)
    assert schema.diagnose(codec.parse(response).root) == []


def test_fields_survive_the_round_trip() -> None:
    body = writer.encode(sample(Event.LOANED), from_agency="A", to_agency="B")
    back = codec.decode(body)
    assert (back.request_id, back.item_id, back.due_date) == (FIELDS["request_id"], "BC1", WHEN)
    assert back.cost == Money(amount="5.00", currency="EUR")
    request = codec.decode(writer.encode(sample(Event.REQUEST), from_agency="A", to_agency="B"))
    assert request.bibliographic is not None
    assert (request.bibliographic.title, request.bibliographic.isbn) == ("T", "123")
    unfilled = codec.decode(writer.encode(sample(Event.UNFILLED), from_agency="A", to_agency="B"))
    assert unfilled.reason == Reason.from_code(10)


def test_copy_is_told_apart_from_loan() -> None:
    body = writer.encode(sample(Event.COPY_COMPLETED), from_agency="A", to_agency="B")
    assert codec.decode(body).event is Event.COPY_COMPLETED


SHIPPED = """<{p}NCIPMessage {ns} {v}="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd">
<{p}ItemShipped><{p}InitiationHeader><{p}FromAgencyId><{p}AgencyId>L</{p}AgencyId></{p}FromAgencyId>
<{p}ToAgencyId><{p}AgencyId>B</{p}AgencyId></{p}ToAgencyId></{p}InitiationHeader>
<{p}RequestId><{p}RequestIdentifierValue>R1</{p}RequestIdentifierValue></{p}RequestId>
<{p}ItemId><{p}ItemIdentifierValue>I1</{p}ItemIdentifierValue></{p}ItemId>
<{p}DateShipped>2026-11-20</{p}DateShipped>
<{p}ShippingInformation><{p}ElectronicAddress><{p}ElectronicAddressType>Email Address</{p}ElectronicAddressType>
<{p}ElectronicAddressData>ill@b.example</{p}ElectronicAddressData></{p}ElectronicAddress></{p}ShippingInformation>
<{p}Ext><{p}NoticeContent>{notice}</{p}NoticeContent></{p}Ext></{p}ItemShipped></{p}NCIPMessage>"""

STYLES = {
    "prefixed": dict(p="ns1:", ns='xmlns:ns1="http://www.niso.org/2008/ncip"', v="ns1:version"),
    "default namespace, unqualified version": dict(
        p="", ns='xmlns="http://www.niso.org/2008/ncip"', v="version"
    ),
    "no namespace": dict(p="", ns="", v="version"),
}


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize(
    "notice,event",
    [
        ("ShippedBy.Lender", Event.LOANED),
        ("ShippedByLender", Event.LOANED),
        ("ShippedBy.Borrower", Event.SHIPPED_RETURN),
        ("ShippedByBorrower", Event.SHIPPED_RETURN),
    ],
)
def test_tolerant_of_namespace_styles_and_notice_forms(
    style: str, notice: str, event: Event
) -> None:
    body = SHIPPED.format(notice=notice, **STYLES[style]).encode()
    message = codec.decode(body)
    assert (message.event, message.request_id, message.item_id) == (event, "R1", "I1")
    assert message.date_shipped == datetime(2026, 11, 20, tzinfo=UTC)
    assert message.delivery_email == "ill@b.example"


def test_latin1_declaration_is_honoured() -> None:
    text = SHIPPED.format(notice="ShippedBy.Lender", **STYLES["no namespace"]).replace(
        "B</", "Bibliothèque</"
    )
    body = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + text.encode("latin-1")
    assert codec.decode(body).to_agency == "Bibliothèque"


def test_missing_notice_content_is_a_specific_problem() -> None:
    body = SHIPPED.format(notice="", **STYLES["prefixed"]).encode()
    with pytest.raises(codec.NcipError) as caught:
        codec.decode(body)
    assert caught.value.problem.type == "Needed Data Missing"
    assert caught.value.problem.element == "Ext.NoticeContent"


def test_missing_required_field_names_it() -> None:
    body = (
        SHIPPED.format(notice="ShippedBy.Lender", **STYLES["prefixed"])
        .replace(
            "<ns1:ItemId><ns1:ItemIdentifierValue>I1</ns1:ItemIdentifierValue></ns1:ItemId>", ""
        )
        .encode()
    )
    with pytest.raises(codec.NcipError) as caught:
        codec.decode(body)
    assert caught.value.problem.element == "ItemId.ItemIdentifierValue"


@pytest.mark.parametrize(
    "body,words",
    [
        (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><NCIPMessage>&e;</NCIPMessage>',
            "entity",
        ),
        (b"<!DOCTYPE x [<!ELEMENT x ANY>]><NCIPMessage/>", "internal subset"),
        (b"<NCIPMessage>" + b"<a>" * 100 + b"</a>" * 100 + b"</NCIPMessage>", "nested deeper"),
        (b"<NCIPMessage><RequestItem>", "well-formed"),
        (b"", "empty"),
    ],
)
def test_hardened_parser_refuses(body: bytes, words: str) -> None:
    with pytest.raises(codec.NcipError) as caught:
        codec.parse(body)
    assert caught.value.problem.type == "Invalid Message Syntax Error"
    assert words in caught.value.problem.detail.replace("DTD internal subsets", "internal subset")


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(codec.NcipError) as caught:
        codec.parse(b"<NCIPMessage/>" + b" " * 100, limit=50)
    assert caught.value.problem.http_status == 413


def test_external_dtd_of_ncip1_is_not_fetched() -> None:
    body = (
        b'<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
        b'"http://127.0.0.1:1/ncip_v1_0.dtd"><NCIPMessage version="v1_0"><LookupUserResponse/></NCIPMessage>'
    )
    assert xmlsafe.local(codec.parse(body).element) == "LookupUserResponse"


def test_will_supply_has_no_ncip_form() -> None:
    with pytest.raises(writer.NotApplicable):
        writer.encode(Message(event=Event.WILL_SUPPLY), from_agency="A", to_agency="B")


def test_problem_documents_are_readable_back() -> None:
    problem = codec.Problem(type="Unknown Agency", detail="no partner X", element="ToAgencyId")
    for name in (None, "RequestItemResponse"):
        response = codec.read_response(writer.encode_problem(problem, name))
        assert [(p.type, p.detail, p.element) for p in response.problems] == [
            ("Unknown Agency", "no partner X", "ToAgencyId")
        ]


ALMA_ARTICLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ns1:NCIPMessage xmlns:ns1="http://www.niso.org/2008/ncip" ns1:version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd">
<ns1:RequestItem>
<ns1:InitiationHeader><ns1:FromSystemId>ALMA_NCIP_ILL</ns1:FromSystemId>
<ns1:FromAgencyId><ns1:AgencyId>01UNI_INST||MAIN</ns1:AgencyId></ns1:FromAgencyId>
<ns1:OnBehalfOfAgency><ns1:AgencyId>SCI</ns1:AgencyId></ns1:OnBehalfOfAgency>
<ns1:ToAgencyId><ns1:AgencyId>02OTHER_INST</ns1:AgencyId></ns1:ToAgencyId></ns1:InitiationHeader>
<ns1:UserId><ns1:UserIdentifierValue>9001</ns1:UserIdentifierValue></ns1:UserId>
<ns1:BibliographicId><ns1:BibliographicRecordId><ns1:BibliographicRecordIdentifier>0028-0836</ns1:BibliographicRecordIdentifier><ns1:BibliographicRecordIdentifierCode>ISSN</ns1:BibliographicRecordIdentifierCode></ns1:BibliographicRecordId></ns1:BibliographicId>
<ns1:RequestId><ns1:RequestIdentifierValue>4471</ns1:RequestIdentifierValue></ns1:RequestId>
<ns1:RequestType>Digital</ns1:RequestType><ns1:RequestScopeType>Item</ns1:RequestScopeType>
<ns1:ItemOptionalFields><ns1:BibliographicDescription>
<ns1:Pagination>xix, 1292 p.</ns1:Pagination><ns1:Title>Nature</ns1:Title>
<ns1:TitleOfComponent>Kinetics of folding</ns1:TitleOfComponent>
<ns1:BibliographicLevel>Journal</ns1:BibliographicLevel></ns1:BibliographicDescription></ns1:ItemOptionalFields>
<ns1:Ext><ns1:Volumes>84</ns1:Volumes><ns1:Issues>3</ns1:Issues><ns1:Pages>301-329</ns1:Pages>
<ns1:Chapters>2</ns1:Chapters><ns1:Parts>B</ns1:Parts></ns1:Ext>
</ns1:RequestItem></ns1:NCIPMessage>"""


def test_alma_ext_volumes_issues_pages_chapters_parts_are_read() -> None:
    message = codec.decode(ALMA_ARTICLE)
    bib = message.bibliographic
    assert bib is not None
    assert (bib.volume, bib.issue, bib.pages_requested, bib.chapter, bib.part) == (
        "84",
        "3",
        "301-329",
        "2",
        "B",
    )
    # Pagination is the record's extent, not the pages wanted.
    assert bib.pagination == "xix, 1292 p."
    # The seed's addressing: institution in ToAgencyId, library in OnBehalfOfAgency.
    assert (message.to_agency, message.on_behalf_of_agency) == ("02OTHER_INST||SCI", "SCI")


def test_alma_ext_fields_are_written_and_the_rest_goes_into_the_note() -> None:
    request = Message(
        event=Event.REQUEST,
        request_id="t1.1",
        request_format=RequestFormat.DIGITAL,
        bibliographic=Bibliographic(
            title="Nature",
            subtitle="international weekly",
            title_of_component="Kinetics",
            volume="84",
            issue="3",
            pages_requested="301-329",
            doi="10.1000/xyz",
        ),
        patron_name="Zofia Łukasiewicz",
        delivery_address="Main St 1, Kraków",
        delivery_email="ill@example.org",
        max_cost=Money(amount="35"),
    )
    body = writer.encode(request, from_agency="HUB", to_agency="01B_INST||LAW")
    parsed = codec.parse(body)
    # Alma's Ext children are no NCIP elements: the schema's strict wildcard names them.
    alma = ("Volumes", "Issues", "Pages", "ItemNote")
    assert [e for e in schema.diagnose(parsed.root) if not any(a in e for a in alma)] == []
    back = codec.to_canonical(parsed)
    assert back.bibliographic is not None
    assert (back.bibliographic.volume, back.bibliographic.issue) == ("84", "3")
    assert back.bibliographic.pages_requested == "301-329"
    assert back.bibliographic.pagination is None
    # Both addresses arrive; a digital request's e-mail stands in the schema's choice.
    assert (back.delivery_email, back.delivery_address) == ("ill@example.org", "Main St 1, Kraków")
    assert parsed.at("InitiationHeader", "ToAgencyId", "AgencyId") == "01B_INST"
    assert parsed.at("InitiationHeader", "OnBehalfOfAgency", "AgencyId") == "LAW"
    # No currency is guessed: the maximum cost goes into the note, as do subtitle and DOI.
    assert parsed.child(None, "AcknowledgedFeeAmount") is None
    assert back.note is not None
    for said in (
        "Subtitle: international weekly",
        "DOI 10.1000/xyz",
        "Patron: Zofia Łukasiewicz",
        "Maximum cost: 35 (currency not given)",
    ):
        assert said in back.note
