"""The hand-written samples of examples/samples/{artemail,openurl,illiad-email}: written from
the formats in shared/standards (ARTEmail's order layout and BLDSS reply codes, OpenURL 0.1
and 1.0 KEV, ILLiad's e-mail import markers), each read by the hub's codecs as what it shows.
Every BLDSS code has its report; the simulated British Library (`rshub peer`) writes each
step the way its sample reads; the hub writes ILLiad's import mails as its samples are."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.artemail import simulator as bl
from connectors.artemail.codec import CODEC as ARTEMAIL
from connectors.artemail.codes import CODES
from connectors.core.contract import Limits
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    NotApplicable,
    RequestFormat,
    ServiceType,
)
from connectors.illiad_email.codec import body as illiad_body
from connectors.illiad_email.options import DEFAULT_MARKERS, IlliadEmailOptions
from connectors.openurl.codec import CODEC as OPENURL

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "samples"
REF, REF2 = "t0123456789abcdef.1", "t0123456789abcdef.2"


def _artemail(name: str) -> list[Message]:
    decoded = ARTEMAIL.decode((SAMPLES / "artemail" / name).read_bytes(), "BL", Limits())
    return [decoded.message, *decoded.more]


# order file -> (reference, loan or copy, title) of each request in it
ORDERS: dict[str, list[tuple[str, ServiceType, str]]] = {
    "order-loan.eml": [(REF, ServiceType.LOAN, "The Name of the Rose")],
    "order-copy.eml": [(REF, ServiceType.COPY, "Death Studies")],
    "order-batch.eml": [
        (REF, ServiceType.COPY, "Death Studies"),
        (REF2, ServiceType.LOAN, "Property and wealth in classical Sparta"),
    ],
}


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_an_order_reads_as_one_request_per_tx_block(name: str) -> None:
    messages = _artemail(name)
    got = [
        (m.request_id, m.service_type, m.bibliographic.title if m.bibliographic else None)
        for m in messages
    ]
    assert got == ORDERS[name]
    assert all(m.event is Event.REQUEST for m in messages)


def test_the_loan_order_carries_its_book_and_postal_address() -> None:
    (loan,) = _artemail("order-loan.eml")
    # FORMAT.md's book lines: title / author / publisher and place / year / ISBN (the BL's
    # publisher line is one line: the place is not told apart from it).
    assert loan.bibliographic == Bibliographic(
        title="The Name of the Rose",
        author="Eco, Umberto",
        publisher="Harcourt San Diego",
        publication_date="1983",
        isbn="9780151446476",
    )
    assert loan.delivery_address and loan.delivery_address.endswith("Northtown NT1 2AB")
    (copy,) = _artemail("order-copy.eml")
    assert copy.delivery_email == "ill@north.example.ac.uk"
    assert copy.bibliographic and copy.bibliographic.issn == "0748-1187"


# report file -> (event, what else it says)
REPORTS: dict[str, tuple[Event, dict[str, Any]]] = {
    "report-due.eml": (Event.LOANED, {"due_date": datetime(2026, 4, 1, tzinfo=UTC)}),
    "report-shipped-copy.eml": (Event.COPY_COMPLETED, {}),
    "report-not.eml": (Event.UNFILLED, {"reason": 27}),
    "report-not-nukl.eml": (Event.UNFILLED, {"reason": 18}),
    "report-crf.eml": (Event.UNFILLED, {"reason": 17}),
    "report-invalid-options.eml": (Event.UNFILLED, {"reason": 23}),
    "report-canc.eml": (Event.UNFILLED, {"reason": 27}),
    "report-ncanc.eml": (Event.CANCEL_REPLY, {"answer": False}),
    "report-renewed.eml": (
        Event.RENEW_ANSWER,
        {"answer": True, "due_date": datetime(2026, 4, 29, tzinfo=UTC)},
    ),
    "report-no-renew.eml": (Event.RENEW_ANSWER, {"answer": False}),
    "report-final-demand.eml": (Event.OVERDUE, {}),
    "report-cat-reapply.eml": (Event.RETRY_POSSIBLE, {}),
    "report-max-cost.eml": (Event.CONDITIONAL, {"cost": "24.50"}),
    "report-due-wait.eml": (Event.LENDER_NOTE, {}),
    "report-auto-renewal.eml": (Event.LENDER_NOTE, {}),
    "report-direct.eml": (Event.LENDER_NOTE, {}),
    "report-use-od.eml": (Event.LENDER_NOTE, {}),
    "report-use-number.eml": (Event.LENDER_NOTE, {"number": "2184"}),
    "report-rcop.eml": (Event.LENDER_NOTE, {}),
    "report-total-library.eml": (Event.LENDER_NOTE, {}),
    "report-more-volumes.eml": (Event.LENDER_NOTE, {}),
    "report-uncoded.eml": (Event.LENDER_NOTE, {"code": ""}),
}


def _says(message: Message, key: str) -> Any:
    if key == "reason":
        return message.reason.code if message.reason else None
    if key == "cost":
        return str(message.cost.amount) if message.cost else None
    if key in ("number", "code"):
        return message.extensions["artemail"].get(key)
    return getattr(message, key)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_a_report_reads_as_its_step_for_our_reference(name: str) -> None:
    (message,) = _artemail(name)
    event, says = REPORTS[name]
    assert (message.event, message.request_id) == (event, REF)
    assert {key: _says(message, key) for key in says} == says


def test_every_bldss_code_has_a_sample_report() -> None:
    codes = {_artemail(name)[0].extensions["artemail"]["code"] for name in REPORTS}
    assert set(CODES) <= codes, set(CODES) - codes


def test_one_mail_reports_on_two_requests() -> None:
    copy, loan = _artemail("report-two-requests.eml")
    assert (copy.event, copy.request_id) == (Event.COPY_COMPLETED, REF)
    assert (loan.event, loan.request_id) == (Event.LOANED, REF2)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_the_simulated_british_library_writes_each_step_as_its_sample_reads(name: str) -> None:
    (sample,) = _artemail(name)
    try:
        written = bl.report(sample, "bldss@bl.uk", "hub-bl@north.example.ac.uk")
    except NotApplicable:
        pytest.skip(f"the simulator writes no {sample.event.value}")
    decoded = ARTEMAIL.decode(written, "BL", Limits()).message
    assert (decoded.event, decoded.request_id) == (sample.event, sample.request_id)
    for key in ("due_date", "answer"):
        assert getattr(decoded, key) == getattr(sample, key), key


# OpenURL link -> (version, genre, loan or copy, title, standard number)
LINKS: dict[str, tuple[str, str, ServiceType, str, str | None]] = {
    "book-1.0.kev": ("1.0", "book", ServiceType.LOAN, "The Name of the Rose", "9780151446476"),
    "article-1.0.kev": ("1.0", "article", ServiceType.COPY, "Death Studies", "0748-1187"),
    "chapter-1.0.kev": (
        "1.0",
        "bookitem",
        ServiceType.COPY,
        "Handbook of Death and Dying",
        "9780761925149",
    ),
    "dissertation-1.0.kev": (
        "1.0",
        "dissertation",
        ServiceType.LOAN,
        "Interlibrary loan networks in northern Europe",
        None,
    ),
    "book-0.1.kev": ("0.1", "book", ServiceType.LOAN, "The Name of the Rose", "9780151446476"),
    "article-0.1.kev": ("0.1", "article", ServiceType.COPY, "Death Studies", "0748-1187"),
}


def test_every_link_sample_is_listed() -> None:
    assert {p.name for p in (SAMPLES / "openurl").glob("*.kev")} == set(LINKS)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_a_link_reads_as_a_request(name: str) -> None:
    version, genre, service, title, number = LINKS[name]
    message = OPENURL.decode((SAMPLES / "openurl" / name).read_bytes(), "NORTH", Limits()).message
    extension = message.extensions["openurl"]
    assert (extension["version"], extension["genre"]) == (version, genre)
    assert message.event is Event.REQUEST and message.service_type is service
    bib = message.bibliographic
    assert bib is not None and bib.title == title
    assert number in (bib.isbn, bib.issn)


def test_the_article_links_name_the_article_its_pages_and_doi() -> None:
    for name in ("article-1.0.kev", "article-0.1.kev"):
        message = OPENURL.decode((SAMPLES / "openurl" / name).read_bytes(), "N", Limits()).message
        bib = message.bibliographic
        assert bib is not None
        assert (bib.title_of_component, bib.pages_requested, bib.doi) == (
            "A revised death anxiety scale",
            "507-521",
            "10.1080/07481189208252595",
        )
        assert message.request_format is RequestFormat.DIGITAL


# ILLiad import mail -> the canonical request the hub wrote it from
ILLIAD: dict[str, Message] = {
    "request-loan.eml": Message(
        event=Event.REQUEST,
        request_id="NORTH-1001",
        patron_id="patron-42",
        service_type=ServiceType.LOAN,
        request_format=RequestFormat.PHYSICAL,
        need_before=datetime(2026, 5, 1, tzinfo=UTC),
        bibliographic=Bibliographic(
            title="The Name of the Rose",
            author="Eco, Umberto",
            publisher="Harcourt",
            place_of_publication="San Diego",
            publication_date="1983",
            isbn="9780151446476",
        ),
    ),
    "request-article.eml": Message(
        event=Event.REQUEST,
        request_id="NORTH-1002",
        patron_id="patron-42",
        service_type=ServiceType.COPY,
        request_format=RequestFormat.DIGITAL,
        bibliographic=Bibliographic(
            title="Death Studies",
            title_of_component="A revised death anxiety scale",
            author_of_component="Thorson, James",
            volume="16",
            issue="6",
            publication_date="1992",
            pages_requested="507-521",
            issn="0748-1187",
        ),
    ),
}
ILLIAD_BASE = "https://illiad.north.example.edu/illiad/illiad.dll"


def _text(raw: bytes) -> str:
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


@pytest.mark.parametrize("name", sorted(ILLIAD))
def test_an_illiad_import_mail_is_what_the_hub_writes(name: str) -> None:
    text = _text((SAMPLES / "illiad-email" / name).read_bytes())
    # ILLiad finds each value after its marker; Username is the one field it requires.
    fields = [line.split(": ", 1) for line in text.split("\n\n")[0].splitlines()]
    markers = [f"{marker}:" for marker, _value in fields]
    assert markers[0] == "Username:" and set(markers) <= set(DEFAULT_MARKERS)
    assert markers == [m for m in DEFAULT_MARKERS if m in markers]  # the table's order
    options = IlliadEmailOptions(openurl_base=ILLIAD_BASE)
    assert illiad_body(ILLIAD[name], options) == text
    # The staff link is ILLiad's OpenURL entry, read by the OpenURL codec as the same item.
    link = text.rstrip("\n").splitlines()[-1]
    message = OPENURL.decode(link.encode(), "NORTH", Limits()).message
    expected = ILLIAD[name].bibliographic
    assert message.bibliographic and expected
    assert message.bibliographic.title == expected.title
    assert message.service_type is ILLIAD[name].service_type
