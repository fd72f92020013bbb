"""Standard identifiers as OpenURLs carry them, normalised for the holdings look-up.

Each `normalise_*` returns the canonical form or raises `BadIdentifier` saying why. The check
digits of ISBN and ISSN are python-stdnum's (a maintained implementation of the ISO rules);
DOI, PMID, OCLC number and LCCN have no check digit and are normalised by their registries'
published rules (the LCCN one is the Library of Congress's "LCCN normalization").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stdnum import isbn as stdnum_isbn
from stdnum import issn as stdnum_issn
from stdnum.exceptions import ValidationError

from connectors.core.model import LIMITS


class BadIdentifier(ValueError):
    """A value that is not a valid identifier of its kind (the message says why)."""


# Prefixes an identifier arrives with, by kind: the info-URI and URN forms of OpenURL 1.0
# (`rft_id=info:doi/...`), the 0.1 `id=doi:...` form, and resolver/catalogue habits.
PREFIXES: dict[str, tuple[str, ...]] = {
    "doi": (
        "info:doi/",
        "doi:",
        "https://doi.org/",
        "http://doi.org/",
        "https://dx.doi.org/",
        "http://dx.doi.org/",
    ),
    "pmid": ("info:pmid/", "pmid:"),
    "oclc": ("info:oclcnum/", "(ocolc)", "ocolc:", "oclc:", "ocm", "ocn", "on"),
    "isbn": ("urn:isbn:", "isbn:", "isbn"),
    "issn": ("urn:issn:", "issn:", "issn"),
    "lccn": ("info:lccn/", "lccn:"),
}

# A DOI: directory indicator 10, a registrant code of digits (dot-separated), a suffix of
# anything printable (Crossref's recommended pattern, relaxed to any non-space suffix).
_DOI = re.compile(r"10\.\d{4,9}(\.\d+)*/\S+")
# PubMed ids are positive integers (8 digits today; room for growth).
_PMID = re.compile(r"[1-9]\d{0,9}")
# OCLC numbers: positive integers (up to 10 digits today, 64-bit in WorldCat).
_OCLC = re.compile(r"\d{1,19}")
# A normalised LCCN: an optional 1-3 letter prefix, 2 or 4 digit year, 6 digit serial.
_LCCN = re.compile(r"[a-z]{0,3}(\d{2}|\d{4})\d{6}")


def _strip_prefix(kind: str, value: str) -> str:
    """Prefixes taken off as long as one matches (`(OCoLC)ocm00012345`)."""
    text = value.strip()
    for _ in range(3):
        lowered = text.lower()
        prefix = next((p for p in PREFIXES[kind] if lowered.startswith(p)), None)
        if prefix is None:
            break
        text = text[len(prefix) :].strip()
    return text


def normalise_doi(value: str) -> str:
    """`10.1016/J.X` stays as registered (DOIs compare case-insensitively; we keep the case the
    source used and let comparisons lower it)."""
    text = _strip_prefix("doi", value)
    if len(text) > LIMITS["id"]:  # the canonical field's bound: kept as rejected, not a refusal
        raise BadIdentifier(f"a DOI of {len(text)} characters is longer than any registered one")
    if not _DOI.fullmatch(text):
        raise BadIdentifier(f"{text!r} is not a DOI (10.<registrant>/<suffix>)")
    return text


def normalise_pmid(value: str) -> str:
    text = _strip_prefix("pmid", value).lstrip("0") or "0"
    if not _PMID.fullmatch(text):
        raise BadIdentifier(f"{value.strip()!r} is not a PubMed id (a positive number)")
    return text


def normalise_oclc(value: str) -> str:
    text = _strip_prefix("oclc", value).lstrip("0")
    if not _OCLC.fullmatch(text):
        raise BadIdentifier(f"{value.strip()!r} is not an OCLC number (digits)")
    return text


def normalise_isbn(value: str) -> str:
    """The ISBN-13 (an ISBN-10 converted), after checking the check digit."""
    text = _strip_prefix("isbn", value)
    try:
        return str(stdnum_isbn.to_isbn13(stdnum_isbn.validate(text)))
    except ValidationError as error:
        raise BadIdentifier(f"{text!r} is not a valid ISBN: {error}") from None


def isbn10(value: str) -> str | None:
    """The ISBN-10 of a (valid) ISBN, None for 979 ISBNs, which have none."""
    try:
        return str(stdnum_isbn.to_isbn10(normalise_isbn(value)))
    except (ValidationError, BadIdentifier):
        return None


def normalise_issn(value: str) -> str:
    """`NNNN-NNNC`, after checking the check digit."""
    text = _strip_prefix("issn", value)
    try:
        return str(stdnum_issn.format(stdnum_issn.validate(text)))
    except ValidationError as error:
        raise BadIdentifier(f"{text!r} is not a valid ISSN: {error}") from None


def normalise_lccn(value: str) -> str:
    """The Library of Congress's normalisation: blanks removed, anything from a `/` dropped,
    a hyphen's right part left-padded with zeros to six digits and the hyphen removed."""
    text = "".join(_strip_prefix("lccn", value).split()).lower()
    text = text.split("/", 1)[0]
    if "-" in text:
        left, right = text.split("-", 1)
        if right.isdigit() and len(right) <= 6:
            text = left + right.zfill(6)
    if not _LCCN.fullmatch(text):
        raise BadIdentifier(f"{value.strip()!r} is not an LCCN")
    return text


NORMALISERS = {
    "doi": normalise_doi,
    "pmid": normalise_pmid,
    "oclc": normalise_oclc,
    "isbn": normalise_isbn,
    "issn": normalise_issn,
    "eissn": normalise_issn,
    "lccn": normalise_lccn,
}

# `rft_id` URIs (and 0.1 `id=` values), by scheme, to the kind of identifier they carry.
ID_SCHEMES: dict[str, str] = {
    "info:doi/": "doi",
    "doi:": "doi",
    "https://doi.org/": "doi",
    "http://dx.doi.org/": "doi",
    "info:pmid/": "pmid",
    "pmid:": "pmid",
    "info:oclcnum/": "oclc",
    "urn:isbn:": "isbn",
    "urn:issn:": "issn",
    "info:lccn/": "lccn",
}


def kind_of_uri(uri: str) -> str | None:
    lowered = uri.strip().lower()
    return next((kind for scheme, kind in ID_SCHEMES.items() if lowered.startswith(scheme)), None)


@dataclass
class Identifiers:
    """The identifiers of one citation: the first valid value of each kind, plus what was
    refused and why (kept for staff, never silently dropped)."""

    found: dict[str, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    def add(self, kind: str, raw: str) -> None:
        if not raw.strip() or kind in self.found:
            return
        body = raw.strip()
        for scheme in ID_SCHEMES:  # an empty `info:doi/` is no identifier, not a bad one
            if body.lower() == scheme:
                return
        try:
            self.found[kind] = NORMALISERS[kind](raw)
        except BadIdentifier as error:
            self.rejected.append(f"{kind}: {error}")
