"""ARTEmail: orders rendered exactly as the samples, every sample read back, every BLDSS
reply code mapped to its evidence, unknown references and codes never dropped."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.artemail import CONNECTOR
from connectors.artemail.batch import merge
from connectors.artemail.codec import ArtemailCodec
from connectors.artemail.codes import CODES
from connectors.artemail.order import read_order
from connectors.core.contract import Fault, Limits, Outgoing, Refusal
from connectors.core.directory import Partner
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    NotApplicable,
    RenderError,
    RequestFormat,
    ServiceType,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards" / "artemail" / "samples"
ALL = sorted(SAMPLES.glob("*.txt"))
ENV = {"BL_CODE": "00-0000", "BL_PW": "XXXXXXX"}
REF = "t0123456789abcdef.1"


def bl(**options: object) -> Partner:
    return Partner(
        symbol="BL",
        name="British Library",
        protocol="artemail",
        lends=False,
        options={
            "address": "artemail@art.bl.uk",
            "reply_to": "bl-replies@hub.example.org",
            "customer_code_env": "BL_CODE",
            "password_env": "BL_PW",
            "copy_keyword": "PTW",
            "copy_email": "ill@library.example.ac.uk",
            **options,
        },
    )


def body_of(raw: bytes) -> str:
    """The body as sent, with the wire's CRLF line ends shown as the samples' LF."""
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def article_1301() -> Message:
    return Message(
        event=Event.REQUEST,
        transaction_id="t0000000000001301",
        request_id="UH-1301",
        service_type=ServiceType.COPY,
        request_format=RequestFormat.DIGITAL,
        bibliographic=Bibliographic(
            title="Death Studies",
            title_of_component="A revised death anxiety scale",
            author_of_component="Thorson, J.A.",
            publication_date="1992",
            pages_requested="507-",
            issn="0748-1187",
            volume="16",
            issue="6",
        ),
        extensions={"bibliographic": {"genre": "article"}},
        timestamp=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )


def article_1201() -> Message:
    return Message(
        event=Event.REQUEST,
        transaction_id="t0000000000001201",
        request_id="UH-1201",
        service_type=ServiceType.COPY,
        request_format=RequestFormat.DIGITAL,
        bibliographic=Bibliographic(
            title="Journal of Social Issues",
            title_of_component="Developing the research basis for controlling bias in hiring",
            author_of_component="Bendick Jr, M.",
            publication_date="2013",
            pages_requested="238-",
            issn="0022-4537",
            volume="68",
        ),
        timestamp=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )


def book_1202() -> Message:
    return Message(
        event=Event.REQUEST,
        transaction_id="t0000000000001202",
        request_id="UH-1202",
        service_type=ServiceType.LOAN,
        request_format=RequestFormat.PHYSICAL,
        bibliographic=Bibliographic(
            title="Property and wealth in classical Sparta",
            publisher="Duckworth and the Classical Press of Wales",
            place_of_publication="London",
            publication_date="2000",
            isbn="0715630407",
        ),
        timestamp=datetime(2026, 12, 1, 10, 1, tzinfo=UTC),
    )


def render(message: Message, partner: Partner | None = None) -> bytes:
    codec = ArtemailCodec(environ=ENV)
    return codec.render(Outgoing(message, "HUB", partner or bl()))


def test_single_article_order_matches_the_sample_byte_for_byte() -> None:
    raw = render(article_1301())
    sample = (SAMPLES / "request-single-article-ptw.txt").read_bytes()
    assert raw.split(b"\r\n\r\n", 1)[1] == sample.replace(b"\n", b"\r\n")  # on the wire
    assert body_of(raw) == (SAMPLES / "request-single-article-ptw.txt").read_text()
    mail = email.message_from_bytes(raw)
    assert mail["Subject"] == "FILEREFNO UH-1301"
    assert mail["To"] == "artemail@art.bl.uk"
    assert mail["From"] == "bl-replies@hub.example.org"


def test_batched_orders_match_the_batch_sample_byte_for_byte() -> None:
    merged = merge([render(article_1201()), render(book_1202())])
    assert body_of(merged) == (SAMPLES / "request-batch-article-ptw-and-book-loan.txt").read_text()


def test_a_resent_order_is_the_same_mail() -> None:
    assert render(article_1301()) == render(article_1301())
    other = article_1301().model_copy(update={"request_id": "UH-1302"})
    assert (
        email.message_from_bytes(render(other))["Message-ID"]
        != email.message_from_bytes(render(article_1301()))["Message-ID"]
    )


@pytest.mark.parametrize("sample", ALL, ids=[p.name for p in ALL])
def test_every_sample_reads_back(sample: Path) -> None:
    text = sample.read_text()
    order = read_order(text)
    assert order.customer == "00-0000"
    assert all(len(line) <= 40 for r in order.requests for line in r.lines)
    decoded = ArtemailCodec().decode(sample.read_bytes(), "TEST", Limits(max_body_bytes=1_000_000))
    assert decoded.message.event is Event.REQUEST
    assert [m.request_id for m in decoded.messages] == [r.reference for r in order.requests]
    assert all(m.event is Event.REQUEST for m in decoded.messages)


def test_an_order_of_several_requests_reads_each_completely() -> None:
    """Issue 26: an order mail kept its first request only; every request is read whole."""
    sample = SAMPLES / "request-batch-article-ptw-and-book-loan.txt"
    raw = (
        b"From: ill@library.example.ac.uk\r\nSubject: order\r\n\r\n"
        + sample.read_bytes().replace(b"\n", b"\r\n")
    )
    article, book = ArtemailCodec().decode(raw, "UH", Limits(max_body_bytes=1 << 20)).messages
    assert article.service_type is ServiceType.COPY and book.service_type is ServiceType.LOAN
    assert article.bibliographic == Bibliographic(
        title="Journal of Social Issues",
        publication_date="2013",
        volume="68",
        pages_requested="238-",
        title_of_component="Developing the research basis for contro",
        author_of_component="Bendick Jr, M.",
        issn="0022-4537",
    )
    assert article.delivery_email == "ill@library.example.ac.uk"
    assert book.request_id == "UH-1202"
    assert book.bibliographic is not None
    assert book.bibliographic.title == "Property and wealth in classical Sparta"
    assert (book.bibliographic.publication_date, book.bibliographic.isbn) == ("2000", "0715630407")
    # A book's second line is its author or, with none, its publisher (the format does not
    # say which): kept whole beside the fields.
    assert book.extensions["artemail"]["lines"][1] == "Duckworth and the Classical Press of Wal"


_GAP = "\r\n" * 4


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        (["TX\r\nA title"], "without a reference"),
        (["TXA-1 S LOAN\r\nOne title", "TXA-1 S LOAN\r\nAnother"], "given twice"),
        (["TXA-1 S LOAN", "TXA-2 S LOAN\r\nA title"], "has no bibliographic lines"),
    ],
)
def test_an_order_with_a_block_that_cannot_be_taken_is_refused_whole(
    blocks: list[str], why: str
) -> None:
    """Never half read: a bare TX line, a reference given twice (both would be one
    transaction, the second refused after the first was taken) or a block with no lines
    refuses the whole mail, before anything of it is taken."""
    body = "87-1\r\nPW" + _GAP + _GAP.join(blocks) + _GAP + "NNNN\r\n"
    raw = f"From: ill@library.example.ac.uk\r\nSubject: order\r\n\r\n{body}".encode()
    with pytest.raises(Refusal, match=why) as caught:
        ArtemailCodec().decode(raw, "UH", Limits(max_body_bytes=1 << 20))
    assert caught.value.stage == "parse"


def test_keywords_follow_options_and_request() -> None:
    message = article_1301().model_copy(update={"request_format": RequestFormat.PHYSICAL})
    partner = bl(service="SW", copyright_fee_paid=True, no_waiting_list=True)
    assert body_of(render(message, partner)).splitlines()[6] == "TXUH-1301 SW PHOTO COPYRT WLX"


def test_long_values_are_cut_to_40_ascii_characters_and_postal_lines_to_six() -> None:
    message = book_1202().model_copy(
        update={
            "bibliographic": Bibliographic(title="Ærø: " + "é" * 60, author="Zoë Müller"),
            "delivery_address": "\n".join(f"line {i}" for i in range(9)),
        }
    )
    lines = body_of(render(message)).splitlines()
    assert lines[7] == "r: " + "e" * 37  # Æ and ø have no ASCII decomposition
    assert lines[8] == "Zoe Muller"
    deliver = lines.index(":DELIVER ABOVE ITEM TO:")
    assert lines[deliver + 1 : deliver + 8] == [f"line {i}" for i in range(6)] + [""]


def test_steps_the_bl_takes_no_mail_for_are_not_applicable() -> None:
    codec = ArtemailCodec(environ=ENV)
    cancel = Message(event=Event.CANCEL, request_id=REF)
    with pytest.raises(NotApplicable):
        codec.render(Outgoing(cancel, "HUB", bl()))
    assert Event.CANCEL in codec.not_applicable and Event.RENEW in codec.not_applicable


def test_missing_customer_code_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="BL_CODE"):
        ArtemailCodec(environ={}).render(Outgoing(article_1301(), "HUB", bl()))


def reply(line: str, subject: str = f"BLDSS status FILEREFNO {REF}") -> bytes:
    return (
        f"From: bldss@bl.uk\r\nTo: bl-replies@hub.example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <r1@bl.uk>\r\n\r\nBritish Library status report\r\n"
        f"BL order W000123 for your request TX{REF}\r\n{line}\r\n"
    ).encode()


EXPECTED: dict[str, tuple[str, Event, dict[str, object]]] = {
    "CANC": ("CANC Cancelled at your request", Event.UNFILLED, {}),
    "CAT*REAPPLY": ("CAT*REAPPLY 6 being catalogued", Event.RETRY_POSSIBLE, {}),
    "CRF*CANNOT MATCH ITEM": ("CRF*CANNOT MATCH ITEM", Event.UNFILLED, {"reason": 17}),
    "DIRECT": ("DIRECT supplied by another library", Event.LENDER_NOTE, {}),
    "DUE": (
        "DUE 15-02-2027 Loan despatched",
        Event.LOANED,
        {"due": datetime(2027, 2, 15, tzinfo=UTC)},
    ),
    "DUE*AUTOMATIC RENEWAL PENDING": ("DUE*AUTOMATIC RENEWAL PENDING", Event.LENDER_NOTE, {}),
    "DUE WAIT": ("DUE WAIT 01-03-2027", Event.LENDER_NOTE, {}),
    "*FINAL DEMAND": ("*FINAL DEMAND please return", Event.OVERDUE, {}),
    "*INVALID ORDERING OPTIONS": ("*INVALID ORDERING OPTIONS", Event.UNFILLED, {"reason": 23}),
    "NCANC": ("NCANC already despatched", Event.CANCEL_REPLY, {"answer": False}),
    "NO RENEW": (
        "NO RENEW item requested by another reader",
        Event.RENEW_ANSWER,
        {"answer": False},
    ),
    "NOT": ("NOT not available for loan", Event.UNFILLED, {"reason": 27}),
    "NOT*NUKL": ("NOT*NUKL", Event.UNFILLED, {"reason": 18}),
    "RCOP": ("RCOP copy request noted", Event.LENDER_NOTE, {}),
    "RENEWED*": (
        "RENEWED*20-04-2027",
        Event.RENEW_ANSWER,
        {"answer": True, "due": datetime(2027, 4, 20, tzinfo=UTC)},
    ),
    "SHIPPED COPY": ("SHIPPED COPY sent by secure electronic delivery", Event.COPY_COMPLETED, {}),
    "*TOTAL LIBRARY": ("*TOTAL LIBRARY", Event.LENDER_NOTE, {}),
    "*TOTAL LIBRARY MAX COST": (
        "*TOTAL LIBRARY MAX COST 45.50",
        Event.CONDITIONAL,
        {"cost": Decimal("45.50")},
    ),
    "TOTAL LOAN*MORE THAN 1 VOLUME": ("TOTAL LOAN*MORE THAN 1 VOLUME", Event.LENDER_NOTE, {}),
    "USE O/D": ("USE O/D", Event.LENDER_NOTE, {}),
    "USE*": ("USE*12345", Event.LENDER_NOTE, {}),
}


def test_the_table_covers_every_reply_code() -> None:
    assert set(EXPECTED) == set(CODES)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_every_reply_code_becomes_its_evidence(code: str) -> None:
    line, event, expect = EXPECTED[code]
    message = ArtemailCodec().decode(reply(line), "BL", Limits(max_body_bytes=1_000_000)).message
    assert message.event is event
    assert message.request_id == REF and message.sender == "BL"
    assert message.extensions["artemail"]["code"] == code
    assert message.note and line in message.note
    if "answer" in expect:
        assert message.answer is expect["answer"]
    if "due" in expect:
        assert message.due_date == expect["due"]
    if "reason" in expect:
        assert message.reason is not None and message.reason.code == expect["reason"]
    if "cost" in expect:
        assert message.cost is not None and message.cost.amount == expect["cost"]
    assert event in CONNECTOR.codec.events_in


def test_reference_found_in_the_subject_only() -> None:
    raw = (f"From: b@bl.uk\r\nSubject: Re: FILEREFNO {REF}\r\n\r\nSHIPPED COPY\r\n").encode()
    assert (
        ArtemailCodec().decode(raw, "BL", Limits(max_body_bytes=10_000)).message.request_id == REF
    )


def test_unknown_code_with_a_reference_is_a_notification_with_the_text() -> None:
    message = (
        ArtemailCodec()
        .decode(reply("ZZTOP something new"), "BL", Limits(max_body_bytes=10_000))
        .message
    )
    assert message.event is Event.LENDER_NOTE
    assert message.note and "ZZTOP something new" in message.note


def test_unknown_reference_is_refused_not_dropped() -> None:
    raw = b"From: b@bl.uk\r\nSubject: status\r\n\r\nDUE 01-01-2027\r\n"
    with pytest.raises(Refusal) as caught:
        ArtemailCodec().decode(raw, "BL", Limits(max_body_bytes=10_000))
    assert caught.value.answer.status == 404 and b"unknown_request" in caught.value.answer.body


def test_plain_body_reply_reads_too() -> None:
    text = f"TX{REF}\nNOT*NUKL\n".encode()
    assert (
        ArtemailCodec().decode(text, "BL", Limits(max_body_bytes=10_000)).message.event
        is Event.UNFILLED
    )


def test_a_reply_about_two_requests_reports_on_each() -> None:
    """Issue 26: such a mail was refused whole; each report now reaches its own request."""
    other = "t00000000000000ff.2"
    raw = f"Subject: x\r\n\r\nTX{REF}\r\nDUE 01-01-2027\r\nTX{other}\r\nNOT\r\n".encode()
    decoded = ArtemailCodec().decode(raw, "BL", Limits(max_body_bytes=10_000))
    found = [(m.request_id, m.event) for m in decoded.messages]
    assert found == [(REF, Event.LOANED), (other, Event.UNFILLED)]
    assert decoded.messages[0].due_date is not None


def test_a_reply_with_a_report_naming_no_request_is_refused_whole() -> None:
    """The first report names its request, the second none (the mail carries two references,
    so it cannot take the mail's): nothing of the mail is applied."""
    other = "t00000000000000ff.2"
    raw = f"Subject: x\r\n\r\nNOT\r\nTX{REF}\r\nDUE 01-01-2027\r\nTX{other}\r\n".encode()
    with pytest.raises(Refusal, match="no reference"):
        ArtemailCodec().decode(raw, "BL", Limits(max_body_bytes=10_000))


def test_reference_pattern_is_partner_data() -> None:
    import re

    codec = ArtemailCodec()
    codec.patterns["BL"] = re.compile(r"YOUR REF (?P<ref>\S+)")
    raw = b"Subject: x\r\n\r\nYOUR REF UH-77\r\nSHIPPED COPY\r\n"
    assert codec.decode(raw, "BL", Limits(max_body_bytes=10_000)).message.request_id == "UH-77"


def test_faults_name_the_fault() -> None:
    answer = ArtemailCodec().fault(Fault.TOO_LARGE, "too big")
    assert answer.body == b"too_large: too big"


def test_an_order_reads_back_beyond_its_first_line() -> None:
    """Issue 24: an order kept only its title; the author, citation line, article title and
    standard number stayed in extensions."""
    decoded = ArtemailCodec().decode(render(article_1301()), "X", Limits(max_body_bytes=1 << 20))
    bib = decoded.message.bibliographic
    assert bib is not None
    expected = article_1301().bibliographic
    assert expected is not None
    for field in (
        "title",
        "title_of_component",
        "author_of_component",
        "publication_date",
        "volume",
        "issue",
        "pages_requested",
        "issn",
    ):
        assert getattr(bib, field) == getattr(expected, field), field
    book = book_1202().model_copy(
        update={
            "bibliographic": Bibliographic(
                title="Kater Murr",
                author="Hoffmann, E.T.A.",
                publisher="Reclam",
                place_of_publication="Stuttgart",
                publication_date="1986",
                edition="2nd ed",
                isbn="3150001531",
            )
        }
    )
    back = ArtemailCodec().decode(render(book), "X", Limits(max_body_bytes=1 << 20)).message
    assert back.bibliographic == book.bibliographic
    # A volume and part of a multi-volume book keep apart from its edition (they shared the
    # year line, and the reader took all of it after the year for the edition).
    assert book.bibliographic is not None
    # A volume or part of several words stays whole; so does a publisher named "PT ...".
    for volumes in (
        {"volume": "2", "part": "1"},
        {"volume": "12"},
        {"part": "B"},
        {"volume": "2 suppl"},
        {"part": "B 2"},
        {"volume": "2 suppl", "edition": None},
        {"volume": "12", "edition": "Rev. ed."},
        {"publisher": "PT Gramedia Pustaka Utama", "place_of_publication": "Jakarta"},
    ):
        volume = book.model_copy(
            update={"bibliographic": book.bibliographic.model_copy(update=volumes)}
        )
        back = ArtemailCodec().decode(render(volume), "X", Limits(max_body_bytes=1 << 20)).message
        assert back.bibliographic == volume.bibliographic, volumes


def test_a_title_without_an_ascii_letter_is_refused_not_sent_garbled() -> None:
    """A Greek or CJK title folds to nothing in ARTEmail's ASCII: the order's first line would
    be the citation line, and the BL would read a wrong order. It is refused, saying why."""
    from connectors.artemail import order as orders
    from connectors.core.model import Bibliographic, Event, Message, ServiceType

    greek = Message(
        event=Event.REQUEST,
        service_type=ServiceType.COPY,
        bibliographic=Bibliographic(title="Ἀρχαιολογικὴ Ἐφημερίς", volume="84", issn="0025-6196"),
    )
    with pytest.raises(orders.OrderError, match="ASCII"):
        orders.bibliographic_lines(greek)


@pytest.mark.parametrize(
    ("date", "pages", "line"),
    [
        ("2021-01-01", "238", "2021 VOL 58 PP 238-"),  # issue 26: a whole date, a start page
        ("Spring 2021", "238-", "2021 VOL 58 PP 238-"),
        ("2021", "238-250", "2021 VOL 58 PP 238-250"),
        ("2021", "e1234", "2021 VOL 58 PP e1234-"),
        ("n.d.", "iv-x", "n.d. VOL 58 PP iv-x"),
    ],
)
def test_the_citation_line_writes_the_year_alone_and_an_open_start_page(
    date: str, pages: str, line: str
) -> None:
    from connectors.artemail import order as orders

    message = article_1301().model_copy(
        update={
            "bibliographic": Bibliographic(
                title="J",
                title_of_component="A",
                publication_date=date,
                volume="58",
                pages_requested=pages,
                issn="0748-1187",
            )
        }
    )
    assert orders.bibliographic_lines(message)[1] == line
