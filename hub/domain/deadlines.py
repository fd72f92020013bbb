"""Deadlines: when a transaction next needs the clock, and what a Tick finds due.

The engine never reads a clock. The hub's timer sends a Tick for each transaction whose
`next_deadline` passed; `due` turns the Tick into the table's inputs, one at a time, each
judged on the transaction as the previous one left it. Which deadline counts in which state
is the table's to say: a deadline matters in the states with a row for its input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.core.directory import Directory, Partner
from connectors.core.model import Event, Reason
from hub.domain.inputs import Input
from hub.domain.lifecycle import (
    ENTERED,
    SILENT_END_STATES,
    Hub,
    SilentEnd,
    Since,
    accepts,
    silent_end,
)
from hub.domain.transaction import Pending, Transaction, aware

NO_ANSWER = Reason.from_code(27, "no answer in time")


def next_deadline(txn: Transaction, directory: Directory | None = None) -> datetime | None:
    """`directory`: where the silent-partner close is looked up (without it, not counted)."""
    return _earliest(txn, unreported_end(txn, directory) if directory is not None else None)


def _earliest(txn: Transaction, closing: Closing | None) -> datetime | None:
    timing_out = accepts(txn.state, Hub.LENDER_TIMED_OUT) and not _instead(
        closing, Hub.LENDER_TIMED_OUT
    )
    due = [
        txn.need_before if accepts(txn.state, Hub.NEED_BEFORE_PASSED) else None,
        txn.lender_deadline if timing_out else None,
        txn.due_date if accepts(txn.state, Hub.DUE_DATE_PASSED) else None,
        closing.at if closing is not None and not held(txn) else None,
        *(p.next_at for p in txn.pending),
    ]
    return min((aware(d) for d in due if d is not None), default=None)


# -- silent partners: a loan whose end nobody can report (SILENT_ENDS) ---------------------

# The start of the staff note a closing clock sets: only a note of ours is replaced or cleared.
CLOSING = "the hub closes this loan on "


_DEFAULTS = Partner(symbol="-", name="a partner the directory no longer has", protocol="-")


@dataclass(frozen=True)
class Closing:
    at: datetime
    why: str  # the rule's reason with the parties named
    since: str  # what the clock counts from, with its date
    days: float
    rule: SilentEnd


def _instead(closing: Closing | None, clock: Hub) -> bool:
    """Whether a coming close stands in for this clock input (it is then not sent)."""
    return closing is not None and clock in closing.rule.instead_of


def unreported_end(txn: Transaction, directory: Directory) -> Closing | None:
    """When and why the hub closes `txn`, if neither party can report its end."""
    attempt = txn.attempt
    if attempt is None or txn.state not in SILENT_END_STATES:
        return None  # most steps: no lookups (this runs after every step)
    rule = silent_end(
        txn.state, _reports(directory, attempt.lender), _reports(directory, txn.borrower)
    )
    if rule is None:
        return None
    start = _since(txn, rule)
    if start is None:
        return None
    partner = directory.partner(attempt.lender)
    days = (partner or _DEFAULTS).close_unreported_after_days
    why = rule.why.format(
        borrower=_named(directory, txn.borrower), lender=_named(directory, attempt.lender)
    )
    since = f"{rule.since.value} ({start.date().isoformat()})"
    return Closing(start + timedelta(days=days), why, since, days, rule)


def _reports(directory: Directory, symbol: str) -> frozenset[Event] | None:
    """What partner `symbol`'s channel can report (None: every step, as `unreported` says)."""
    partner = directory.partner(symbol)
    return directory.reports.get(partner.protocol) if partner else None


def _named(directory: Directory, symbol: str) -> str:
    partner = directory.partner(symbol)
    return f"{symbol} ({partner.protocol})" if partner else symbol


def _since(txn: Transaction, rule: SilentEnd) -> datetime | None:
    """The time the rule counts from: the due date, or when the loan entered its state."""
    if rule.since is Since.DUE_DATE and txn.due_date is not None:
        return aware(txn.due_date)
    entered = ENTERED[rule.since]
    step = next(
        (s for s in reversed(txn.history) if s.to_state in entered and s.from_state not in entered),
        None,
    )
    return aware(step.at) if step is not None else None


def settle(txn: Transaction, directory: Directory) -> None:
    """After a step: the next deadline, and staff's note of a coming close kept in step with
    it (set while the close is coming, moved with it, cleared once it no longer is; a note
    of anything else is never replaced)."""
    closing = unreported_end(txn, directory)
    ours = (txn.needs_attention or "").startswith(CLOSING)
    if closing is not None and (ours or txn.needs_attention is None):
        txn.needs_attention = (
            f"{CLOSING}{closing.at.date().isoformat()}, {closing.days:g} days after "
            f"{closing.since}: {closing.why}; close it sooner, or act if the item is not back"
        )
    elif closing is None and ours:
        txn.needs_attention = None
    txn.next_deadline = _earliest(txn, closing)


def held(txn: Transaction) -> bool:
    """Another note for staff stands (a lost item, a lender's demand after the return, a
    failing delivery): the clock does not close the loan over it, or the note would leave
    every list of open loans unsettled; staff settle it and close the loan."""
    return txn.needs_attention is not None and not txn.needs_attention.startswith(CLOSING)


def _unreported_end(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    closing = unreported_end(txn, directory)
    if closing is None or held(txn) or at < closing.at:
        return None
    note = f"closed by the hub: {closing.why}; {closing.days:g} days after {closing.since}"
    return Input(Hub.UNREPORTED_END, note=note, why=note)


def failed_request(txn: Transaction) -> Pending | None:
    """The request to the lender now asked, if its delivery has failed."""
    attempt = txn.attempt
    if attempt is None:
        return None
    return next(
        (
            p
            for p in txn.pending
            if p.recipient == attempt.lender
            and p.command.message.event is Event.REQUEST
            and p.first_failed is not None
        ),
        None,
    )


def due_recipients(txn: Transaction, at: datetime) -> list[str]:
    """Partners with a failed step whose next try is due."""
    return sorted(
        {p.recipient for p in txn.pending if p.next_at is not None and aware(p.next_at) <= at}
    )


def unreachable_after(directory: Directory, lender: str) -> timedelta:
    partner = directory.partner(lender)
    return timedelta(minutes=partner.unreachable_after_minutes if partner else 0)


def _unreachable(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    """A request its lender has not taken within unreachable_after goes to the next lender
    instead of being tried again."""
    attempt, request = txn.attempt, failed_request(txn)
    if attempt is None or request is None or request.first_failed is None:
        return None
    if not accepts(txn.state, Hub.LENDER_UNREACHABLE):
        return None
    if at - aware(request.first_failed) < unreachable_after(directory, attempt.lender):
        return None
    outcome = f"Unreachable: {request.error}"
    return Input(Hub.LENDER_UNREACHABLE, outcome=outcome, why=outcome)


def _retry(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    return Input(Hub.RETRY_DUE) if due_recipients(txn, at) else None


def _need_before(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    need = txn.need_before
    if need is None or not accepts(txn.state, Hub.NEED_BEFORE_PASSED) or at < aware(need):
        return None
    why = f"need-before date {need.date().isoformat()} passed"
    return Input(Hub.NEED_BEFORE_PASSED, why=why, withdraw=f"request expired: {why}")


def _lender_timed_out(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    deadline, attempt = txn.lender_deadline, txn.attempt
    if deadline is None or attempt is None or not accepts(txn.state, Hub.LENDER_TIMED_OUT):
        return None
    if _instead(unreported_end(txn, directory), Hub.LENDER_TIMED_OUT):
        return None  # nobody could tell of a supply: the silent close applies instead
    if at < aware(deadline):
        return None
    why = f"no answer from {attempt.lender} by {deadline.isoformat()}"
    return Input(
        Hub.LENDER_TIMED_OUT,
        note=f"lender timed out: {why}",
        why=why,
        withdraw=f"Expired: {why}",
        outcome=f"Expired: {why}",
        reason=NO_ANSWER,
    )


def _due_date(txn: Transaction, at: datetime, directory: Directory) -> Input | None:
    due = txn.due_date
    if due is None or not accepts(txn.state, Hub.DUE_DATE_PASSED) or at < aware(due):
        return None
    return Input(Hub.DUE_DATE_PASSED)


# In this order: a lender past reach is replaced before its request is tried again; failed
# deliveries go again before the deadlines add new steps behind them.
CHECKS: list[Callable[[Transaction, datetime, Directory], Input | None]] = [
    _unreachable,
    _retry,
    _need_before,
    _lender_timed_out,
    _due_date,
    _unreported_end,
]
