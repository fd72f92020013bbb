"""The translation table partners read (docs/translation.md): for each field of a request and
each protocol, whether the protocol carries it in its own element, in its free-text note, or
cannot carry it. Generated from the codecs' own tables (`CARRIES`), so it cannot drift from
what the codecs do; tests/test_translation_doc.py keeps the checked-in file in step, and the
property tests (tests/test_fidelity_property.py) prove each "carried" cell.

Run `python -m connectors.translation` to rewrite the document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.artemail import order as artemail
from connectors.core import fidelity
from connectors.core.model import Bibliographic, Event, Message, ServiceType
from connectors.illiad_email import codec as illiad
from connectors.illiad_email.options import DEFAULT_MARKERS
from connectors.iso10161 import mapping as iso10161
from connectors.iso18626 import tables as iso18626
from connectors.ncip import tables as ncip
from connectors.openurl import codec as openurl
from connectors.slnp import vocabulary as slnp

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "translation.md"

CARRIED, IN_NOTE, CANNOT, WITHHELD = "yes", "note", "-", "withheld"


@dataclass(frozen=True)
class Column:
    """One protocol as a lender receives a request in it."""

    name: str
    carries: Callable[[ServiceType], frozenset[str]]
    note: str | None  # the element a field it cannot carry is written into
    withheld: frozenset[str] = frozenset()


def _illiad(service: ServiceType) -> frozenset[str]:
    """ILLiad's ISSN field holds the ISSN, else the ISBN: each alone is carried."""
    carried: frozenset[str] = frozenset()
    for bib in (Bibliographic(issn="x"), Bibliographic(isbn="x")):
        probe = Message(event=Event.REQUEST, service_type=service, bibliographic=bib)
        carried |= illiad.carried(probe, DEFAULT_MARKERS.values())
    return carried


def _openurl(service: ServiceType) -> frozenset[str]:
    """A copy names its article or chapter: the one author key is the component's."""
    component = "x" if service is ServiceType.COPY else None
    probe = Bibliographic(title="x", title_of_component=component)
    return openurl.carried(Message(event=Event.REQUEST, service_type=service, bibliographic=probe))


COLUMNS: tuple[Column, ...] = (
    Column("NCIP P2P", lambda _s: ncip.CARRIES, "Ext/ItemNote"),
    Column("ISO 18626 1.2", lambda _s: iso18626.CARRIES, "serviceInfo/note"),
    Column("ISO 18626 2021", lambda _s: iso18626.CARRIES_2021, "serviceInfo/note"),
    Column("ISO 10161", lambda _s: iso10161.CARRIES, "requester-note"),
    Column("SLNP", lambda _s: slnp.CARRIES, "Bemerkung", slnp.WITHHELD),
    Column("ARTEmail", lambda s: artemail.CARRIES - artemail.NOT_CARRIED[s], None),
    Column("ILLiad e-mail", _illiad, "Notes"),
    Column("OpenURL 1.0", _openurl, None),
)


def cell(column: Column, path: str) -> str:
    verdicts = []
    for service in ServiceType:
        if path in column.carries(service):
            verdicts.append(CARRIED)
        elif path in column.withheld:
            verdicts.append(WITHHELD)
        else:
            verdicts.append(IN_NOTE if column.note else CANNOT)
    if len(set(verdicts)) == 1:
        return verdicts[0]
    pairs = zip(ServiceType, verdicts, strict=True)
    return ", ".join(f"{service.value.lower()}: {verdict}" for service, verdict in pairs)


# Why a cell is what it is, where the table alone does not say it.
DECISIONS: tuple[str, ...] = (
    "**Pages wanted vs the item's extent.** `pages_requested` is what to copy (ISO 18626 "
    "`pagesRequested`, ISO 10161 `pagination`, Alma's `Ext/Pages`, SLNP `Seitenangabe`, ARTEmail "
    "`PP`, OpenURL `pages`/`spage`-`epage`); `pagination` is the item's extent as catalogued "
    '(NCIP `Pagination`, e.g. "xix, 1292 p."), which only NCIP carries.',
    "**NCIP P2P (Alma).** Volume, issue, part, chapter and pages travel in Alma's `Ext/Volumes`, "
    "`Ext/Issues`, `Ext/Parts`, `Ext/Chapters`, `Ext/Pages` (seed 004). `ShippingInformation` "
    "holds one address (a schema choice): the one the format needs; the other in its `Ext`. "
    "Identifiers are written with the profile's codes only (ISBN, ISSN, OCLC, EAN, LocalID); "
    "DOI, PMID, LCCN and e-ISSN go into the note (read, if a peer sends them, by code). "
    "`ToAgencyId` is the institution and `OnBehalfOfAgency` the library of an "
    "`institution||library` agency id.",
    "**ISO 18626.** A name given whole (ISO 10161 `client-name`) is written as `surname`. "
    "`requestedDeliveryInfo` repeats: postal and electronic addresses get one each. "
    "`loanCondition` is a request element only in 2021 (in 1.2 it is a supplier's "
    "`deliveryInfo` element).",
    '**ISO 10161.** `volume-issue` is one text, written labelled ("Vol. 84, no. 3, pt. B, '
    'ch. 2") and read back by its labels (a partner\'s unlabelled "84(3)" is the volume); '
    "`additional-no-letters` carries the identifiers `Item-Id` has no field for "
    '("OCLC 123456; DOI 10.1000/xyz"). `system-no` is an EXTERNAL with no definition peers agree '
    "on: it is kept in extensions, never written.",
    "**ISO 10161 character set.** An ILL-String is written as a GeneralString holding UTF-8: "
    "what yaz (the toolkit under most open ISO 10161 peers) reads and writes. On reading, "
    "GeneralString bytes that are valid UTF-8 are taken as UTF-8, others as Latin-1 (older "
    "peers). So no character (Polish, Czech, Greek, CJK, a typographic apostrophe) makes a "
    "request unsendable; a Latin-1-only peer sees UTF-8 bytes for non-ASCII letters.",
    "**Costs.** An amount without a currency is never sent as USD or any other currency: where "
    "a protocol requires a currency (NCIP, ISO 18626) or fixes one (SLNP: euros), it goes into "
    'the note ("Maximum cost: 35 (currency not given)"). A cost a partner writes `$35`, '
    "`$40.00` or `35 EUR` (ISO 10161) is read as the amount, its raw form kept in extensions with "
    "a diagnostic; a cost that is no number is dropped with a diagnostic, never refusing the "
    "message.",
    "**SLNP.** The lender is not told the patron: the borrowing library is its patron.",
    "**ARTEmail and OpenURL** have no free-text element for a lender: what they do not carry "
    "cannot reach it. ARTEmail lines are ASCII and at most 40 characters (accents dropped); an "
    "order whose title has no ASCII letter (Greek, CJK) is refused with the reason rather than "
    "sent with the citation as its first line. Its delivery block holds one address: a copy's "
    "e-mail, a loan's postal address. OpenURL has one author key: the component's author when "
    "there is a component, else the item's.",
    "**ILLiad e-mail.** What the partner's marker table (directory `options.markers`) has no "
    "marker for goes into `Notes`; the table shows the default markers.",
)


# The section tests/test_fidelity_matrix.py writes from what arrived through the hub; kept as
# it is checked in whenever the tables above are rewritten.
OBSERVED = "## Observed through the hub"


def observed_section(text: str | None = None) -> str:
    """The observed section of the document (`text`, else the checked-in file), or ""."""
    if text is None:
        text = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    _before, found, after = text.partition("\n" + OBSERVED + "\n")
    return OBSERVED + "\n" + after if found else ""


def render(observed: str | None = None) -> str:
    """The document: the tables from the codecs, then the observed section (`observed`,
    else the one checked in)."""
    head = ["Field", *(c.name for c in COLUMNS)]
    lines = [
        "# What arrives: canonical field x protocol",
        "",
        "Generated by `python -m connectors.translation` from the codecs' tables; "
        "`tests/test_translation_doc.py` fails when this file and the codecs disagree, and "
        "`tests/test_fidelity_property.py` proves every `yes` by a round trip.",
        "",
        f"`{CARRIED}`: carried in the protocol's own element, both ways. `{IN_NOTE}`: written, "
        "readably, into the protocol's free-text note (below). "
        f"`{CANNOT}`: the protocol cannot carry it to a lender. `{WITHHELD}`: not sent, by "
        'design. Citation parts go into a note together ("Vol. 84, no. 3, pp. 301-329").',
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for field in fidelity.REQUEST_FIELDS:
        label = f"`{field.path.removeprefix('bibliographic.')}` ({field.label})"
        lines.append("| " + " | ".join([label, *(cell(c, field.path) for c in COLUMNS)]) + " |")
    lines += ["", "## The note each protocol writes", ""]
    lines += [f"- {c.name}: `{c.note}`" for c in COLUMNS if c.note]
    lines += ["", "## Why", ""]
    lines += [f"- {decision}" for decision in DECISIONS]
    seen = observed_section() if observed is None else observed
    return "\n".join(lines) + "\n" + ("\n" + seen if seen else "")


if __name__ == "__main__":
    DOCUMENT.write_text(render())  # the observed section stays as checked in
    print(f"wrote {DOCUMENT}")
