"""The BLDSS reply codes and the evidence each one is (a table; the engine decides).

Source: the British Library's "BLDSS Reply Codes" page, as summarised in
shared/standards/artemail/FORMAT.md. Codes are upper case at the start of a line; some carry
a value after them (weeks, a date, an amount, a number). Codes that only inform become
notifications carrying the BL's own text.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.model import Event


@dataclass(frozen=True)
class Code:
    event: Event
    answer: bool | None = None
    reason: int | None = None  # UNFILLED_REASONS number
    value: str | None = None  # what follows the code: "date", "amount", "number", "weeks"
    meaning: str = ""


CODES: dict[str, Code] = {
    # CANC: the BL cancelled the order. As evidence that is "this lender will not supply":
    # Unfilled, which the lifecycle turns into Cancelled when a cancel was pending and into
    # the next lender otherwise (a CancelReply with no cancel pending would be refused).
    "CANC": Code(Event.UNFILLED, reason=27, meaning="cancelled by the British Library"),
    "CAT*REAPPLY": Code(
        Event.RETRY_POSSIBLE, value="weeks", meaning="being catalogued: reapply later"
    ),
    "CRF*CANNOT MATCH ITEM": Code(Event.UNFILLED, reason=17, meaning="cannot match the item"),
    "DIRECT": Code(Event.LENDER_NOTE, meaning="supplied direct"),
    "DUE": Code(Event.LOANED, value="date", meaning="loan despatched, due back on the date"),
    "DUE*AUTOMATIC RENEWAL PENDING": Code(Event.LENDER_NOTE, meaning="automatic renewal pending"),
    "DUE WAIT": Code(Event.LENDER_NOTE, meaning="on loan elsewhere: waiting list"),
    "*FINAL DEMAND": Code(Event.OVERDUE, meaning="final demand for the loan's return"),
    "*INVALID ORDERING OPTIONS": Code(
        Event.UNFILLED, reason=23, meaning="invalid ordering options"
    ),
    "NCANC": Code(Event.CANCEL_REPLY, answer=False, meaning="not cancelled"),
    "NO RENEW": Code(Event.RENEW_ANSWER, answer=False, meaning="renewal refused"),
    "NOT": Code(Event.UNFILLED, reason=27, meaning="not available"),
    "NOT*NUKL": Code(Event.UNFILLED, reason=18, meaning="not available in UK libraries"),
    "RCOP": Code(Event.LENDER_NOTE, meaning="reply about a copy"),
    "RENEWED*": Code(Event.RENEW_ANSWER, answer=True, value="date", meaning="renewed"),
    "SHIPPED COPY": Code(Event.COPY_COMPLETED, meaning="copy shipped"),
    "*TOTAL LIBRARY": Code(Event.LENDER_NOTE, meaning="total library search"),
    "*TOTAL LIBRARY MAX COST": Code(
        Event.CONDITIONAL, value="amount", meaning="supply exceeds the maximum cost"
    ),
    "TOTAL LOAN*MORE THAN 1 VOLUME": Code(Event.LENDER_NOTE, meaning="more than one volume"),
    "USE O/D": Code(Event.LENDER_NOTE, meaning="use the on-demand service"),
    "USE*": Code(Event.LENDER_NOTE, value="number", meaning="use another number"),
}

# Longest first, so that "DUE WAIT" is not read as "DUE" and "NOT*NUKL" not as "NOT".
BY_LENGTH: list[str] = sorted(CODES, key=len, reverse=True)

# Every event a reply can report (the contract's `events_in`).
EVENTS_IN: frozenset[Event] = frozenset(c.event for c in CODES.values()) | {Event.LENDER_NOTE}
