"""Holdings look-ups against real catalogue servers: yaz-ztest (Z39.50 with OPAC records, and
SRU) and Zebra (USMARC), both started by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from connectors.core.directory import Directory
from connectors.core.holdings import Catalogue, Holding, search_terms
from connectors.core.model import Bibliographic
from connectors.sru import client as sru
from connectors.sru import codec as sru_codec
from connectors.z3950 import client as z3950
from connectors.z3950 import codec as z_codec
from hub.runtime.locate import Locator
from tests import catalogues

# CI installs the servers (.ci/run), so there the tests must run, not skip.
pytestmark = pytest.mark.skipif(
    not catalogues.installed() and not os.environ.get("CI"), reason="yaz and idzebra-2.0 needed"
)


@pytest.fixture(scope="module")
def ztest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with catalogues.ztest(tmp_path_factory.mktemp("ztest")) as address:
        yield address


@pytest.fixture(scope="module")
def zebra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    databases = {"north": ["rose-1", "clrs-3"], "south": ["nature", "odyssey"]}
    with catalogues.zebra(tmp_path_factory.mktemp("zebra"), databases) as address:
        yield address


def z(address: str, database: str = "Default", timeout_s: float = 5.0) -> Catalogue:
    return Catalogue(kind="z3950", address=address, database=database, timeout_s=timeout_s)


async def test_z3950_opac_holdings_with_circulation(ztest: str) -> None:
    result = await z3950.lookup("L", z(ztest), [("isbn", "3")])
    assert result.status is Holding.HELD and result.hits == 3
    assert result.copies and result.copies[0].call_number == "MLCM 89/00602 (N)"
    assert result.copies[0].available_now is True and result.available is True


async def test_z3950_no_hits_is_not_held(ztest: str) -> None:
    result = await z3950.lookup("L", z(ztest), [("isbn", "0")])
    assert result.status is Holding.NOT_HELD and result.hits == 0


async def test_z3950_diagnostic_is_unknown_not_absent(ztest: str) -> None:
    result = await z3950.lookup("L", z(ztest, "nosuchdb"), [("isbn", "3")])
    assert result.status is Holding.UNKNOWN
    assert "Bib-1 diagnostic 109" in result.detail


async def test_z3950_slow_catalogue_times_out_as_unknown(ztest: str) -> None:
    slow = z(ztest, "Default?search-delay=5", timeout_s=0.3)
    result = await z3950.lookup("L", slow, [("isbn", "3")])
    assert result.status is Holding.UNKNOWN and "no answer within 0.3 s" in result.detail


async def test_z3950_unreachable_catalogue_is_unknown() -> None:
    from connectors.core.connections import free_port

    result = await z3950.lookup("L", z(f"127.0.0.1:{free_port()}"), [("isbn", "3")])
    assert result.status is Holding.UNKNOWN and "connection failed" in result.detail


async def test_zebra_usmarc_fallback_reads_852(zebra: str) -> None:
    terms = search_terms(Bibliographic(isbn="978-0-262-03384-8", title="ignored"))
    assert terms == [("isbn", "9780262033848")]
    result = await z3950.lookup("L", z(zebra, "north"), terms)
    assert result.status is Holding.HELD and result.hits == 1
    assert [(c.location, c.call_number) for c in result.copies] == [
        ("SCIENCE", "QA76.6 .C662 2009")
    ]


async def test_zebra_item_not_in_that_library(zebra: str) -> None:
    result = await z3950.lookup("L", z(zebra, "south"), [("isbn", "9780262033848")])
    assert result.status is Holding.NOT_HELD


async def test_zebra_title_and_author_when_no_identifier(zebra: str) -> None:
    terms = search_terms(Bibliographic(title="rose", author="eco"))
    assert terms == [("title", "rose"), ("author", "eco")]
    held = await z3950.lookup("L", z(zebra, "north"), terms)
    missing = await z3950.lookup("L", z(zebra, "south"), terms)
    assert held.status is Holding.HELD and missing.status is Holding.NOT_HELD


async def test_sru_held_and_not_held(ztest: str) -> None:
    # yaz-ztest counts hits from a bare term's digits; an empty index lets the server choose.
    catalogue = Catalogue(kind="sru", address=f"http://{ztest}/Default", indexes={"isbn": ""})
    held = await sru.lookup("L", catalogue, [("isbn", "7")])
    none = await sru.lookup("L", catalogue, [("isbn", "0")])
    assert held.status is Holding.HELD and held.hits == 7
    assert none.status is Holding.NOT_HELD and none.hits == 0


async def test_sru_failures_are_unknown(ztest: str) -> None:
    missing = Catalogue(kind="sru", address=f"http://{ztest}/nosuchdb")
    assert (await sru.lookup("L", missing, [("isbn", "7")])).status is Holding.UNKNOWN


def test_sru_reader_diagnostics_and_hostile_bodies() -> None:
    catalogue = Catalogue(kind="sru", address="http://x/db")
    diag = (
        b'<zs:searchRetrieveResponse xmlns:zs="http://www.loc.gov/zing/srw/"><zs:version>1.2'
        b"</zs:version><zs:numberOfRecords>0</zs:numberOfRecords><zs:diagnostics><diagnostic "
        b'xmlns="http://www.loc.gov/zing/srw/diagnostic/"><uri>info:srw/diagnostic/1/16</uri>'
        b"<message>Unsupported index</message></diagnostic></zs:diagnostics>"
        b"</zs:searchRetrieveResponse>"
    )
    result = sru_codec.read_response("L", catalogue, 200, diag)
    assert result.status is Holding.UNKNOWN and "Unsupported index" in result.detail
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert sru_codec.read_response("L", catalogue, 200, bomb).status is Holding.UNKNOWN
    assert sru_codec.read_response("L", catalogue, 200, b"<oops").status is Holding.UNKNOWN


def test_sru_query_quotes_what_cql_needs() -> None:
    assert sru_codec.cql([("isbn", "9780262033848")], {}) == "bath.isbn=9780262033848"
    assert (
        sru_codec.cql([("title", 'a "b" c'), ("author", "and")], {})
        == 'dc.title="a \\"b\\" c" and dc.creator="and"'
    )


def test_z3950_lookup_refuses_garbage_and_truncation() -> None:
    lookup = z_codec.Lookup("L", z("h:1"), [("isbn", "1")])
    assert lookup.start()[:1] == b"\xb4"  # [20] initRequest
    assert lookup.receive(b"GET / HTTP/1.1\r\n") is None
    assert lookup.result is not None and lookup.result.status is Holding.UNKNOWN
    truncated = z_codec.Lookup("L", z("h:1"), [("isbn", "1")])
    assert truncated.receive(b"\xb5\x82\x01\x00\x00") is None  # waits for the rest
    assert truncated.result is None
    assert truncated.fail("connection lost").status is Holding.UNKNOWN


async def test_locator_asks_concurrently_and_caches_definite_answers(
    ztest: str, zebra: str
) -> None:
    directory = Directory.model_validate(
        {
            "consortium": "T",
            "partners": [
                {
                    "symbol": "A",
                    "name": "A",
                    "protocol": "ncip",
                    "endpoint": "http://a",
                    "catalogue": z(zebra, "north").model_dump(),
                },
                {
                    "symbol": "B",
                    "name": "B",
                    "protocol": "ncip",
                    "endpoint": "http://b",
                    "catalogue": z(zebra, "south").model_dump(),
                },
                {
                    "symbol": "C",
                    "name": "C",
                    "protocol": "ncip",
                    "endpoint": "http://c",
                    "catalogue": z(ztest, "Default?search-delay=5", 0.3).model_dump(),
                },
                {"symbol": "D", "name": "D", "protocol": "ncip", "endpoint": "http://d"},
            ],
        }
    )
    calls: list[str] = []

    async def counting(lender, catalogue, terms):  # type: ignore[no-untyped-def]
        calls.append(lender)
        return await z3950.lookup(lender, catalogue, terms)

    locator = Locator(directory, {"z3950": counting})
    terms = [("isbn", "9780262033848")]
    first = await locator.locate(["A", "B", "C", "D"], terms)
    assert [r.status for r in first] == [
        Holding.HELD,
        Holding.NOT_HELD,
        Holding.UNKNOWN,
        Holding.UNCHECKED,
    ]
    # The three look-ups ran at once: the slow one's time-out bounds the whole.
    assert max(r.elapsed_ms or 0 for r in first) < 3000
    again = await locator.locate(["A", "B", "C"], terms)
    assert [r.status for r in again] == [Holding.HELD, Holding.NOT_HELD, Holding.UNKNOWN]
    assert calls == ["A", "B", "C", "C"]  # held / not held were reused, the failure retried
    assert "(cached)" in again[0].detail
