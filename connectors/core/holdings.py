"""Holdings: what a lender's catalogue says about the requested item.

The locate step asks each candidate lender's catalogue (Z39.50 or SRU, per the directory)
whether it holds the item. Connectors answer with `HoldingsResult`; the rota reads only the
`status`. A catalogue that fails or times out gives UNKNOWN, never NOT_HELD: a lender is only
skipped on a catalogue's word that it lacks the item.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.model import Bibliographic


class Holding(StrEnum):
    HELD = "held"
    NOT_HELD = "not_held"
    UNKNOWN = "unknown"  # the look-up failed or timed out
    UNCHECKED = "unchecked"  # no catalogue, or nothing in the request to search by


class Copy(BaseModel):
    call_number: str | None = None
    location: str | None = None
    available_now: bool | None = None
    availability_date: str | None = None


class HoldingsResult(BaseModel):
    lender: str
    status: Holding
    hits: int | None = None
    copies: list[Copy] = Field(default_factory=list)
    detail: str = ""
    elapsed_ms: float | None = None

    @property
    def available(self) -> bool | None:
        """True if a copy is on the shelf, False if every copy is out, None if not said."""
        known = [c.available_now for c in self.copies if c.available_now is not None]
        return any(known) if known else None


# Bib-1 use attributes (Z39.50) and CQL indexes (SRU) for each search key, in the order the
# locate step prefers them: identifiers first, title and author last.
Z3950_USE = {"isbn": 7, "issn": 8, "oclc_number": 1211, "title": 4, "author": 1003}
CQL_INDEX = {
    "isbn": "bath.isbn",
    "issn": "bath.issn",
    "oclc_number": "rec.id",
    "title": "dc.title",
    "author": "dc.creator",
}
IDENTIFIERS = ("isbn", "issn", "oclc_number")


class Catalogue(BaseModel):
    """A lender's catalogue for the holdings check."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["z3950", "sru"] = Field(description="Z39.50 or SRU")
    address: str = Field(description="host:port for Z39.50, base URL for SRU")
    database: str = Field("Default", description="Z39.50 database name")
    timeout_s: float = Field(5.0, gt=0, description="whole look-up time-out")
    indexes: dict[str, str] = Field(
        default_factory=dict,
        description="override of the use attribute (Z39.50) or CQL index (SRU) per search key",
    )


def search_terms(bib: Bibliographic | None) -> list[tuple[str, str]]:
    """What to search the item by: the first identifier the request has, else title (and
    author). Empty when the request names nothing searchable."""
    if bib is None:
        return []
    for key in IDENTIFIERS:
        value = getattr(bib, key)
        if value and value.strip():
            return [(key, normalized(key, value))]
    terms = [(key, getattr(bib, key).strip()) for key in ("title", "author") if getattr(bib, key)]
    return terms if any(key == "title" for key, _ in terms) else []


def normalized(key: str, value: str) -> str:
    if key in ("isbn", "issn"):
        return re.sub(r"[^0-9Xx]", "", value).upper()
    if key == "oclc_number":
        return re.sub(r"^\(OCoLC\)|^oc[mn]|^on", "", value.strip())
    return value.strip()


# A holdings look-up client (Z39.50, SRU): (lender, catalogue, search terms) -> result.
Client = Callable[[str, Catalogue, list[tuple[str, str]]], Awaitable[HoldingsResult]]
