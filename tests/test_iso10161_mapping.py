"""ISO 10161 APDUs <-> canonical messages: every relayed event survives the round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.core.model import Bibliographic, Event, Message, Money, Reason, ServiceType
from connectors.iso10161 import codec, mapping
from tests.asn1_values import value_for

DAY = datetime(2026, 12, 1, tzinfo=UTC)
FIELDS = dict(
    request_id="t0123456789abcdef.1",
    transaction_id="t0123456789abcdef",
    patron_id="p1",
    bibliographic=Bibliographic(title="T", author="A", isbn="9780151446476", publisher="P"),
    service_type=ServiceType.LOAN,
    due_date=DAY,
    desired_due_date=DAY,
    date_received=DAY,
    date_shipped=DAY,
    reason=Reason.from_code(10),
    note="a note",
    timestamp=DAY,
    cost=Money(amount="12.50", currency="EUR"),
    max_cost=Money(amount="30.00", currency="EUR"),
)


@pytest.mark.parametrize("event", sorted(mapping.EVENT_APDUS, key=str))
def test_every_event_round_trips_through_ber(event: Event) -> None:
    answer = True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None
    # A Message APDU is told apart by whose request id it carries: the borrower's own, or
    # the one rshub gave a lender.
    request_id = "REQ-1" if event is Event.BORROWER_NOTE else FIELDS["request_id"]
    message = Message(event=event, answer=answer, **{**FIELDS, "request_id": request_id})
    name, value = mapping.from_canonical(message, "DK-1", "DK-2")
    data = codec.encode(name, value)
    back = mapping.to_canonical(*codec.decode(data), sender="X")
    assert back.event is event
    assert (back.request_id, back.from_agency, back.to_agency) == (
        request_id,
        "DK-1",
        "DK-2",
    )
    assert back.extensions["iso10161"]["apdu"] == name


def test_fields_survive() -> None:
    request = mapping.to_canonical(
        *codec.decode(
            codec.encode(
                *mapping.from_canonical(Message(event=Event.REQUEST, **FIELDS), "DK-1", "DK-2")
            )
        )
    )
    assert request.bibliographic is not None and request.bibliographic.isbn == "9780151446476"
    assert (request.patron_id, request.service_type, request.note) == (
        "p1",
        ServiceType.LOAN,
        "a note",
    )
    unfilled = mapping.to_canonical(
        *codec.decode(
            codec.encode(
                *mapping.from_canonical(Message(event=Event.UNFILLED, **FIELDS), "DK-1", "DK-2")
            )
        )
    )
    assert unfilled.reason == Reason.from_code(10)
    shipped = mapping.to_canonical(
        *codec.decode(
            codec.encode(
                *mapping.from_canonical(Message(event=Event.LOANED, **FIELDS), "DK-1", "DK-2")
            )
        )
    )
    assert (shipped.due_date, shipped.date_shipped) == (DAY, DAY)
    assert shipped.cost == Money(amount="12.50", currency="EUR")
    assert request.max_cost == Money(amount="30.00", currency="EUR")


def test_borrowers_own_transaction_id_goes_back_unchanged() -> None:
    data = (Path(__file__).parent / "data" / "yaz-illclient-request.ber").read_bytes()
    request = mapping.to_canonical(*codec.decode(data), sender="YAZ")
    answer = Message(event=Event.WILL_SUPPLY, request_id="ignored")
    # The engine hands the borrower's correlation back with every step to it.
    name, value = mapping.from_canonical(answer, "LENDER", "YAZ", correlation=request.correlation)
    assert (
        codec.decode(codec.encode(name, value))[1]["transaction-id"]
        == codec.decode(data)[1]["transaction-id"]
    )


@pytest.mark.parametrize("name", sorted(mapping.NOTE_APDUS))
def test_every_other_apdu_is_relayed_as_a_note(name: str) -> None:
    value = value_for(codec.compiled().types[name].type, False)
    value["transaction-id"]["transaction-qualifier"] = ("generalstring", FIELDS["request_id"])
    message = mapping.to_canonical(name, value)
    assert message.event in (Event.LENDER_NOTE, Event.BORROWER_NOTE)
    if name != "Message":
        assert (message.note or "").startswith(name)
    if mapping.NOTE_APDUS[name] is None:  # either side: a hub lender id means the lender
        assert message.event is Event.LENDER_NOTE


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("Lost", Event.LOST),
        ("Damaged", Event.DAMAGED),
        ("Status-Query", Event.STATUS_QUERY),
        ("ILL-Answer", Event.RETRY_POSSIBLE),
    ],
)
def test_evidence_is_reported_as_its_own_event(name: str, event: Event) -> None:
    """The codec says what the partner said; what it means for the loan is the engine's."""
    value = value_for(codec.compiled().types[name].type, False)
    value["transaction-id"]["transaction-qualifier"] = ("generalstring", FIELDS["request_id"])
    if name == "ILL-Answer":
        value["transaction-results"] = "retry"
        value.pop("results-explanation", None)
    assert mapping.to_canonical(name, value).event is event


def test_a_shipment_without_item_id_is_named_by_the_lenders_qualifier() -> None:
    """ISO 10161 Shipped has no item id; later steps (NCIP renewals) need one."""
    value = value_for(codec.compiled().types["Shipped"].type, False)
    value["transaction-id"]["transaction-qualifier"] = ("generalstring", FIELDS["request_id"])
    message = mapping.to_canonical("Shipped", value)
    assert message.event in (Event.LOANED, Event.COPY_COMPLETED)
    assert message.item_id == FIELDS["request_id"]


def test_extensions_are_decoded_and_credentials_never_kept() -> None:
    """yaz-illclient -o -u USER -p PASSWORD: a Z39.50 prompt (credentials) and OCLC's 13.2."""
    data = (Path(__file__).parent / "data" / "yaz-illclient-request-oclc.ber").read_bytes()
    message = mapping.to_canonical(*codec.decode(data), sender="OCLC")
    extensions = message.extensions["iso10161"]["extensions"]
    assert [e["oid"] for e in extensions] == ["1.2.840.10003.8.1", "1.0.10161.13.2"]
    assert extensions[0]["redacted"].startswith("Z39.50 prompt")
    assert extensions[1]["type"] == "OCLCILLRequestExtension" and extensions[1]["value"] == {}
    assert (
        "secretpw" not in message.model_dump_json()
        and "736563726574" not in message.model_dump_json()
    )


def test_delivery_info_extension_13_3_is_decoded() -> None:
    spec = codec.compiled()
    info = {
        "sender-info": [
            {
                "encoding": ["bER"],
                "transport": {
                    "telecom-service-identifier": ("generalstring", "tcp"),
                    "telecom-service-address": ("generalstring", "ill.example.org:1611"),
                },
            }
        ],
        "recipient-info": [],
    }
    inner = spec.encode("APDU-Delivery-Info", info)
    external = spec.encode(
        "External-X208",
        {"direct-reference": "1.0.10161.13.3", "encoding": ("single-ASN1-type", inner)},
    )
    name, value = mapping.from_canonical(Message(event=Event.REQUEST, **FIELDS), "A", "B")
    value["iLL-request-extensions"] = [{"identifier": 1, "critical": False, "item": external}]
    message = mapping.to_canonical(*codec.decode(codec.encode(name, value)))
    [entry] = message.extensions["iso10161"]["extensions"]
    assert entry["type"] == "APDU-Delivery-Info"
    assert entry["value"]["sender-info"][0]["transport"]["telecom-service-address"] == [
        "generalstring",
        "ill.example.org:1611",
    ]


def round_trip(message: Message) -> Message:
    return mapping.to_canonical(*codec.decode(mapping.render(message, "DK-1", "DK-2")))


def test_a_rich_article_request_keeps_what_item_id_client_id_and_delivery_address_carry() -> None:
    request = Message(
        event=Event.REQUEST,
        request_id="R-24",
        bibliographic=Bibliographic(
            title="Přehled dějin",
            subtitle="sborník",
            title_of_component="Δημοκρατία",
            author_of_component="Łukasiewicz, Zofia",
            volume="84",
            issue="3",
            part="B",
            pages_requested="301-329",
            issn="12345678",
            oclc_number="123456",
            doi="10.1000/xyz",
            medium_type="printed",
            bibliographic_level="Journal",
        ),
        patron_id="p7",
        patron_given_name="Zofia",
        patron_surname="Łukasiewicz",
        delivery_address="ul. Długa 5\nII piętro\n00-001 Warszawa",
        delivery_email="ill@example.org",
        pickup_location="Main desk",
        note="Don\u2019t bind",  # a typographic apostrophe is not Latin-1
    )
    back = round_trip(request)
    assert back.bibliographic is not None
    for field in (
        "title",
        "subtitle",
        "title_of_component",
        "author_of_component",
        "volume",
        "issue",
        "part",
        "pages_requested",
        "issn",
        "oclc_number",
        "doi",
        "medium_type",
        "bibliographic_level",
    ):
        assert getattr(back.bibliographic, field) == getattr(request.bibliographic, field), field
    assert (back.patron_id, back.patron_name) == ("p7", "Zofia Łukasiewicz")
    assert back.delivery_address == request.delivery_address
    assert back.delivery_email == "ill@example.org"
    assert back.note == "Don\u2019t bind; Pickup at: Main desk"
    # The article title is written once, as title-of-article; sub-title is the subtitle.
    item = codec.decode(mapping.render(request, "A", "B"))[1]["item-id"]
    assert item["volume-issue"][1].encode("latin-1").decode() == "Vol. 84, no. 3, pt. B"


def test_a_partners_volume_issue_and_client_name_are_read() -> None:
    name, value = mapping.from_canonical(
        Message(event=Event.REQUEST, request_id="R", bibliographic=Bibliographic(title="T")),
        "A",
        "B",
    )
    value["item-id"]["volume-issue"] = ("generalstring", "84(3)")
    value["client-id"] = {"client-name": ("generalstring", "Jensen, Anne")}
    back = mapping.to_canonical(*codec.decode(codec.encode(name, value)))
    assert back.bibliographic is not None and back.bibliographic.volume == "84(3)"
    assert back.patron_name == "Jensen, Anne"


@pytest.mark.parametrize(
    ("written", "amount", "currency"),
    [
        ("$35", "35", None),
        ("$40.00", "40.00", None),
        ("35 EUR", "35", "EUR"),
        ("1,000.50", "1000.50", None),
    ],
)
def test_a_cost_written_with_a_symbol_refuses_nothing(
    written: str, amount: str, currency: str | None
) -> None:
    name, value = mapping.from_canonical(
        Message(event=Event.REQUEST, request_id="R", bibliographic=Bibliographic(title="T")),
        "A",
        "B",
    )
    value["cost-info-type"] = {"maximum-cost": {"monetary-value": written}}
    back = mapping.to_canonical(*codec.decode(codec.encode(name, value)))
    assert back.max_cost == Money(amount=amount, currency=currency)
    assert written in back.extensions["diagnostics"][0]


def test_a_cost_that_is_no_number_is_dropped_with_a_diagnostic() -> None:
    name, value = mapping.from_canonical(
        Message(event=Event.REQUEST, request_id="R", bibliographic=Bibliographic(title="T")),
        "A",
        "B",
    )
    value["cost-info-type"] = {"maximum-cost": {"monetary-value": "free"}}
    back = mapping.to_canonical(*codec.decode(codec.encode(name, value)))
    assert back.max_cost is None
    assert "monetary-value" in back.extensions["diagnostics"][0]
    assert back.extensions["iso10161"]["cost-info-type"]["maximum-cost"]["monetary-value"] == "free"


@pytest.mark.parametrize(
    ("event", "apdu_type"), [(Event.RENEW, "rENEW"), (Event.OVERDUE, "oVERDUE")]
)
def test_a_state_error_about_a_renew_or_an_overdue_names_it(event: Event, apdu_type: str) -> None:
    """The error report's aPDU-type is the APDU refused (ILL-APDU-Type has rENEW and
    oVERDUE), not mESSAGE: a partner's staff must see which of their messages failed."""
    from connectors.core.contract import Fault, Limits
    from connectors.iso10161.transport import Iso10161Codec

    wire = Iso10161Codec()
    message = Message(event=event, **FIELDS)
    body = codec.for_the_wire(codec.encode(*mapping.from_canonical(message, "DK-1", "DK-2")))
    decoded = wire.decode(body, "X", Limits())
    answer = wire.fault(Fault.STATE, "not now", decoded, "Requested")
    name, value = codec.decode(answer.body)
    assert name == "Status-Or-Error-Report"
    problem = value["error-report"]["provider-error-report"]
    assert problem[0] == "state-transition-prohibited"
    assert problem[1]["aPDU-type"] == apdu_type
