"""The ISO 18626 codec without a network: every shared sample, round trips, Confirmations."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.core.contract import Outgoing
from connectors.core.directory import Partner
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    Reason,
    RequestFormat,
    ServiceType,
)
from connectors.iso18626 import codec, schema, tables, writer
from connectors.iso18626.connector import CONNECTOR

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards" / "iso18626" / "samples"

# file -> the event it decodes to, "confirmation", or the errorType its defect deserves.
EXPECTED: dict[str, object] = {
    "crosslink_catalog_request-1.xml": Event.REQUEST,
    "crosslink_catalog_request-2.xml": Event.REQUEST,
    "crosslink_illmock_cancel-req.xml": Event.REQUEST,
    "crosslink_illmock_req.xml": Event.REQUEST,
    "crosslink_illmock_reqform_example.xml": "UnrecognisedDataValue",  # empty request id
    "crosslink_misc_request-mock-multiple.xml": "UnrecognisedDataValue",  # empty request id
    "crosslink_msg-invalid.xml": "BadlyFormedMessage",  # no message inside
    "crosslink_reqmsg-invalid-action.xml": "UnrecognisedDataValue",  # action not in the enum
    "crosslink_reqmsg-ok.xml": Event.CANCEL,
    "crosslink_request-loaned-overdue-renew.xml": Event.REQUEST,
    "crosslink_request-loaned.xml": Event.REQUEST,
    "crosslink_request-locally-available.xml": Event.REQUEST,
    "crosslink_request-no-reqid.xml": "UnrecognisedDataValue",
    "crosslink_request-retry-1.xml": Event.REQUEST,
    "crosslink_request-retry-cost-loaned.xml": Event.REQUEST,
    "crosslink_request-unfilled.xml": Event.REQUEST,
    "crosslink_request-willsupply-loaned-cancel.xml": Event.REQUEST,
    "crosslink_request-willsupply-loaned.xml": Event.REQUEST,
    "crosslink_supmsg-invalid-status.xml": "UnrecognisedDataValue",  # status not in the enum
    "crosslink_supmsg-notification.xml": Event.LENDER_NOTE,
    "crosslink_supmsg-ok.xml": Event.LOANED,
    "modrs_ProtocolMessageServiceSpec_sampleErrorXml.xml": "confirmation",
    # No title: the item is named by supplierUniqueRecordId (the title is optional).
    "modrs_iso18626_req_1.xml": Event.REQUEST,
    "modrs_it_patronRequest.xml": Event.REQUEST,
    # A placeholder timestamp is informative: the message is read (issue 24), with a diagnostic.
    "modrs_it_statusChangeUnfilledTemplate.xml": Event.UNFILLED,
    "modrs_it_supplyingAgencyMessage_statusChange.xml": "UnrecognisedDataValue",  # placeholder status
    "modrs_unit_request.xml": Event.REQUEST,
    "modrs_unit_requestConfirmation.xml": "confirmation",
    "modrs_unit_requestingAgencyMessage.xml": "UnsupportedActionType",  # StatusRequest
    "modrs_unit_supplyingAgencyMessage.xml": Event.LENDER_NOTE,  # RequestReceived
}


def test_every_sample_is_listed() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    body = (SAMPLES / name).read_bytes()
    expected = EXPECTED[name]
    if expected == "confirmation":
        assert codec.read_confirmation(body).kind.endswith("Confirmation")
        return
    if isinstance(expected, Event):
        message = codec.to_canonical(codec.parse(body), sender="X")
        assert message.event is expected and message.request_id
        assert message.extensions["iso18626"]["fields"]  # nothing the partner sent is lost
        return
    with pytest.raises(codec.Iso18626Error) as caught:
        codec.to_canonical(codec.parse(body))
    assert caught.value.error_type == expected
    # and the Confirmation it gets names the error and validates against v1.2
    parsed = None
    with contextlib.suppress(codec.Iso18626Error):
        parsed = codec.parse(body)
    reply = writer.confirm(
        parsed, caught.value.error_type, caught.value.value, kind=caught.value.kind
    )
    confirmation = codec.read_confirmation(reply)
    assert (confirmation.status, confirmation.error_type) == ("ERROR", expected)
    assert schema.diagnose(codec.parse(reply).root, "1.2") == []


def test_crosslink_request_fields() -> None:
    message = codec.to_canonical(
        codec.parse((SAMPLES / "crosslink_request-loaned.xml").read_bytes())
    )
    assert message.bibliographic is not None
    assert (message.bibliographic.title, message.bibliographic.author) == (
        "Lord of the Rings",
        "JRR Tolkien",
    )
    assert message.bibliographic.isbn == "1983"
    assert message.service_type is ServiceType.LOAN and message.patron_id == "123"
    assert message.delivery_address == "The Prancing Pony Inn, Bree"
    assert (message.from_agency, message.to_agency) == ("REQ", "BROKER")


def test_nanosecond_timestamps_and_item_id() -> None:
    message = codec.to_canonical(codec.parse((SAMPLES / "crosslink_supmsg-ok.xml").read_bytes()))
    assert message.item_id == "12345"
    assert message.date_shipped is not None and message.date_shipped.microsecond == 629725


WHEN = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
FIELDS = dict(
    request_id="t0123456789abcdef.1",
    transaction_id="t0123456789abcdef",
    patron_id="p1",
    item_id="BC1",
    bibliographic=Bibliographic(title="T", author="A", isbn="123", publisher="P"),
    request_format=RequestFormat.PHYSICAL,
    service_type=ServiceType.LOAN,
    due_date=WHEN,
    date_shipped=WHEN,
    reason=Reason.from_code(5),
    cost=Money(amount="5.00", currency="EUR"),
    timestamp=WHEN,
)
WRITTEN = [Event.REQUEST, *tables.SUPPLIER_OUT, *tables.ACTION_OUT]


@pytest.mark.parametrize("event", WRITTEN)
def test_every_written_message_round_trips_and_validates(event: Event) -> None:
    answer = True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None
    body = writer.encode(
        Message(event=event, answer=answer, **FIELDS), from_agency="DK-1", to_agency="DK-2"
    )
    parsed = codec.parse(body)
    assert schema.diagnose(parsed.root, "1.2") == []
    back = codec.to_canonical(parsed)
    expected = {Event.EXPIRED: Event.UNFILLED}.get(event, event)
    assert back.event is expected
    assert (back.request_id, back.from_agency, back.to_agency) == (
        FIELDS["request_id"],
        "DK-1",
        "DK-2",
    )
    assert schema.diagnose(codec.parse(writer.confirm(parsed)).root, "1.2") == []


def test_fields_survive_the_round_trip() -> None:
    loaned = codec.to_canonical(
        codec.parse(
            writer.encode(Message(event=Event.LOANED, **FIELDS), from_agency="A", to_agency="B")
        )
    )
    assert (loaned.item_id, loaned.due_date, loaned.cost) == ("BC1", WHEN, FIELDS["cost"])
    unfilled = codec.to_canonical(
        codec.parse(
            writer.encode(Message(event=Event.UNFILLED, **FIELDS), from_agency="A", to_agency="B")
        )
    )
    assert unfilled.reason is not None and unfilled.reason.code == 5  # NotOwned, by name
    refused = codec.to_canonical(
        codec.parse(
            writer.encode(
                Message(event=Event.CANCEL_REPLY, answer=False, **FIELDS),
                from_agency="A",
                to_agency="B",
            )
        )
    )
    assert refused.answer is False


def test_non_isil_agency_types_are_kept() -> None:
    body = writer.encode(
        Message(event=Event.RECEIVED, **FIELDS), from_agency="OCLC:ABC", to_agency="DK-2"
    )
    assert codec.to_canonical(codec.parse(body)).from_agency == "OCLC:ABC"


def test_hardened_like_ncip() -> None:
    with pytest.raises(codec.Iso18626Error) as caught:
        codec.parse(b'<!DOCTYPE x [<!ENTITY e "boom">]><ISO18626Message>&e;</ISO18626Message>')
    assert (caught.value.error_type, caught.value.http_status) == ("BadlyFormedMessage", 400)
    with pytest.raises(codec.Iso18626Error) as caught:
        codec.parse(b"<ISO18626Message/>" + b" " * 100, limit=50)
    assert caught.value.http_status == 413


@pytest.mark.parametrize("event", WRITTEN)
def test_2021_2_output_validates_and_round_trips(event: Event) -> None:
    answer = True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None
    body = writer.encode(
        Message(event=event, answer=answer, **FIELDS),
        from_agency="DK-1",
        to_agency="DK-2",
        version="2021-2",
    )
    parsed = codec.parse(body)
    assert parsed.version == "2021-2"
    assert schema.diagnose(parsed.root, "2021-2") == []
    assert schema.diagnose(parsed.root, "1.2") != []  # it really is the other form
    back = codec.to_canonical(parsed)
    assert back.event is {Event.EXPIRED: Event.UNFILLED}.get(event, event)
    assert back.request_id == FIELDS["request_id"]
    confirmation = codec.parse(writer.confirm(parsed))
    assert confirmation.version == "2021-2"
    assert schema.diagnose(confirmation.root, "2021-2") == []


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        writer.encode(
            Message(event=Event.RECEIVED, **FIELDS), from_agency="A", to_agency="B", version="1.0"
        )


RICH = Message(
    event=Event.REQUEST,
    request_id="r-24",
    bibliographic=Bibliographic(
        title="Przegląd Historyczny",
        subtitle="kwartalnik",
        series_title_number="Monografie 12",
        title_of_component="Ustrój Rzeczypospolitej",
        volume="84",
        issue="3",
        pages_requested="301-329",
        pagination="xix, 1292 p.",
        issn="0033-2186",
        doi="10.1000/xyz",
        oclc_number="123456",
        lccn="n79021164",
        call_number="PER 84/3",
        medium_type="printed",
    ),
    patron_id="p7",
    patron_surname="Łukasiewicz",
    patron_given_name="Zofia",
    patron_email="zofia@example.org",
    delivery_address="ul. Długa 5\n00-001 Warszawa",
    delivery_email="ill@example.org",
    pickup_location="Main desk",
    loan_condition="LibraryUseOnly",
    max_cost=Money(amount="35"),
    previous_request_id="r-23",
)


@pytest.mark.parametrize("version", ["1.2", "2021-2"])
def test_a_rich_request_keeps_every_field_iso18626_carries(version: str) -> None:
    body = writer.encode(RICH, from_agency="A", to_agency="B", version=version)
    parsed = codec.parse(body)
    assert schema.diagnose(parsed.root, version) == []
    back = codec.to_canonical(parsed)
    assert back.bibliographic is not None
    kept = ("subtitle", "series_title_number", "volume", "issue", "pages_requested")
    kept += ("issn", "doi", "oclc_number", "lccn", "call_number", "title_of_component")
    for field in kept:
        assert getattr(back.bibliographic, field) == getattr(RICH.bibliographic, field), field
    # pagesRequested is the pages wanted; the item's extent is no ISO 18626 element.
    assert back.bibliographic.pagination is None
    assert (back.patron_surname, back.patron_given_name) == ("Łukasiewicz", "Zofia")
    assert back.patron_email == "zofia@example.org"
    assert back.delivery_email == "ill@example.org"
    assert back.delivery_address == "ul. Długa 5, 00-001 Warszawa"
    assert back.previous_request_id == "r-23"
    assert back.max_cost is None  # no currency given: none is invented
    assert back.note is not None
    for said in ("Extent: xix, 1292 p.", "Pickup at: Main desk", "Medium: printed"):
        assert said in back.note
    assert "Maximum cost: 35 (currency not given)" in back.note
    assert b"USD" not in body
    if version == "1.2":
        assert "Loan condition: LibraryUseOnly" in back.note
    else:
        assert back.loan_condition == "LibraryUseOnly"


def test_a_zero_header_timestamp_refuses_nothing() -> None:
    body = writer.encode(RICH, from_agency="A", to_agency="B").replace(
        stamp_of(RICH).encode(), b"0001-01-01T00:00:00.000Z"
    )
    message = codec.to_canonical(codec.parse(body))
    assert message.timestamp.year >= 2026
    assert message.extensions["iso18626"]["fields"]["header/timestamp"].startswith("0001-01-01")
    assert "header/timestamp" in message.extensions["diagnostics"][0]


def stamp_of(message: Message) -> str:
    return writer.stamp(message.timestamp)


def test_agency_id_types_come_from_the_directory() -> None:
    lender = Partner(
        symbol="L",
        name="L",
        protocol="iso18626",
        agency_ids=["LEND"],
        options={"agency_id_type": "OCLC", "own_agency_id_type": "RSHUB"},
    )
    body = CONNECTOR.codec.render(Outgoing(RICH, "HUB", lender))
    header = codec.parse(body).header
    assert codec.text(header, "supplyingAgencyId", "agencyIdType") == "OCLC"
    assert codec.text(header, "requestingAgencyId", "agencyIdType") == "RSHUB"
    plain = Partner(symbol="P", name="P", protocol="iso18626", agency_ids=["DK-710100"])
    header = codec.parse(CONNECTOR.codec.render(Outgoing(RICH, "HUB", plain))).header
    assert codec.text(header, "supplyingAgencyId", "agencyIdType") == "ISIL"


def test_a_reminder_is_a_note_on_the_request_it_names_not_a_second_request() -> None:
    body = writer.encode(RICH, from_agency="A", to_agency="B")
    reminder = body.replace(
        b"<requestType>New</requestType>", b"<requestType>Reminder</requestType>"
    )
    reminder = reminder.replace(
        b"<requestingAgencyRequestId>r-24<", b"<requestingAgencyRequestId>r-25<"
    )
    message = codec.to_canonical(codec.parse(reminder))
    assert message.event is Event.BORROWER_NOTE
    # Addressed to the earlier request (requestingAgencyPreviousRequestId, r-23 in RICH).
    assert (message.request_id, message.previous_request_id) == ("r-23", "r-25")
    assert message.note is not None and message.note.startswith("Reminder")


def test_a_retry_is_the_request_again_addressed_to_the_one_it_retries() -> None:
    first = RICH.model_copy(update={"max_cost": Money(amount="35", currency="EUR")})
    body = writer.encode(first, from_agency="A", to_agency="B")
    retry = body.replace(b"<requestType>New</requestType>", b"<requestType>Retry</requestType>")
    retry = retry.replace(b"<monetaryValue>35", b"<monetaryValue>60")  # a higher maximum cost
    message = codec.to_canonical(codec.parse(retry))
    assert message.event is Event.RETRY
    # With a new id (r-24) it names the earlier request (r-23, requestingAgencyPreviousRequestId):
    # that request's transaction is continued; the new id is kept.
    assert (message.request_id, message.previous_request_id) == ("r-23", "r-24")
    assert message.max_cost == Money(amount="60", currency="EUR")
    # Everything a request carries is read, as for a New one.
    new = codec.to_canonical(codec.parse(body))
    assert message.bibliographic == new.bibliographic and message.bibliographic is not None
    # Keeping its own id, it names itself.
    same = retry.replace(
        b"<requestingAgencyPreviousRequestId>r-23<", b"<requestingAgencyPreviousRequestId>r-24<"
    )
    again = codec.to_canonical(codec.parse(same))
    assert (again.event, again.request_id, again.previous_request_id) == (Event.RETRY, "r-24", None)
    assert Event.RETRY in CONNECTOR.codec.events_in
