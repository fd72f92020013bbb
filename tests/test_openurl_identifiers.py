"""Identifier normalisation: what the holdings look-up is given for each form a link uses."""

from __future__ import annotations

import pytest

from connectors.openurl.identifiers import (
    BadIdentifier,
    Identifiers,
    isbn10,
    kind_of_uri,
    normalise_doi,
    normalise_isbn,
    normalise_issn,
    normalise_lccn,
    normalise_oclc,
    normalise_pmid,
)

GOOD = [
    (normalise_isbn, "978-1-611974-49-2", "9781611974492"),
    (normalise_isbn, "urn:ISBN:978-1-611974-49-2", "9781611974492"),
    (normalise_isbn, "0-306-40615-2", "9780306406157"),  # ISBN-10 -> 13
    (normalise_isbn, "080442957X", "9780804429573"),  # X check digit
    (normalise_isbn, "ISBN 9789462700284", "9789462700284"),
    (normalise_issn, "00256196", "0025-6196"),
    (normalise_issn, "urn:ISSN:2000-2777", "2000-2777"),
    (normalise_issn, "1552-387x", "1552-387X"),
    (normalise_doi, "info:doi/10.4065/80.5.611", "10.4065/80.5.611"),
    (normalise_doi, "doi:10.1016/j.oraloncology.2020.104844", "10.1016/j.oraloncology.2020.104844"),
    (normalise_doi, "https://doi.org/10.1137/1.9781611974508", "10.1137/1.9781611974508"),
    (normalise_pmid, "info:pmid/00012345", "12345"),
    (normalise_pmid, "pmid:31452104", "31452104"),
    (normalise_oclc, "info:oclcnum/856870157", "856870157"),
    (normalise_oclc, "(OCoLC)ocm00012345", "12345"),
    (normalise_oclc, "ocn123456789", "123456789"),
    (normalise_lccn, "  2002211454", "2002211454"),
    (normalise_lccn, "n78-890351", "n78890351"),
    (normalise_lccn, "85-2 ", "85000002"),
    (normalise_lccn, "75-425165//r75", "75425165"),
    (normalise_lccn, "info:lccn/2001-000002", "2001000002"),
]

BAD = [
    (normalise_isbn, "978-1-611974-49-3"),  # wrong check digit
    (normalise_isbn, "0-306-40615-3"),
    (normalise_isbn, "12345"),
    (normalise_issn, "0025-6197"),
    (normalise_issn, "abcd-efgh"),
    (normalise_doi, "info:doi/"),
    (normalise_doi, "11.1234/x"),
    (normalise_pmid, "pmid:abc"),
    (normalise_oclc, "info:oclcnum/12a"),
    (normalise_lccn, "not an lccn"),
]


@pytest.mark.parametrize(("normalise", "raw", "expected"), GOOD)
def test_normalised(normalise, raw, expected) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(("normalise", "raw"), BAD)
def test_refused_with_reason(normalise, raw) -> None:
    with pytest.raises(BadIdentifier) as error:
        normalise(raw)
    assert str(error.value)


def test_isbn10_of_978_and_none_for_979() -> None:
    assert isbn10("9781611974492") == "1611974496"
    assert isbn10("979-10-90636-07-1") is None


def test_uri_kinds() -> None:
    assert kind_of_uri("info:doi/10.1/x") == "doi"
    assert kind_of_uri("urn:ISBN:123") == "isbn"
    assert kind_of_uri("info:oai/") is None


def test_empty_uri_is_no_identifier_and_bad_one_is_kept_as_rejected() -> None:
    ids = Identifiers()
    ids.add("doi", "info:doi/")
    ids.add("isbn", "978-1-611974-49-3")
    ids.add("isbn", "978-1-611974-49-2")
    assert ids.found == {"isbn": "9781611974492"}
    assert len(ids.rejected) == 1 and "isbn" in ids.rejected[0]
