"""Deadlines: when a transaction next needs the clock, and what a Tick finds due.

The engine never reads a clock. The hub's timer sends a Tick for each transaction whose
`next_deadline` passed; `due` turns the Tick into the table's inputs, one at a time, each
judged on the transaction as the previous one left it. Which deadline counts in which state
is the table's to say: a deadline matters in the states with a row for its input.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from connectors.core.directory import Directory
from connectors.core.model import Event, Reason
from hub.domain.inputs import Input
from hub.domain.lifecycle import Hub, accepts
from hub.domain.transaction import Pending, Transaction, aware

NO_ANSWER = Reason.from_code(27, "no answer in time")


def next_deadline(txn: Transaction) -> datetime | None:
    due = [
        txn.need_before if accepts(txn.state, Hub.NEED_BEFORE_PASSED) else None,
        txn.lender_deadline if accepts(txn.state, Hub.LENDER_TIMED_OUT) else None,
        txn.due_date if accepts(txn.state, Hub.DUE_DATE_PASSED) else None,
        *(p.next_at for p in txn.pending),
    ]
    return min((aware(d) for d in due if d is not None), default=None)


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
]
