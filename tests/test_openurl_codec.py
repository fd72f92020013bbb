"""The OpenURL codec against every real sample, hostile input, and the links it writes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.contract import Fault, Limits, Outgoing, Refusal
from connectors.core.directory import Partner
from connectors.core.model import (
    LIMITS,
    Bibliographic,
    Event,
    Message,
    NotApplicable,
    RenderError,
    RequestFormat,
    ServiceType,
)
from connectors.iso18626 import codec as iso_codec
from connectors.iso18626 import schema as iso_schema
from connectors.iso18626 import writer as iso_writer
from connectors.openurl import CONNECTOR
from connectors.openurl.codec import CODEC, parse, to_message
from connectors.openurl.kev import KevError, pairs

SAMPLES = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "standards" / "openurl" / "samples"
)
LINES = [
    line
    for path in sorted(SAMPLES.glob("*.txt"))
    for line in path.read_bytes().splitlines()
    if line.strip()
]


def decode(line: bytes, hub: str = "&rshub.request_id=OU-TEST-0001"):
    return CODEC.decode(line + hub.encode(), "NORTH", Limits(max_body_bytes=1_048_576)).message


def test_the_samples_are_there() -> None:
    assert len(LINES) >= 10


@pytest.mark.parametrize("line", LINES, ids=[f"line{i + 1}" for i in range(len(LINES))])
def test_every_sample_decodes_into_a_request(line: bytes) -> None:
    message = decode(line)
    assert message.event is Event.REQUEST
    assert message.request_id == "OU-TEST-0001"
    assert message.bibliographic is not None
    assert message.bibliographic.title or message.bibliographic.identified
    assert message.service_type in (ServiceType.LOAN, ServiceType.COPY)
    assert message.extensions["openurl"]["version"] in ("0.1", "1.0", "mixed")


def test_google_scholar_01() -> None:
    m = decode(LINES[0])
    bib = m.bibliographic
    assert m.extensions["openurl"]["version"] == "0.1"
    assert m.service_type is ServiceType.COPY and m.request_format is RequestFormat.DIGITAL
    assert bib.title == "Oral oncology. Supplement"
    assert bib.title_of_component.startswith("Systematic review of international guidelines")
    assert bib.author_of_component == "Chiesa-Estomba, CM"
    assert bib.issn == "1368-8375"
    assert bib.doi == "10.1016/j.oraloncology.2020.104844"
    assert bib.volume == "108"
    assert m.extensions["openurl"]["referrer"] == "google"


@pytest.mark.parametrize("version", ["1.2", "2021-2"])
def test_volume_issue_and_doi_reach_an_iso18626_lender(version: str) -> None:
    """An article link's volume, issue and DOI are canonical fields, written into ISO 18626
    (bibliographicInfo/volume, issue, bibliographicItemId DOI) and read back from it."""
    m = decode(LINES[1])
    body = iso_writer.encode(m, from_agency="DK-1", to_agency="DK-2", version=version)
    parsed = iso_codec.parse(body)
    assert iso_schema.diagnose(parsed.root, version) == []
    back = iso_codec.to_canonical(parsed).bibliographic
    assert back is not None
    assert (back.volume, back.issue, back.doi) == ("80", "5", "10.4065/80.5.611")


def test_an_overlong_doi_is_rejected_not_the_request() -> None:
    doi = "10.1000/" + "x" * LIMITS["id"]
    m = decode(b"rft.jtitle=Some+journal&rft_id=info:doi/" + doi.encode())
    assert m.bibliographic.doi is None and m.bibliographic.title == "Some journal"
    assert m.extensions["openurl"]["rejected_identifiers"]


def test_double_question_mark_and_raw_spaces() -> None:
    m = decode(LINES[1])
    assert m.extensions["openurl"]["version"] == "1.0"
    assert m.bibliographic.title == "Mayo Clinic Proceedings"
    assert (
        m.bibliographic.title_of_component
        == "Postural Pseudoanemia: Posture-Dependent Change in Hematocrit"
    )
    assert m.bibliographic.issn == "0025-6196"  # 00256196 with its check digit verified
    assert m.bibliographic.pages_requested == "611-614"  # the pages wanted


def test_firstsearch_hybrid_with_markup_in_private_data() -> None:
    m = decode(LINES[2])
    assert m.extensions["openurl"]["version"] == "mixed"
    assert m.bibliographic.oclc_number == "856870157"
    assert m.bibliographic.issn == "2000-2777"
    assert m.extensions["openurl"]["private"]["pid"] == "856870157<fssessid>0</fssessid>"
    assert m.service_type is ServiceType.LOAN  # a whole journal, no article title


def test_umlaut_full_context_object_identifiers() -> None:
    m = decode(LINES[3])
    ext = m.extensions["openurl"]
    assert ext["lccn"] == "2002211454" and ext["eissn"] == "1938-2383"
    assert m.bibliographic.oclc_number == "49479593"
    assert m.bibliographic.title == "OTJR: Occupation, Participation, and Health"


@pytest.mark.parametrize(("index", "title"), [(4, "Crime & Delinquency"), (6, "Theory & Event")])
def test_unencoded_ampersand_stays_in_the_title(index: int, title: str) -> None:
    assert decode(LINES[index]).bibliographic.title == title


def test_primo_empty_values_and_escaped_characters() -> None:
    m = decode(LINES[7])
    assert m.bibliographic.title == "Embodied cognition and cinema"
    assert m.bibliographic.author == "Coëgnarts, Maarten"
    assert m.bibliographic.isbn == "9789462700284"
    assert m.extensions["openurl"]["isbn10"] == "9462700281"
    assert m.service_type is ServiceType.LOAN and m.request_format is RequestFormat.PHYSICAL
    assert m.bibliographic.doi is None  # rft_id=info:doi/ is empty, not an error
    assert not m.extensions["openurl"].get("rejected_identifiers")


def test_mathscinet_book_isbn_from_urn() -> None:
    m = decode(LINES[9])
    assert m.bibliographic.isbn == "9781611974492"
    assert m.bibliographic.bibliographic_level == "Book"
    assert m.bibliographic.doi == "10.1137/1.9781611974508"


def test_hub_keys_become_patron_and_request_fields() -> None:
    m = decode(
        b"rft.btitle=X&rft.genre=article",
        "&rshub.request_id=OU-1&rshub.patron=p1&rshub.email=p%40x.org&rshub.service=loan"
        "&rshub.need_before=2031-01-31&rshub.pickup=Main&rshub.note=hi",
    )
    assert (m.patron_id, m.delivery_email, m.pickup_location, m.note) == (
        "p1",
        "p@x.org",
        "Main",
        "hi",
    )
    assert m.service_type is ServiceType.LOAN and m.request_format is RequestFormat.PHYSICAL
    assert m.need_before.date().isoformat() == "2031-01-31"
    assert m.correlation.request_id == "OU-1"


def test_no_title_no_identifier_is_refused_with_reason() -> None:
    with pytest.raises(Refusal) as refused:
        CODEC.decode(b"sid=x&genre=book&isbn=123", "NORTH", Limits(max_body_bytes=10_000))
    assert "no title and no valid identifier" in refused.value.reason
    assert "isbn" in refused.value.reason
    assert refused.value.answer.status == 400


def test_huge_query_is_too_large() -> None:
    with pytest.raises(Refusal) as refused:
        CODEC.decode(b"title=" + b"a" * 20_000, "NORTH", Limits(max_body_bytes=16_384))
    assert refused.value.answer.status == 413


def test_too_many_pairs() -> None:
    with pytest.raises(KevError) as error:
        pairs(b"&".join(b"k%d=v" % i for i in range(5_000)), 500)
    assert error.value.too_large


def test_over_long_title_is_refused_naming_the_field() -> None:
    with pytest.raises(Refusal) as refused:
        CODEC.decode(b"title=" + b"x" * 3_000, "NORTH", Limits(max_body_bytes=100_000))
    assert refused.value.reason.startswith("title:") and "2000" in refused.value.reason


def test_invalid_utf8_is_read_as_latin1() -> None:
    m = decode(b"title=M%FCller%27s+B%E4nde&genre=book")
    assert m.bibliographic.title == "Müller's Bände"


def test_declared_latin1_and_control_characters() -> None:
    m = decode(b"ctx_enc=info:ofi/enc:ISO-8859-1&rft.btitle=Caf%E9%00%07+au+lait")
    assert m.bibliographic.title == "Café au lait"


def test_html_escaped_ampersands_and_markup_in_titles() -> None:
    m = decode(b"sid=x&amp;title=A%20%3Ci%3Eb%3C/i%3E%20%26amp%3B%20c&amp;genre=book")
    assert m.bibliographic.title == "A b & c"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_any_bytes_give_a_request_or_a_refusal(data: bytes) -> None:
    try:
        message = CODEC.decode(data, "NORTH", Limits(max_body_bytes=1_000))
    except Refusal as refusal:
        assert refusal.reason and refusal.answer.status in (400, 413)
    else:
        assert message.message.event is Event.REQUEST


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["title", "rft.atitle", "isbn", "rft_id", "sid", "x"]), st.text()
        ),
        max_size=20,
    )
)
def test_any_text_pairs_parse(items: list[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    parse(urlencode(items).encode())


# --- out ---


def _lender(preset: str, **options: object) -> Partner:
    return Partner.model_validate(
        {
            "symbol": "LEND",
            "name": "Lender",
            "protocol": "ncip",  # the validator of the current directory knows no openurl yet
            "endpoint": "https://ill.example.org/illiad/illiad.dll/OpenURL",
            "options": {"preset": preset, **options},
        }
    )


def _request(**changes: object) -> Message:
    base = {
        "event": Event.REQUEST,
        "request_id": "t0123456789abcdef.1",
        "service_type": ServiceType.COPY,
        "bibliographic": Bibliographic(
            title="Mayo Clinic Proceedings",
            title_of_component="Postural Pseudoanemia",
            author_of_component="Jacob, G",
            issn="0025-6196",
            publication_date="2005",
            pages_requested="611-614",
            bibliographic_level="Article",
            volume="80",
            issue="5",
            doi="10.4065/80.5.611",
        ),
    }
    return Message.model_validate({**base, **changes})


def _query(url: bytes) -> tuple[str, list[tuple[str, str]]]:
    split = urlsplit(url.decode())
    return f"{split.scheme}://{split.netloc}{split.path}", parse_qsl(split.query)


def test_illiad_link_has_action_form_and_01_keys() -> None:
    url = CODEC.render(Outgoing(_request(), "NORTH", _lender("illiad")))
    base, items = _query(url)
    assert base == "https://ill.example.org/illiad/illiad.dll/OpenURL"
    # The article form (22), not the loan form (30) Primo opens for books.
    assert items[:2] == [("Action", "10"), ("Form", "22")]
    keys = dict(items)
    assert keys["genre"] == "article" and keys["atitle"] == "Postural Pseudoanemia"
    assert (keys["volume"], keys["issue"], keys["spage"], keys["epage"]) == (
        "80",
        "5",
        "611",
        "614",
    )
    assert keys["title"] == "Mayo Clinic Proceedings" and keys["aulast"] == "Jacob"
    assert ("id", "doi:10.4065/80.5.611") in items
    assert keys["pid"] == "t0123456789abcdef.1"
    assert not any(k.startswith("rft") for k in keys)


def test_relais_link_is_10_and_reads_back_the_same() -> None:
    url = CODEC.render(Outgoing(_request(), "NORTH", _lender("relais", extra={"LS": "NORTH"})))
    _base, items = _query(url)
    keys = dict(items)
    assert keys["url_ver"] == "Z39.88-2004" and keys["rft.genre"] == "article"
    assert keys["LS"] == "NORTH" and keys["ctx_id"] == "t0123456789abcdef.1"
    again = parse(url).citation
    assert again.atitle == "Postural Pseudoanemia" and again.issn == "0025-6196"
    assert again.doi == "10.4065/80.5.611" and again.volume == "80" and again.pages == "611-614"


def test_render_refuses_what_openurl_cannot_say() -> None:
    with pytest.raises(NotApplicable):
        CODEC.render(Outgoing(_request(event=Event.CANCEL), "NORTH", _lender("relais")))
    with pytest.raises(RenderError):
        CODEC.render(Outgoing(_request(bibliographic=Bibliographic()), "NORTH", _lender("relais")))


def test_judge() -> None:
    assert CODEC.judge(b"<form>", 200).ok
    assert not CODEC.judge(b"", 503).ok and CODEC.judge(b"", 503).retryable
    assert not CODEC.judge(b"", 400).retryable
    assert CODEC.judge(b"", None).retryable


def test_connector_declares_itself() -> None:
    assert CONNECTOR.name == "openurl" and CONNECTOR.codec is CODEC
    assert CONNECTOR.load_settings({"RSHUB_OPENURL_MAX_PAIRS": "100"}).max_pairs == 100
    assert CODEC.events_out | CODEC.not_applicable == frozenset(Event)
    assert CODEC.fault(Fault.UNAUTHENTICATED, "x").status == 401


def test_illiad_gets_the_loan_form_for_a_book_and_the_chapter_form_for_a_chapter() -> None:
    book = _request(
        service_type=ServiceType.LOAN,
        bibliographic=Bibliographic(title="Dynamic mode decomposition", isbn="9781611974492"),
    )
    _base, items = _query(CODEC.render(Outgoing(book, "NORTH", _lender("illiad"))))
    assert items[:2] == [("Action", "10"), ("Form", "30")] and dict(items)["genre"] == "book"
    chapter = _request(
        bibliographic=Bibliographic(
            title="A book", title_of_component="A chapter", bibliographic_level="Chapter"
        )
    )
    _base, items = _query(CODEC.render(Outgoing(chapter, "NORTH", _lender("illiad"))))
    assert items[1] == ("Form", "23") and dict(items)["genre"] == "bookitem"
    # A directory's own `extra` is written as it is.
    own = _lender("illiad", extra={"Action": "10", "Form": "99"})
    _base, items = _query(CODEC.render(Outgoing(_request(), "NORTH", own)))
    assert items[:2] == [("Action", "10"), ("Form", "99")]


def test_several_authors_are_not_glued_into_aufirst() -> None:
    bib = _request().bibliographic.model_copy(
        update={"author_of_component": "Jacob, G; Costa, F; Shannon, JR"}
    )
    _base, items = _query(
        CODEC.render(Outgoing(_request(bibliographic=bib), "NORTH", _lender("illiad")))
    )
    keys = dict(items)
    assert (keys["aulast"], keys["aufirst"]) == ("Jacob", "G")
    assert keys["au"] == "Jacob, G; Costa, F; Shannon, JR"  # nobody is lost


def test_start_and_end_pages_only_for_a_plain_range() -> None:
    for pages, wanted in (("611-614", ("611", "614")), ("611", ("611", "")), ("1-3, 7", ("", ""))):
        bib = _request().bibliographic.model_copy(update={"pages_requested": pages})
        _base, items = _query(
            CODEC.render(Outgoing(_request(bibliographic=bib), "NORTH", _lender("relais")))
        )
        keys = dict(items)
        assert (keys.get("rft.spage", ""), keys.get("rft.epage", "")) == wanted, pages
        assert keys["rft.pages"] == pages


@pytest.mark.parametrize(
    "link",
    [
        "sid=x&genre=article&title=Nature&atitle=A&year=2004",
        "url_ver=Z39.88-2004&rft.genre=article&rft.jtitle=Nature&rft.atitle=A&rft.year=2004",
    ],
)
def test_year_is_read_as_the_date(link: str) -> None:
    parsed = parse(link.encode())
    assert parsed.citation.date == "2004"
    assert to_message(parsed, "NORTH").bibliographic.publication_date == "2004"
