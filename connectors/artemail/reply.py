"""BL reply mails (sans-IO): finding the status code and our reference.

The layout of BLDSS reply mails is not public, so reading is tolerant: a report is a line
that starts with a known code (upper case, longest code first); our reference is found with
the partner's `reference_pattern` anywhere in the subject or body (the TX reference we sent,
or the FILEREFNO the BL quotes back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from connectors.artemail.codes import BY_LENGTH, CODES, Code
from connectors.core.model import parse_amount

_DATE = re.compile(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b|\b(\d{4})-(\d{2})-(\d{2})\b")
_AMOUNT = re.compile(r"\d+(?:\.\d+)?")
_NUMBER = re.compile(r"\d+")


class ReplyError(ValueError):
    pass


@dataclass(frozen=True)
class Report:
    code: str | None  # None: no known code (the mail is kept as a notification)
    spec: Code | None
    line: str  # the BL's line (its plain English)
    value: str  # what follows the code
    reference: str | None


def _code_of(line: str) -> str | None:
    for code in BY_LENGTH:
        if line.startswith(code):
            rest = line[len(code) :]
            # A code ends the word: "NOT" must not match "NOTE" (codes ending in * take a value).
            if code.endswith("*") or not rest or not (rest[0].isalnum()):
                return code
    return None


def references(text: str, pattern: re.Pattern[str]) -> list[str]:
    found: list[str] = []
    for match in pattern.finditer(text):
        groups = match.groupdict()
        value = next((v for v in groups.values() if v), None) or match.group(0)
        if value not in found:
            found.append(value)
    return found


def read_reply(subject: str, text: str, pattern: re.Pattern[str]) -> list[Report]:
    """Every report in a reply, each with the reference nearest before it (else the mail's)."""
    lines = [line.strip() for line in text.splitlines()]
    whole = references(subject + "\n" + text, pattern)
    reports: list[Report] = []
    current = next(iter(references(subject, pattern)), None)
    for line in lines:
        here = references(line, pattern)
        if here:
            current = here[0]
        code = _code_of(line)
        if code is not None:
            value = line[len(code) :].strip(" *:-")
            reports.append(Report(code, CODES[code], line, value, current))
    # A report before any reference takes the one the mail carries, if only one.
    if len(whole) == 1:
        reports = [
            r if r.reference else Report(r.code, r.spec, r.line, r.value, whole[0]) for r in reports
        ]
    if not reports:
        note = " ".join(line for line in lines if line)[:400]
        reports.append(Report(None, None, note, "", whole[0] if len(whole) == 1 else None))
    return reports


def date_in(value: str) -> datetime | None:
    """A BL date (dd-mm-yyyy, as RENEWED*[dd-mm-yyyy]; ISO dates too), at midnight UTC."""
    match = _DATE.search(value)
    if not match:
        return None
    try:
        if match.group(3):
            day, month, year = (int(match.group(i)) for i in (1, 2, 3))
        else:
            year, month, day = (int(match.group(i)) for i in (4, 5, 6))
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


def amount_in(value: str) -> Decimal | None:
    match = _AMOUNT.search(value)
    if not match:
        return None
    try:
        return parse_amount(match.group(0))
    except ValueError:
        return None


def number_in(value: str) -> str | None:
    match = _NUMBER.search(value)
    return match.group(0) if match else None
