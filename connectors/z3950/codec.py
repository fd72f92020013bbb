"""Z39.50 holdings look-up, sans-IO: Init, Search, Present as one conversation.

`Lookup.start()` gives the first bytes to send; `Lookup.receive(data)` takes what the server
sent and returns the next bytes to send, or None once `Lookup.result` is set. No sockets here:
`connectors.z3950.client` pumps the bytes, the tests can feed them by hand.

Present asks for the OPAC record syntax (holdings and circulation: available now, availability
date, call number). A server that cannot give OPAC (Zebra: diagnostic 238) is asked again for
USMARC, and holdings are read from its 852 fields.
"""

from __future__ import annotations

import io
import time
from enum import Enum
from typing import Any

import asn1tools
import pymarc

from connectors.ber import FramingError, Splitter
from connectors.core.holdings import Z3950_USE, Catalogue, Copy, Holding, HoldingsResult
from connectors.z3950.asn1 import BIB1, OPAC, USMARC, compiled

MAX_PDU = 4 * 1_048_576
PRESENT_COUNT = 3
# Bib-1 diagnostics meaning "not in that record syntax": ask again in USMARC.
SYNTAX_REFUSED = frozenset({238, 239})


def _starts_pdu(first: int) -> bool:
    """Z39.50 PDUs are context-specific constructed tags ([20] is b4, [31] and up bf ...)."""
    return first & 0xE0 == 0xA0


class Z3950Error(ValueError):
    """The server sent something that is not a Z39.50 PDU this client can use."""


class Phase(Enum):
    INIT = "init"
    SEARCH = "search"
    PRESENT = "present"
    DONE = "done"


def encode(alternative: str, value: dict[str, Any]) -> bytes:
    return bytes(compiled().encode("PDU", (alternative, value)))


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    try:
        alternative, value = compiled().decode("PDU", data)
    except (asn1tools.Error, TypeError, ValueError, IndexError, KeyError, RecursionError) as exc:
        raise Z3950Error(f"not a valid Z39.50 PDU: {exc}") from None
    return alternative, value


def init_request(name: str = "rshub") -> bytes:
    return encode(
        "initRequest",
        {
            # version 1-3; options search and present
            "protocolVersion": (b"\xe0", 3),
            "options": (b"\xc0", 2),
            "preferredMessageSize": MAX_PDU,
            "exceptionalRecordSize": MAX_PDU,
            "implementationName": name,
        },
    )


def rpn(terms: list[tuple[str, str]], overrides: dict[str, str]) -> Any:
    """Type-1 RPN: one term, or the AND of several (title and author)."""

    def operand(key: str, term: str) -> Any:
        use = int(overrides.get(key, Z3950_USE[key]))
        attributes = [{"attributeType": 1, "attributeValue": ("numeric", use)}]
        return ("op", ("attrTerm", {"attributes": attributes, "term": ("general", term.encode())}))

    structure = operand(*terms[0])
    for key, term in terms[1:]:
        structure = (
            "rpnRpnOp",
            {"rpn1": structure, "rpn2": operand(key, term), "op": ("and", None)},
        )
    return structure


def search_request(database: str, terms: list[tuple[str, str]], overrides: dict[str, str]) -> bytes:
    return encode(
        "searchRequest",
        {
            "smallSetUpperBound": 0,
            "largeSetLowerBound": 1,
            "mediumSetPresentNumber": 0,
            "replaceIndicator": True,
            "resultSetName": "default",
            "databaseNames": [database],
            "query": ("type-1", {"attributeSet": BIB1, "rpn": rpn(terms, overrides)}),
        },
    )


def present_request(count: int, syntax: str) -> bytes:
    return encode(
        "presentRequest",
        {
            "resultSetId": "default",
            "resultSetStartPoint": 1,
            "numberOfRecordsRequested": count,
            "recordComposition": ("simple", ("genericElementSetName", "F")),
            "preferredRecordSyntax": syntax,
        },
    )


def diagnostic(records: Any) -> tuple[int | None, str]:
    """Condition and text of a non-surrogate diagnostic, if `records` is one."""
    if records is None:
        return None, ""
    kind, value = records
    if kind == "nonSurrogateDiagnostic":
        return _diag(value)
    if kind == "multipleNonSurDiagnostics" and value:
        first = value[0]
        return _diag(first[1]) if first[0] == "defaultFormat" else (None, "diagnostic")
    return None, ""


def surrogate_conditions(records: Any) -> set[int | None]:
    """Conditions of the per-record (surrogate) diagnostics in a present response."""
    if not records or records[0] != "responseRecords":
        return set()
    found = set()
    for entry in records[1]:
        kind, value = entry["record"]
        if kind == "surrogateDiagnostic":
            found.add(value[1].get("condition") if value[0] == "defaultFormat" else None)
    return found


def _diag(value: dict[str, Any]) -> tuple[int | None, str]:
    addinfo = value.get("addinfo")
    extra = f" ({addinfo[1]})" if addinfo and addinfo[1] else ""
    return value.get("condition"), f"Bib-1 diagnostic {value.get('condition')}{extra}"


def opac_copies(record: dict[str, Any]) -> list[Copy]:
    copies = []
    for kind, holding in record.get("holdingsData", []):
        if kind != "holdingsAndCirc":
            continue
        circulation = holding.get("circulationData") or [{}]
        for circ in circulation:
            copies.append(
                Copy(
                    call_number=holding.get("callNumber"),
                    location=holding.get("localLocation") or holding.get("shelvingLocation"),
                    available_now=circ.get("availableNow"),
                    availability_date=circ.get("availablityDate"),
                )
            )
    return copies


def marc_copies(data: bytes) -> list[Copy]:
    """Holdings from a MARC record's 852 fields (location $b, call number $h $i)."""
    copies = []
    for record in pymarc.MARCReader(io.BytesIO(data), to_unicode=True, force_utf8=True):
        if record is None:
            continue
        for field in record.get_fields("852"):
            call = " ".join(field.get_subfields("h", "i")) or None
            location = " ".join(field.get_subfields("b", "c")) or None
            copies.append(Copy(call_number=call, location=location))
    return copies


def record_copies(external: dict[str, Any]) -> list[Copy]:
    """Copies in one retrieval record (EXTERNAL): OPAC or USMARC; other syntaxes give none."""
    syntax = external.get("direct-reference")
    kind, payload = external["encoding"]
    if syntax == OPAC and kind == "single-ASN1-type":
        return opac_copies(payload)
    if syntax == USMARC and kind == "octet-aligned":
        return marc_copies(payload)
    return []


class Lookup:
    """One look-up of one item in one lender's catalogue."""

    def __init__(self, lender: str, catalogue: Catalogue, terms: list[tuple[str, str]]) -> None:
        self.lender, self.catalogue, self.terms = lender, catalogue, terms
        self.phase = Phase.INIT
        self.splitter = Splitter(_starts_pdu, max_apdu=MAX_PDU)
        self.hits: int | None = None
        self.syntax = OPAC
        self.result: HoldingsResult | None = None
        self.started = time.monotonic()

    def start(self) -> bytes:
        return init_request()

    def receive(self, data: bytes) -> bytes | None:
        try:
            pdus = self.splitter.feed(data)
        except FramingError as error:
            return self._finish(Holding.UNKNOWN, f"not Z39.50: {error}")
        reply = None
        for pdu in pdus:
            if self.phase is Phase.DONE:
                break
            try:
                reply = self._step(*decode(pdu))
            except Z3950Error as error:
                return self._finish(Holding.UNKNOWN, str(error))
        return reply

    def fail(self, detail: str) -> HoldingsResult:
        """Record that the conversation broke off (time-out, connection lost)."""
        self._finish(Holding.UNKNOWN, detail)
        assert self.result is not None
        return self.result

    def _step(self, alternative: str, value: dict[str, Any]) -> bytes | None:
        expected = {
            Phase.INIT: "initResponse",
            Phase.SEARCH: "searchResponse",
            Phase.PRESENT: "presentResponse",
        }.get(self.phase)
        if alternative == "close":
            return self._finish(Holding.UNKNOWN, "the server closed the session")
        if alternative != expected:
            return self._finish(Holding.UNKNOWN, f"expected {expected}, got {alternative}")
        if self.phase is Phase.INIT:
            if not value.get("result"):
                return self._finish(Holding.UNKNOWN, "the server refused the Init")
            self.phase = Phase.SEARCH
            return search_request(self.catalogue.database, self.terms, self.catalogue.indexes)
        if self.phase is Phase.SEARCH:
            return self._searched(value)
        return self._presented(value)

    def _searched(self, value: dict[str, Any]) -> bytes | None:
        condition, text = diagnostic(value.get("records"))
        if not value.get("searchStatus") or condition is not None:
            return self._finish(Holding.UNKNOWN, text or "search failed")
        self.hits = value["resultCount"]
        if not self.hits:
            return self._finish(Holding.NOT_HELD, "0 hits")
        self.phase = Phase.PRESENT
        return present_request(min(self.hits, PRESENT_COUNT), self.syntax)

    def _presented(self, value: dict[str, Any]) -> bytes | None:
        records = value.get("records")
        condition, text = diagnostic(records)
        refused = condition in SYNTAX_REFUSED or surrogate_conditions(records) & SYNTAX_REFUSED
        if refused and self.syntax == OPAC:
            self.syntax = USMARC
            return present_request(min(self.hits or 1, PRESENT_COUNT), USMARC)
        copies: list[Copy] = []
        if records and records[0] == "responseRecords":
            for entry in records[1]:
                kind, record = entry["record"]
                if kind == "retrievalRecord":
                    try:
                        copies.extend(record_copies(record))
                    except (asn1tools.Error, ValueError, KeyError, TypeError) as error:
                        text = f"a record could not be read: {error}"
        detail = f"{self.hits} hits" + (f"; {text}" if text else "")
        return self._finish(Holding.HELD, detail, copies)

    def _finish(
        self, status: Holding, detail: str, copies: list[Copy] | None = None
    ) -> bytes | None:
        self.phase = Phase.DONE
        self.result = HoldingsResult(
            lender=self.lender,
            status=status,
            hits=self.hits,
            copies=copies or [],
            detail=f"Z39.50 {self.catalogue.address}/{self.catalogue.database}: {detail}",
            elapsed_ms=round((time.monotonic() - self.started) * 1000, 1),
        )
        return None
