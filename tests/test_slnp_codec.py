"""The SLNP codec against every shared sample, the canonical mapping both ways, and replies."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.core.contract import Fault, Limits, Outgoing, Refusal
from connectors.core.directory import Partner
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RenderError,
    RequestFormat,
    ServiceType,
    transaction_id,
)
from connectors.slnp import CONNECTOR, vocabulary
from connectors.slnp.codec import (
    ORDER_NUMBER_DIGITS,
    SlnpCodec,
    is_order_number,
    order_number,
)
from connectors.slnp.models import SlnpCorrelation
from connectors.slnp.wire import parse_command, parse_response, render_command, render_response

SAMPLES = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "standards" / "slnp" / "samples"
)
REQUESTS = sorted(SAMPLES.glob("*.request.txt"))
RESPONSES = sorted(SAMPLES.glob("*.response.txt"))
codec = SlnpCodec()


def test_the_samples_are_there() -> None:
    assert len(REQUESTS) == 4 and len(RESPONSES) == 4


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_each_sample_request_is_answered_as_the_sample_says(path: Path) -> None:
    expected = path.with_name(path.name.replace("request", "response")).read_text()
    try:
        decoded = codec.decode(path.read_bytes(), "ZFL", Limits(max_body_bytes=1 << 20))
    except Refusal as refusal:
        assert refusal.answer.body.decode() == expected
        return
    answer = codec.accept(decoded).body.decode()
    # The local order number is each system's own (the sample's server said 73).
    ours = parse_response(answer)
    theirs = parse_response(expected)
    assert ours.command == theirs.command == "SLNPFLBestellung"
    assert [k for k, _ in ours.items] == [k for k, _ in theirs.items]  # type: ignore[misc]
    assert ours.get("OKMsg") == theirs.get("OKMsg")
    # A number, as ZFL clients expect (issue 26): the transaction's.
    number = ours.get("PFLNummer") or ""
    assert number.isdigit() and len(number) == ORDER_NUMBER_DIGITS
    assert number == order_number(transaction_id("ZFL", "BsNr1234"))


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_each_sample_request_round_trips_through_the_text_form(path: Path) -> None:
    text = path.read_text()
    try:
        command = parse_command(text)
    except ValueError:
        assert "BsArt=PFL" in text  # the format-error sample is not a command
        return
    assert render_command(command) == text
    assert parse_command(render_command(command, "\r\n")) == command


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_each_sample_response_round_trips(path: Path) -> None:
    text = path.read_text()
    response = parse_response(text)
    assert render_response(response) == text
    assert response.ok == path.name.startswith("01")


def test_the_minimal_order_in_canonical_form() -> None:
    decoded = codec.decode(
        (SAMPLES / "01-flbestellung-pfl-minimal.request.txt").read_bytes(),
        "ZFL",
        Limits(max_body_bytes=1 << 20),
    )
    message = decoded.message
    assert message.event is Event.REQUEST
    assert (message.sender, message.request_id, message.from_agency) == (
        "ZFL",
        "BsNr1234",
        "123ABC",
    )
    assert message.patron_id == "4711"
    assert message.bibliographic == Bibliographic(
        title="Kater Murr019", isbn="1234567890", call_number="MSIG Z12"
    )
    assert message.service_type is ServiceType.LOAN
    assert message.correlation == SlnpCorrelation(
        request_id="BsNr1234",
        order_id="BsNr1234",
        sigel_nb="123ABC",
        order_type="PFL",
        local_number=order_number(transaction_id("ZFL", "BsNr1234")),
    )
    # Nothing is dropped: the unknown parameter and the empty ones are kept.
    assert message.extensions["slnp"]["WRONGBenutzerNummer"] == "00000000114"
    assert message.extensions["slnp"]["BsTyp"] == "PFL"


def order(**params: str) -> bytes:
    base = {
        "BsTyp": "PFL",
        "SigelNB": "123ABC",
        "BestellId": "B1",
        "BenutzerNummer": "9",
        "Titel": "T",
    }
    base.update(params)
    lines = ["SLNPFLBestellung", *(f"{k}:{v}" for k, v in base.items()), "SLNPEndCommand", ""]
    return "\n".join(lines).encode()


def test_every_optional_order_parameter_lands_somewhere() -> None:
    body = order(
        BsTyp="AFL",
        BsTyp2="C",
        SigelListe="456DEF:789GHI",
        Verfasser="Hoffmann, E. T. A.",
        AufsatzTitel="Kapitel",
        AufsatzAutor="X",
        Auflage="2",
        Seitenangabe="1-9",
        EOrt="Berlin",
        EJahr="1820",
        Verlag="Dümmler",
        ReihenTitel="R",
        Signatur="S",
        Isbn="123",
        Issn="1234-5678",
        TitelId="999999999",
        ErledFrist="31.12.2030",
        MaxKostenKopie="8,50",
        AusgabeOrt="Lesesaal",
        Email1="a@example.org",
        Bemerkung="eilig\\nbitte",
        Vorname="E",
        Nachname="H",
        Strasse1="Weg 1",
        Plz1="12345",
        Ort1="Bamberg",
        HBZId="HT1",
        Info="AFLG:0;SPRCH:0;",
        Band="3",
        Heft="4",
    )
    message = codec.decode(body, "ZFL", Limits(max_body_bytes=1 << 20)).message
    bib = message.bibliographic
    assert bib is not None
    assert (bib.author, bib.publisher, bib.issn, bib.title_of_component) == (
        "Hoffmann, E. T. A.",
        "Dümmler",
        "1234-5678",
        "Kapitel",
    )
    assert bib.local_id is None  # 999999999 is the servers' placeholder, not a record
    assert (bib.volume, bib.issue) == ("3", "4")
    assert message.service_type is ServiceType.COPY
    # A copy is not returned: NCIP lenders tell it from a loan by the format alone.
    assert message.request_format is RequestFormat.NON_RETURNABLE
    assert message.to_agency == "456DEF"  # AFL: the member asked to lend
    assert message.need_before == datetime(2030, 12, 31, tzinfo=UTC)
    assert message.max_cost == Money(amount=Decimal("8.50"), currency="EUR")
    assert message.note == "eilig\nbitte"
    assert message.delivery_address == "E H\nWeg 1\n12345 Bamberg"
    kept = message.extensions["slnp"]
    assert (kept["HBZId"], kept["Info"]) == ("HT1", "AFLG:0;SPRCH:0;")
    assert "Band" not in kept and "Heft" not in kept


@pytest.mark.parametrize(
    ("params", "kind", "names"),
    [
        ({"BsTyp": "XYZ"}, "SLNP_PARAM_VALUE_NOT_VALID", "BsTyp"),
        ({"ErledFrist": "bald"}, "SLNP_PARAM_VALUE_NOT_VALID", "ErledFrist"),
        ({"MaxKostenKopie": "viel"}, "SLNP_PARAM_VALUE_NOT_VALID", "MaxKostenKopie"),
        ({"Titel": "x" * 5000}, "SLNP_PARAM_VALUE_NOT_VALID", "Titel"),
        ({"BestellId": "   "}, "SLNP_MAND_PARAM_LACKING", "BestellId"),
        ({"Verfasser": "a\x00b"}, "SLNP_PARAM_VALUE_NOT_VALID", "Verfasser"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(
    params: dict[str, str], kind: str, names: str
) -> None:
    with pytest.raises(Refusal) as caught:
        codec.decode(order(**params), "ZFL", Limits(max_body_bytes=1 << 20))
    reply = parse_response(caught.value.answer.body.decode())
    assert reply.code == 520 and reply.error_type == kind
    assert f"'{names}'" in reply.text
    assert len(caught.value.answer.body) < 400  # a huge value is not echoed back


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (
            b"SLNPAlleBenutzerDaten\nBenutzerNummer:1\nSLNPEndCommand\n",
            "SLNP_CMD_NOT_IMPLEMENTED",
            520,
        ),
        (b"SLNPFLBestellung\nBsTyp:PFL\n", "SLNP_END_COMMAND_LACKING", 520),
        (
            b"SLNPFLBestellung\nSLNPBegin\nBsTyp:PFL\nSLNPEndCommand\n",
            "SLNP_PARAM_GROUP_ERROR",
            520,
        ),
        (b"SLNPFLBestellung\nSLNPEnd\nSLNPEndCommand\n", "SLNP_PARAM_GROUP_ERROR", 520),
        (
            b"SLNPFLBestellung\n" + b"SLNPBegin\n" * 20 + b"SLNPEndCommand\n",
            "SLNP_PARAM_LEVEL_WRONG",
            520,
        ),
        (b"SLNPFLBestellung\nTitel:\xff\xfe\nSLNPEndCommand\n", "SLNP_REQ_FORMAT_ERROR", 520),
        (b"\x00\x01\x02\nSLNPEndCommand\n", "SLNP_REQ_FORMAT_ERROR", 520),
        (b"", "SLNP_REQ_FORMAT_ERROR", 520),
    ],
)
def test_malformed_commands_get_their_slnp_error(body: bytes, kind: str, code: int) -> None:
    with pytest.raises(Refusal) as caught:
        codec.decode(body, "ZFL", Limits(max_body_bytes=1 << 20))
    reply = parse_response(caught.value.answer.body.decode())
    assert (reply.code, reply.error_type) == (code, kind)


def test_a_command_over_the_limit_is_refused() -> None:
    with pytest.raises(Refusal) as caught:
        codec.decode(order(Bemerkung="x" * 2000), "ZFL", Limits(max_body_bytes=1000))
    assert "longer than 1000 bytes" in caught.value.reason


@pytest.mark.parametrize("word", sorted(vocabulary.STATUS))
def test_each_status_word_is_its_event(word: str) -> None:
    body = f"SLNPFLDatenÄnderung\nBestellId:B1\nStatus:{word}\nSLNPEndCommand\n".encode()
    decoded = codec.decode(body, "ZFL", Limits(max_body_bytes=1 << 20))
    assert decoded.message.event is vocabulary.STATUS[word]
    assert decoded.message.request_id == "B1"
    reply = parse_response(codec.accept(decoded, "Loaned").body.decode())
    assert reply.ok and reply.command == "SLNPFLDatenÄnderung"
    assert reply.get("Zustand") == "Geliefert"  # the state in German


def test_the_ascii_spelling_and_any_case_are_understood() -> None:
    body = b"SLNPFLDatenAenderung\nBestellId:B1\nStatus:geliefert\nLeihfrist:20300131\nMediennummer:X1\nSLNPEndCommand\n"
    message = codec.decode(body, "ZFL", Limits(max_body_bytes=1 << 20)).message
    assert message.event is Event.LOANED
    assert message.due_date == datetime(2030, 1, 31, tzinfo=UTC)
    assert message.item_id == "X1"


def test_a_status_word_outside_the_table_is_refused() -> None:
    with pytest.raises(Refusal) as caught:
        codec.decode(
            b"SLNPFLDatenAenderung\nBestellId:B1\nStatus:Weg\nSLNPEndCommand\n",
            "Z",
            Limits(max_body_bytes=1 << 20),
        )
    assert (
        parse_response(caught.value.answer.body.decode()).error_type == "SLNP_PARAM_VALUE_NOT_VALID"
    )


LENDER = Partner(symbol="ZFL", name="ZFL", protocol="slnp", agency_ids=["456DEF"], lends=False)


def outgoing(message: Message, correlation: SlnpCorrelation | None = None) -> Outgoing:
    return Outgoing(message, "123ABC", LENDER, correlation)


STEPS: dict[Event, dict[str, object]] = {
    Event.LOANED: {"due_date": datetime(2030, 1, 31, tzinfo=UTC), "item_id": "B-77"},
    Event.UNFILLED: {"reason": Reason.from_code(1, note="ausgeliehen")},
    Event.CANCEL_REPLY: {"answer": True},
    Event.RENEW_ANSWER: {"answer": False, "due_date": datetime(2030, 2, 1, tzinfo=UTC)},
    Event.RENEW: {"desired_due_date": datetime(2030, 3, 1, tzinfo=UTC)},
    Event.RECEIVED: {"date_received": datetime(2030, 1, 2, tzinfo=UTC)},
    Event.COPY_COMPLETED: {"cost": Money(amount=Decimal("4.5"), currency="EUR")},
    Event.LENDER_NOTE: {"note": "zwei\nZeilen \\ mit Backslash"},
}


@pytest.mark.parametrize("event", sorted(CONNECTOR.codec.events_out - {Event.REQUEST}))
def test_every_step_renders_and_reads_back_as_itself(event: Event) -> None:
    message = Message(event=event, request_id="t0123456789abcdef.1", **STEPS.get(event, {}))
    correlation = SlnpCorrelation(request_id="BsNr1234", order_id="BsNr1234", local_number="t1")
    body = codec.render(outgoing(message, correlation))
    back = codec.decode(body, "ZFL", Limits(max_body_bytes=1 << 20)).message
    assert back.event is event
    assert back.request_id == "BsNr1234"  # the partner's own order id, from the correlation
    for field, value in STEPS.get(event, {}).items():
        assert getattr(back, field) == value, field


def test_without_correlation_the_hubs_request_id_is_the_order_id() -> None:
    body = codec.render(outgoing(Message(event=Event.CANCEL, request_id="t0123456789abcdef.2")))
    assert parse_command(body.decode()).get("BestellId") == "t0123456789abcdef.2"


def test_a_request_renders_as_an_afl_order_and_reads_back() -> None:
    message = Message(
        event=Event.REQUEST,
        request_id="t0123456789abcdef.1",
        service_type=ServiceType.COPY,
        bibliographic=Bibliographic(
            title="Kater Murr", author="Hoffmann", isbn="123", volume="3", issue="4"
        ),
        need_before=datetime(2030, 5, 1, tzinfo=UTC),
        note="bitte",
        patron_id="secret-patron",
    )
    command = parse_command(codec.render(outgoing(message)).decode())
    assert command.get("BsTyp") == "AFL" and command.get("BsTyp2") == "C"
    assert command.get("SigelListe") == "456DEF" and command.get("SigelNB") == "123ABC"
    assert command.get("BenutzerNummer") == "123ABC"  # the borrowing library, not its patron
    back = codec.decode(
        codec.render(outgoing(message)), "X", Limits(max_body_bytes=1 << 20)
    ).message
    assert back.bibliographic == message.bibliographic
    assert (back.need_before, back.note, back.service_type) == (
        message.need_before,
        "bitte",
        ServiceType.COPY,
    )


def test_partner_options_shape_what_is_written() -> None:
    german = LENDER.model_copy(update={"options": {"date_format": "%d.%m.%Y", "line_end": "crlf"}})
    message = Message(
        event=Event.LOANED, request_id="r", due_date=datetime(2030, 1, 31, tzinfo=UTC)
    )
    body = codec.render(Outgoing(message, "123ABC", german)).decode()
    assert "Leihfrist:31.01.2030\r\n" in body and body.endswith("SLNPEndCommand\r\n")


def test_what_slnp_cannot_say() -> None:
    with pytest.raises(NotApplicable):
        codec.render(outgoing(Message(event=Event.STATUS_QUERY, request_id="r")))
    with pytest.raises(RenderError):
        codec.render(
            outgoing(
                Message(event=Event.REQUEST, request_id="r", bibliographic=Bibliographic(isbn="1"))
            )
        )


def test_the_codec_declares_every_event_once() -> None:
    assert CONNECTOR.codec.events_out | CONNECTOR.codec.not_applicable == set(Event)
    assert not CONNECTOR.codec.events_out & CONNECTOR.codec.not_applicable


@pytest.mark.parametrize(
    ("fault", "code", "kind"),
    [
        (Fault.SYNTAX, 520, "SLNP_REQ_FORMAT_ERROR"),
        (Fault.UNAUTHENTICATED, 510, "SLNP_ACCESS_DENIED"),
        (Fault.UNKNOWN_REQUEST, 510, "RECORD_NOT_FOUND"),
        (Fault.STATE, 520, "SLNP_CMD_EXECUTION_ERROR"),
        (Fault.UNAVAILABLE, 520, "SLNP_SERVICE_UNAVAILABLE"),
    ],
)
def test_faults_are_one_slnp_error_line(fault: Fault, code: int, kind: str) -> None:
    body = codec.fault(fault, "what\nhappened", state="Loaned").body.decode()
    assert body.count("\n") == 1
    reply = parse_response(body)
    assert (reply.code, reply.error_type) == (code, kind)


@pytest.mark.parametrize(
    ("reply", "ok", "retryable"),
    [
        (b"600 SLNPFLBestellung\n601 PFLNummer:7\n250 SLNPEndOfData\n", True, False),
        (b"240 OK: SLNPFLDatenAenderung success \n", True, False),
        (
            b"520 SlnpRequestError: SLNP_MAND_PARAM_LACKING The mandatory SLNP parameter 'Titel' is lacking in request.\n",
            False,
            False,
        ),
        (b"520 SlnpExecutionError: INTERNAL_SERVER_ERROR db down\n", False, True),
        (b"510 OpsBenutzerPinFalsch\n", False, False),
        (b"garbage", False, True),
    ],
)
def test_judging_a_partners_reply(reply: bytes, ok: bool, retryable: bool) -> None:
    attempt = codec.judge(reply)
    assert (attempt.ok, attempt.retryable) == (ok, retryable)
    assert attempt.answer == reply


def test_an_order_says_in_bemerkung_what_it_has_no_parameter_for() -> None:
    message = Message(
        event=Event.REQUEST,
        request_id="t0123456789abcdef.1",
        service_type=ServiceType.COPY,
        bibliographic=Bibliographic(
            title="Zeitschrift für Ostforschung",
            title_of_component="Żywot",
            volume="84",
            issue="3",
            pages_requested="301-329",
            chapter="2",
            doi="10.1000/xyz",
        ),
        delivery_email="fernleihe@example.org",
        max_cost=Money(amount="35"),
        patron_name="Jan Nowak",
    )
    command = parse_command(codec.render(outgoing(message)).decode())
    assert command.get("Seitenangabe") == "301-329"  # the pages to copy
    assert command.get("Email1") == "fernleihe@example.org"
    assert command.get("MaxKostenKopie") is None  # no currency: not taken for euros
    assert command.get("Bemerkung") == (
        "ch. 2; DOI 10.1000/xyz; Maximum cost: 35 (currency not given)"
    )
    back = codec.decode(codec.render(outgoing(message)), "X", Limits(max_body_bytes=1 << 20))
    assert back.message.bibliographic is not None
    assert back.message.bibliographic.pages_requested == "301-329"


# -- issue 26: the order number, German states, a re-sent order -------------------------


@pytest.mark.parametrize(
    "txn",
    [
        "t0000000000000000",
        "tffffffffffffffff",
        "t8000000000000000",  # over a signed 64-bit integer as a whole id
        "t00000000000003e8",  # a small id: no leading zeros in its number
        transaction_id("ZFL", "BsNr1234"),
    ],
)
def test_the_order_number_is_a_number_any_client_keeps_unchanged(txn: str) -> None:
    """ZFL clients take PFLNummer for a number: one they store as a double (Perl, a
    spreadsheet), a signed 64-bit integer or a string of digits must give back the same
    text, and the same order always gets the same number."""
    number = order_number(txn)
    assert number.isdigit() and len(number) == ORDER_NUMBER_DIGITS
    assert str(int(number)) == number  # no leading zero to lose
    assert int(float(number)) == int(number) and int(number) < 2**53  # exact as a double
    assert int(number) < 2**63
    assert is_order_number(number) and is_order_number(f" {number} ")
    assert order_number(txn) == number


@pytest.mark.parametrize(
    "text", ["73", "t0a9d55086e2e7445", "99999999999999999999", "012345678901234", "x" * 15]
)
def test_a_number_not_of_rshubs_form_is_the_partners_own(text: str) -> None:
    assert not is_order_number(text)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_transaction_gets_a_15_digit_number(value: int) -> None:
    number = order_number(f"t{value:016x}")
    assert is_order_number(number) and str(int(number)) == number


def test_the_orders_number_is_kept_and_named_in_the_changes_sent_back() -> None:
    decoded = codec.decode(order(BestellId="BsNr9"), "ZFL", Limits(max_body_bytes=1 << 20))
    number = parse_response(codec.accept(decoded).body.decode()).get("PFLNummer")
    correlation = decoded.message.correlation
    assert isinstance(correlation, SlnpCorrelation) and correlation.local_number == number
    txn = transaction_id("ZFL", "BsNr9")
    loaned = Message(event=Event.LOANED, request_id="BsNr9", transaction_id=txn)
    sent = parse_command(codec.render(outgoing(loaned, correlation)).decode())
    assert (sent.get("BestellId"), sent.get("PFLNummer")) == ("BsNr9", number)
    # A transaction whose correlation predates the number: derived for the borrower.
    bare = SlnpCorrelation(request_id="BsNr9", order_id="BsNr9")
    told = Outgoing(loaned, "456DEF", LENDER, bare, to_borrower=True)
    assert parse_command(codec.render(told).decode()).get("PFLNummer") == number


def change(order_id: str, number: str) -> bytes:
    return (
        f"SLNPFLDatenÄnderung\nBestellId:{order_id}\nStatus:Eingang\nPFLNummer:{number}\n"
        "SLNPEndCommand\n"
    ).encode()


def test_a_change_naming_its_orders_number_or_its_own_is_taken() -> None:
    limits = Limits(max_body_bytes=1 << 20)
    ours = order_number(transaction_id("ZFL", "BsNr9"))
    assert codec.decode(change("BsNr9", ours), "ZFL", limits).message.event is Event.RECEIVED
    theirs = codec.decode(change("BsNr9", "73"), "ZFL", limits).message
    assert isinstance(theirs.correlation, SlnpCorrelation)
    assert theirs.correlation.local_number == "73"  # the partner's own number, kept


def test_a_change_naming_another_orders_number_is_refused() -> None:
    other = order_number(transaction_id("ZFL", "BsNr8"))
    with pytest.raises(Refusal) as caught:
        codec.decode(change("BsNr9", other), "ZFL", Limits(max_body_bytes=1 << 20))
    reply = parse_response(caught.value.answer.body.decode())
    assert reply.error_type == "SLNP_PARAM_VALUE_NOT_VALID" and "PFLNummer" in (reply.text or "")


def test_every_state_has_a_german_word() -> None:
    from hub.domain.lifecycle import State

    assert set(vocabulary.STATES) == {state.value for state in State}
    assert len(set(vocabulary.STATES.values())) == len(vocabulary.STATES)
    assert all(word.isascii() and word.isalpha() for word in vocabulary.STATES.values())
    # A state a status word leads to is named by that word.
    for event in (Event.LOANED, Event.RECEIVED, Event.LOAN_COMPLETED, Event.COPY_COMPLETED):
        assert vocabulary.STATES[event.value] == vocabulary.STATUS_OF[event]


def test_a_state_error_names_the_state_in_german() -> None:
    reply = parse_response(codec.fault(Fault.STATE, "not now", state="LoanCompleted").body.decode())
    assert "Zustand: Erledigt" in (reply.text or "") and "LoanCompleted" not in (reply.text or "")


@pytest.mark.parametrize("state", ["Locating", "Requested", "Unfilled", None])
def test_a_new_order_is_inserted(state: str | None) -> None:
    decoded = codec.decode(order(BestellId="BsNr9"), "ZFL", Limits(max_body_bytes=1 << 20))
    reply = parse_response(codec.accept(decoded, state).body.decode())
    assert reply.get("OKMsg") == "ILL request successfully inserted."
    assert reply.get("Zustand") is None


def test_a_re_sent_order_of_a_completed_loan_is_answered_as_the_first_was() -> None:
    decoded = codec.decode(order(BestellId="BsNr9"), "ZFL", Limits(max_body_bytes=1 << 20))
    first = parse_response(codec.accept(decoded, "Locating").body.decode())
    again = parse_response(codec.accept(decoded, "LoanCompleted").body.decode())
    assert again.ok and again.get("PFLNummer") == first.get("PFLNummer")
    assert again.get("Zustand") == "Erledigt"
    assert again.get("OKMsg") == "ILL request already inserted."


def test_a_re_sent_order_that_differs_is_refused_naming_the_first_ones_number() -> None:
    decoded = codec.decode(order(BestellId="BsNr9"), "ZFL", Limits(max_body_bytes=1 << 20))
    body = codec.fault(Fault.STATE, "Request is not allowed", decoded, "LoanCompleted").body
    reply = parse_response(body.decode())
    assert reply.error_type == "SLNP_CMD_EXECUTION_ERROR"
    number = order_number(transaction_id("ZFL", "BsNr9"))
    assert "Zustand: Erledigt" in (reply.text or "") and number in (reply.text or "")
