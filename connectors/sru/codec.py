"""SRU searchRetrieve for holdings, sans-IO: the request's query parameters and the reading
of the response (record count, diagnostics, MARCXML 852 holdings).

Versions 1.1 and 1.2 (namespace http://www.loc.gov/zing/srw/) and 2.0 answer with the same
element names, so the reader matches local names.
"""

from __future__ import annotations

import re

from lxml import etree

from connectors import xmlsafe
from connectors.core.holdings import CQL_INDEX, Catalogue, Copy, Holding, HoldingsResult

MAX_RECORDS = 3
_CQL_SPECIAL = re.compile(r'[\s"()=<>/\\]|^(and|or|not|prox)$', re.IGNORECASE)
MARC_NS = "http://www.loc.gov/MARC21/slim"


def cql(terms: list[tuple[str, str]], overrides: dict[str, str]) -> str:
    """A CQL query; an index overridden with "" leaves the choice to the server."""

    def clause(key: str, term: str) -> str:
        if not term or _CQL_SPECIAL.search(term):
            term = '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
        index = overrides.get(key, CQL_INDEX[key])
        return f"{index}={term}" if index else term

    return " and ".join(clause(key, term) for key, term in terms)


def request_params(catalogue: Catalogue, terms: list[tuple[str, str]]) -> dict[str, str]:
    return {
        "version": "1.2",
        "operation": "searchRetrieve",
        "query": cql(terms, catalogue.indexes),
        "maximumRecords": str(MAX_RECORDS),
        "recordSchema": "marcxml",
        "recordPacking": "xml",
    }


def _first(root: etree._Element, name: str) -> etree._Element | None:
    return next((e for e in root.iter() if xmlsafe.local(e) == name), None)


def _copies(root: etree._Element) -> list[Copy]:
    copies = []
    for field in root.iter(f"{{{MARC_NS}}}datafield"):
        if field.get("tag") != "852":
            continue
        sub: dict[str | None, list[str]] = {}
        for subfield in field.iter(f"{{{MARC_NS}}}subfield"):
            sub.setdefault(subfield.get("code"), []).append(subfield.text or "")
        call = " ".join(sub.get("h", []) + sub.get("i", [])) or None
        location = " ".join(sub.get("b", []) + sub.get("c", [])) or None
        copies.append(Copy(call_number=call, location=location))
    return copies


def read_response(lender: str, catalogue: Catalogue, status: int, body: bytes) -> HoldingsResult:
    where = f"SRU {catalogue.address}"

    def result(holding: Holding, detail: str, **more: object) -> HoldingsResult:
        return HoldingsResult(lender=lender, status=holding, detail=f"{where}: {detail}", **more)

    if status != 200:
        return result(Holding.UNKNOWN, f"HTTP {status}")
    try:
        root = xmlsafe.parse(body)
    except (xmlsafe.UnsafeXml, etree.XMLSyntaxError, ValueError) as error:
        return result(Holding.UNKNOWN, f"unreadable response: {error}")
    if xmlsafe.local(root) != "searchRetrieveResponse":
        return result(Holding.UNKNOWN, f"not a searchRetrieveResponse but {xmlsafe.local(root)}")
    diagnostic = _first(root, "diagnostic")
    if diagnostic is not None:
        message = _first(diagnostic, "message")
        uri = _first(diagnostic, "uri")
        text = (message.text if message is not None else None) or (
            uri.text if uri is not None else "diagnostic"
        )
        return result(Holding.UNKNOWN, f"diagnostic: {text}")
    count = _first(root, "numberOfRecords")
    try:
        hits = int((count.text or "").strip()) if count is not None else None
    except ValueError:
        hits = None
    if hits is None:
        return result(Holding.UNKNOWN, "no numberOfRecords")
    if hits == 0:
        return result(Holding.NOT_HELD, "0 hits", hits=0)
    return result(Holding.HELD, f"{hits} hits", hits=hits, copies=_copies(root))
