"""ILLiad e-mail import: the request mail with the partner's markers, the sample's OpenURL."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from connectors.core.contract import Limits, Outgoing, Refusal
from connectors.core.directory import Partner
from connectors.core.model import Bibliographic, Event, Message, RenderError, ServiceType
from connectors.illiad_email import CONNECTOR
from connectors.illiad_email.codec import IlliadEmailCodec

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards" / "illiad-email" / "samples"
ALL = sorted(SAMPLES.glob("*.txt"))
BASE = "https://illiad.example.edu/illiad/illiad.dll"


def illiad(**options: object) -> Partner:
    return Partner(
        symbol="ILLIAD",
        name="ILLiad",
        protocol="illiad-email",
        lends=False,
        options={"address": "import@illiad.example.edu", "openurl_base": BASE, **options},
    )


def sparta() -> Message:
    return Message(
        event=Event.REQUEST,
        transaction_id="t00000000000000aa",
        request_id="t00000000000000aa.3",
        patron_id="jsmith",
        service_type=ServiceType.LOAN,
        bibliographic=Bibliographic(
            title="Property and wealth in classical Sparta",
            publisher="Duckworth and the Classical Press of Wales",
            place_of_publication="London",
            publication_date="2000",
            isbn="0715630407",
            oclc_number="44786349",
        ),
    )


def body_of(raw: bytes) -> str:
    part = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def test_request_mail_carries_one_field_per_line_with_the_markers() -> None:
    raw = IlliadEmailCodec().render(Outgoing(sparta(), "HUB", illiad()))
    lines = body_of(raw).splitlines()
    assert lines[:3] == ["Username: jsmith", "Request Type: Loan", "Document Type: Book"]
    assert "Title: Property and wealth in classical Sparta" in lines
    assert "OCLC Number: 44786349" in lines
    assert "Request Id: t00000000000000aa.3" in lines
    assert email.message_from_bytes(raw)["To"] == "import@illiad.example.edu"


def test_markers_are_the_partners_table() -> None:
    partner = illiad(markers={"#USER#": "Username", "#TITLE#": "LoanTitle"}, openurl_base=None)
    text = body_of(IlliadEmailCodec().render(Outgoing(sparta(), "HUB", partner)))
    assert text == "#USER# jsmith\n#TITLE# Property and wealth in classical Sparta\n"


@pytest.mark.parametrize("sample", ALL, ids=[p.name for p in ALL])
def test_staff_link_has_the_keys_of_the_real_ilLiad_link(sample: Path) -> None:
    real = dict(parse_qsl(urlsplit(sample.read_text().strip()).query, keep_blank_values=True))
    text = body_of(IlliadEmailCodec().render(Outgoing(sparta(), "HUB", illiad())))
    link = text.splitlines()[-1]
    ours = dict(parse_qsl(urlsplit(link).query))
    assert link.startswith(BASE + "?Action=10&Form=30&")
    assert (ours["Action"], ours["Form"]) == (real["Action"], real["Form"])
    for key in ("rft.genre", "rft.isbn", "rfe_dat"):
        assert ours[key] == real[key]
    assert real["rft.title"].startswith(ours["rft.title"])


def test_username_is_required() -> None:
    message = sparta().model_copy(update={"patron_id": None})
    with pytest.raises(RenderError, match="Username"):
        IlliadEmailCodec().render(Outgoing(message, "HUB", illiad()))


def test_nothing_is_read_by_mail() -> None:
    with pytest.raises(Refusal):
        CONNECTOR.codec.decode(
            b"Subject: x\r\n\r\nhello\r\n", "ILLIAD", Limits(max_body_bytes=1000)
        )
    assert CONNECTOR.listeners is None and CONNECTOR.name == "illiad-email"


def test_an_article_request_carries_volume_issue_and_pages_and_notes_the_rest() -> None:
    article = Message(
        event=Event.REQUEST,
        request_id="t1.1",
        patron_id="pat1",
        service_type=ServiceType.COPY,
        bibliographic=Bibliographic(
            title="Nature",
            title_of_component="Kinetics",
            volume="84",
            issue="3",
            pages_requested="301-329",
            pagination="xix, 1292 p.",
            doi="10.1000/xyz",
        ),
        note="rush",
    )
    codec = IlliadEmailCodec()
    text = body_of(codec.render(Outgoing(article, "HUB", illiad())))
    assert "Volume: 84\n" in text and "Issue: 3\n" in text and "Pages: 301-329\n" in text
    assert "Notes: rush; Extent: xix, 1292 p.; DOI 10.1000/xyz\n" in text
    link = dict(parse_qsl(urlsplit(text.rsplit("\n", 2)[-2]).query))
    assert (link["rft.volume"], link["rft.issue"], link["rft.pages"]) == ("84", "3", "301-329")
    assert link["rft_id"] == "info:doi/10.1000/xyz"
    # A partner whose table lacks a marker gets that field in Notes instead.
    fewer = {"Username:": "Username", "Journal Title:": "PhotoJournalTitle", "Notes:": "Notes"}
    text = body_of(codec.render(Outgoing(article, "HUB", illiad(markers=fewer))))
    assert "Vol. 84, no. 3, pp. 301-329" in text
