"""ARTEmail orders (sans-IO): writing them exactly as FORMAT.md lays them out, and reading
them back (for `rshub decode` and the simulated British Library).

Body: customer code, ART password, 4 blank lines; per request the `TX<reference> <keywords>`
line, bibliographic lines of at most 40 characters in the fixed order of its genre, and where
an address is given 4 blank lines, `:DELIVER ABOVE ITEM TO:` and an e-mail address or up to six
postal lines; 4 blank lines after each request; `NNNN` ends the message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from connectors.artemail.options import ArtemailOptions
from connectors.core.model import Message, RequestFormat, ServiceType

LINE = 40  # characters per bibliographic line
GAP = [""] * 4  # the blank lines between blocks
DELIVER = ":DELIVER ABOVE ITEM TO:"
END = "NNNN"


# Canonical fields of a request an order carries (its bibliographic lines and delivery
# block). ARTEmail has no free-text line: what is not here cannot reach the BL.
CARRIES: frozenset[str] = frozenset(
    {
        *(
            f"bibliographic.{field}"
            for field in (
                "title",
                "author",
                "title_of_component",
                "author_of_component",
                "publisher",
                "place_of_publication",
                "publication_date",
                "publication_date_of_component",
                "volume",
                "issue",
                "pages_requested",
                "edition",
                "isbn",
                "issn",
            )
        ),
        "delivery_address",
        "delivery_email",
        "service_type",
        "request_format",
    }
)


# The delivery block holds one address: a copy's e-mail (else its postal address), a loan's
# postal address. The other one cannot reach the BL (ARTEmail has no free-text line).
NOT_CARRIED: dict[ServiceType, frozenset[str]] = {
    ServiceType.LOAN: frozenset({"delivery_email"}),
    ServiceType.COPY: frozenset({"delivery_address"}),
}


class OrderError(ValueError):
    """A request the ARTEmail format cannot carry (no title, an over-long reference)."""


def ascii_line(value: str | None) -> str:
    """One line as the BL's parser reads it: ASCII (accents dropped, others removed), one
    line, at most 40 characters."""
    if not value:
        return ""
    folded = unicodedata.normalize("NFKD", value)
    text = "".join(c for c in folded if c.isascii() and (c.isprintable() or c == " "))
    return " ".join(text.split())[:LINE].rstrip()


def _join(*parts: str | None, sep: str = " ") -> str:
    return sep.join(p.strip() for p in parts if p and p.strip())


def _extra(message: Message) -> dict[str, Any]:
    """What the canonical model has no field for (genre, conference date, venue, sponsor):
    `extensions["bibliographic"]`, as an OpenURL or ISO 18626 inbound leaves it."""
    value = message.extensions.get("bibliographic")
    return value if isinstance(value, dict) else {}


def genre(message: Message) -> str:
    bib = message.bibliographic
    stated = str(_extra(message).get("genre") or "").lower()
    if stated in ("article", "book", "chapter", "conference"):
        return stated
    if stated in ("bookitem",):
        return "chapter"
    if stated in ("proceeding", "conference paper"):
        return "conference"
    if bib and bib.title_of_component:
        return "chapter" if bib.isbn and not bib.issn else "article"
    return "book"


_YEAR_IN = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_START_PAGE = re.compile(r"[A-Za-z]?\d+")


def year_of(date: str | None) -> str | None:
    """The YEAR field: the year alone (FORMAT.md's `YEAR VOL v ...`), not a whole date such as
    "2021-01-01" or "Spring 2021"; a value with no year in it is written as it is."""
    if not date:
        return None
    found = _YEAR_IN.search(date)
    return found.group(1) if found else date


def page_range(pages: str) -> str:
    """PP as the format writes it: a start page alone is the open range "238-" (the samples'
    `PP 238-`: the article starting there); a range or anything else is kept as given. One
    page only is written "238-238"."""
    pages = pages.strip()
    return f"{pages}-" if _START_PAGE.fullmatch(pages) else pages


def bibliographic_lines(message: Message) -> list[str]:
    bib = message.bibliographic
    if bib is None or not bib.title:
        raise OrderError("an ARTEmail order needs a title")
    if not ascii_line(bib.title):
        # Its first line would be the next one (the citation): the BL would read a wrong
        # order. Refused, so that the borrower and staff hear why, not sent garbled.
        raise OrderError(
            f"the title {bib.title[:60]!r} has no letters ARTEmail can carry (it is ASCII)"
        )
    extra = _extra(message)
    volume = f"VOL {bib.volume}" if bib.volume else None
    # PT is the issue (or part) of a journal; PP the pages to copy, never the item's extent.
    issue = bib.issue or bib.part
    part = f"PT {issue}" if issue else None
    pages = f"PP {page_range(bib.pages_requested)}" if bib.pages_requested else None
    year = year_of(bib.publication_date_of_component or bib.publication_date)
    kind = genre(message)
    if kind == "article":
        lines = [
            bib.title,
            _join(year, volume, part, pages),
            bib.title_of_component,
            bib.author_of_component or bib.author,
            bib.issn,
        ]
    elif kind == "chapter":
        lines = [
            bib.title,
            _join(year, volume, pages),
            bib.title_of_component,
            bib.author_of_component,
            bib.isbn,
        ]
    elif kind == "conference":
        lines = [
            bib.title,
            _join(extra.get("conference_date"), extra.get("venue"), extra.get("sponsor"), sep=" ,"),
            _join(year, volume, part, pages),
            _join(bib.title_of_component, bib.author_of_component),
            bib.isbn,
        ]
    else:  # book
        lines = [
            bib.title,
            bib.author,
            _join(bib.publisher, bib.place_of_publication, sep=", "),
            _join(year, volume, part, bib.edition),
            bib.isbn,
        ]
    return [line for line in (ascii_line(v) for v in lines) if line]


def keywords(message: Message, options: ArtemailOptions) -> list[str]:
    words: list[str] = [options.service]
    if message.service_type is ServiceType.COPY:
        digital = message.request_format in (None, RequestFormat.DIGITAL)
        words.append(options.copy_keyword if digital else options.copy_print_keyword)
        if options.copyright_fee_paid:
            words.append("COPYRT")
    else:
        words.append(options.loan_keyword)
    if options.no_waiting_list:
        words.append("WLX")
    return words


def delivery_lines(message: Message, options: ArtemailOptions) -> list[str]:
    if message.service_type is ServiceType.COPY:
        email = message.delivery_email or options.copy_email
        if email:
            return [email.strip()]
    postal = (
        message.delivery_address.splitlines()
        if message.delivery_address
        else options.postal_address
    )
    lines = [ascii_line(line) for line in postal if line.strip()]
    return lines[:6]


_REFERENCE = re.compile(r"^[A-Za-z0-9./-]{1,40}$")


def request_block(message: Message, reference: str, options: ArtemailOptions) -> list[str]:
    if not _REFERENCE.match(reference):
        raise OrderError(f"reference {reference!r} cannot be carried on a TX line")
    lines = [f"TX{reference} {' '.join(keywords(message, options))}"]
    lines += bibliographic_lines(message)
    deliver = delivery_lines(message, options)
    if deliver:
        lines += [*GAP, DELIVER, *deliver]
    return [*lines, *GAP]


def order_text(customer: str, password: str, blocks: list[list[str]]) -> str:
    lines = [customer, password, *GAP]
    for block in blocks:
        lines += block
    lines.append(END)
    return "\n".join(lines) + "\n"


# -- reading --------------------------------------------------------------------------------


@dataclass
class OrderRequest:
    reference: str
    keywords: list[str]
    lines: list[str]
    deliver_to: list[str] = field(default_factory=list)


@dataclass
class Order:
    customer: str
    password: str
    requests: list[OrderRequest]


def is_order(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines()]
    return END in lines and any(line.startswith("TX") for line in lines)


def read_order(text: str) -> Order:
    """An order body back into its parts; OrderError when it is not one."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    filled = [(i, line) for i, line in enumerate(lines) if line]
    if len(filled) < 3 or filled[-1][1] != END:
        raise OrderError("an ARTEmail order ends with NNNN")
    customer, password = filled[0][1], filled[1][1]
    requests: list[OrderRequest] = []
    target: list[str] | None = None
    for _, line in filled[2:-1]:
        if line.startswith("TX"):
            reference, *words = line[2:].split() or [""]
            if not reference:
                raise OrderError(f"a TX line without a reference: {line[:40]!r}")
            if any(r.reference == reference for r in requests):
                # Both would be one transaction: the second could only be refused after the
                # first was taken, and the mail would be half read.
                raise OrderError(f"reference TX{reference[:30]} is given twice")
            requests.append(OrderRequest(reference, words, []))
            target = requests[-1].lines
        elif line == DELIVER and requests:
            target = requests[-1].deliver_to
        elif target is None:
            raise OrderError(f"text before the first TX line: {line[:40]!r}")
        else:
            if target is requests[-1].lines and len(line) > LINE:
                raise OrderError(f"bibliographic line over {LINE} characters: {line[:50]!r}")
            target.append(line)
    if not requests:
        raise OrderError("no TX line")
    for request in requests:
        if not request.lines:
            raise OrderError(f"request TX{request.reference[:30]} has no bibliographic lines")
    return Order(customer, password, requests)


# The bibliographic lines of each genre as `bibliographic_lines` writes them, after the title
# and the year/VOL/PT/PP line and before the standard number: the canonical field each holds.
# Empty lines are not written, so a reader cannot count on positions: the standard number
# (last) and the citation line are told by their form, the other lines taken in order.
GENRE_LINES: dict[str, tuple[str, ...]] = {
    "article": ("title_of_component", "author_of_component"),
    "book": ("author", "publisher"),
}
_CITATION = re.compile(
    r"(?P<publication_date>[^ ]+?)??(?:(?:^| )VOL (?P<volume>.+?))?"
    r"(?:(?:^| )PT (?P<issue>.+?))?(?:(?:^| )PP (?P<pages_requested>.+?))?"
)
_YEAR = re.compile(r"\d{4}")
_STANDARD_NUMBER = re.compile(r"[0-9][0-9-]{6,15}[0-9Xx]")


def citation(line: str) -> dict[str, str] | None:
    """A year/VOL/PT/PP line's parts; None when the line is no such line."""
    found = _CITATION.fullmatch(line)
    if found is None:
        return None
    parts = {k: v for k, v in found.groupdict().items() if v}
    if len(parts) == 1 and "publication_date" in parts and not _YEAR.fullmatch(line):
        return None
    return parts or None


# The word of an edition statement, case and full stop aside: English "2nd ed", "Rev. edn",
# German "3. Aufl.", French "2e éd.", Polish "Wyd. 12", Russian "Izd. 2", Dutch "2e druk",
# "uitg.", Danish "udg.", Swedish "uppl.", Norwegian "utg.", Italian "ediz.".
_EDITION_WORDS = frozenset(
    {"ed", "edn", "edition", "éd", "aufl", "auflage", "wyd", "wydanie", "izd", "druk", "uitg"}
    | {"udg", "udgave", "uppl", "upplaga", "utg", "utgave", "ediz", "edizione", "edición"}
)
# What may stand before that word and belongs to the edition ("2nd", "3.", "Rev.", "New").
_EDITION_LEAD = re.compile(
    r"\d+(?:st|nd|rd|th|e|er|re|\.)?|rev(?:ised)?\.?|new|enl(?:arged)?\.?|first|second|third",
    re.IGNORECASE,
)


def _edition_off(text: str) -> tuple[str, str | None]:
    """A volume or part that may end in the edition, written after it on the same line
    ("2 2nd ed", "2 Wyd. 12"): the edition is told by its word, with the ordinal before it;
    the volume or part keeps at least its first word. Without such a word, all of it is the
    volume or part ("2 suppl")."""
    words = text.split(" ")
    for at, word in enumerate(words[1:], start=1):
        if word.lower().rstrip(".") in _EDITION_WORDS:
            start = at - 1 if at > 1 and _EDITION_LEAD.fullmatch(words[at - 1]) else at
            return " ".join(words[:start]), " ".join(words[start:])
    return text, None


def _book_year(line: str) -> dict[str, str] | None:
    """A book's line as `bibliographic_lines` writes it: year, VOL, PT (a book's part) and
    edition, each left out when empty ("1986 VOL 2 PT 1 2nd ed", "1986 2nd ed", "VOL 3").
    None when the line is none: it has a year or a volume (a line of PT alone with a comma
    is a publisher's, such as "PT Gramedia, Jakarta")."""
    year, _, rest = line.partition(" ")
    if not _YEAR.fullmatch(year):
        year, rest = "", line
    found: dict[str, str] = {"publication_date": year} if year else {}
    if not rest.startswith(("VOL ", "PT ")):
        if not year:
            return None
        return {**found, "edition": rest} if rest else found
    volume, part = "", ""
    if rest.startswith("VOL "):
        volume, _, part = rest[4:].partition(" PT ")
    else:
        part = rest[3:]
        if not year and ", " in part:
            return None
    last, edition = _edition_off(part or volume)
    if part:
        part = last
    else:
        volume = last
    found.update({k: v for k, v in (("volume", volume), ("part", part)) if v})
    return {**found, "edition": edition} if edition else found


def read_bibliographic(lines: list[str]) -> dict[str, str]:
    """The canonical bibliographic fields of one request's lines, as far as the format lets
    them be told apart (the lines stay whole in extensions)."""
    if not lines:
        return {}
    out: dict[str, str] = {"title": lines[0]}
    rest = list(lines[1:])
    number = rest.pop() if rest and _STANDARD_NUMBER.fullmatch(rest[-1]) else None
    cited = citation(rest[0]) if rest else None
    kind = "article" if cited is not None else "book"
    if cited is not None:
        out.update(cited)
        rest = rest[1:]
    if number:
        digits = number.replace("-", "")
        out["issn" if len(digits) == 8 else "isbn"] = number
    others = []
    for line in rest:
        year = _book_year(line) if kind == "book" else None
        if year is not None:
            out.update(year)
        else:
            others.append(line)
    for holds, line in zip(GENRE_LINES[kind], others, strict=False):
        if holds == "publisher":
            publisher, _, place = line.partition(", ")
            out["publisher"] = publisher
            if place:
                out["place_of_publication"] = place
        else:
            out[holds] = line
    return out


# -- credentials ----------------------------------------------------------------------------

# What an order's first two lines are replaced by wherever the hub shows or exports a body
# (`rshub show`, the console, exports from the operators' index).
REDACTED = ("[customer code]", "[ART password]")


def redact_text(text: str) -> str:
    """An order's text with its customer code and ART password (its first two filled
    lines) replaced; any other text as it is. Nothing replay needs is lost: reading an order
    takes no credential into the canonical message."""
    if not is_order(text):
        return text
    lines = text.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()][:2]
    for i, mark in zip(filled, REDACTED, strict=False):
        ending = "\r" if lines[i].endswith("\r") else ""
        lines[i] = mark + ending
    return "\n".join(lines)
