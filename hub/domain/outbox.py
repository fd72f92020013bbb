"""Deliveries a transaction owes its partners: queued in order, retried, parked, sent again.

Every step for a partner becomes a `Pending` delivery on the transaction and stays there
until the partner accepted it. Steps to one partner go in order: a failed step holds back the
next to that partner (not to others) until its retry is due, staff ask, or the partner
accepts something again. Each delivery carries the recipient's correlation data (what it gave
to recognise its own messages) and the transaction's state after the step that made it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connectors.core.model import Event, Message
from connectors.core.records import Delivery, DeliveryResult
from hub.domain.deadlines import due_recipients, unreachable_after
from hub.domain.lifecycle import State
from hub.domain.run import Run
from hub.domain.transaction import Pending, Sending, Transaction, aware, party

WITHDRAWN_MEMORY = 50  # command ids of withdrawn steps kept per transaction


def deliver(
    run: Run, recipient: str, message: Message, attempt: int, withdraws: list[str] | None = None
) -> None:
    """Queue a step for `recipient` (attempt 0: the borrower) and send what may go now.
    `withdraws`: steps in flight this one takes back (see `Delivery.withdraws`)."""
    txn = run.txn
    partner = run.directory.partner(recipient)
    command = Delivery(
        command_id=run.next_id(),
        transaction_id=txn.id,
        recipient=recipient,
        protocol=partner.protocol if partner else "unknown",
        attempt=attempt,
        # What one party gave to recognise its messages is for that party only: the
        # recipient's own comes as `correlation`, nobody else's travels in the message.
        message=message.model_copy(update={"transaction_id": txn.id, "correlation": None}),
        correlation=txn.parties.get(party(recipient, attempt)),
        withdraws=withdraws or [],
    )
    run.created.add(command.command_id)
    txn.pending.append(Pending(command=command, status=Sending.QUEUED))
    release(run, recipient)


def release(run: Run, recipient: str, force: bool = False) -> int:
    """Send what may go to `recipient` now, in order. Steps in flight do not hold back the
    next (the outbound connector keeps one transaction's steps in order and fails a step
    whose predecessor failed); a failed step does, until its retry is due, staff ask, or
    the partner accepted something again (`force`: send the first failed one, and wait
    for its result before sending what follows)."""
    sent = 0
    for pending in [p for p in run.txn.pending if p.recipient == recipient]:
        if pending.status is Sending.IN_FLIGHT:
            continue
        retry = pending.status is not Sending.QUEUED
        if retry and not force:
            break
        pending.status, pending.next_at = Sending.IN_FLIGHT, None
        # To the protocol the recipient speaks now: a partner that changed protocol while a
        # step to it waited gets it in the new one (and only protocols a partner speaks have
        # an outbound agent, hub.runtime.app.delivering).
        partner = run.directory.partner(recipient)
        protocol = partner.protocol if partner else pending.command.protocol
        command = pending.command.model_copy(
            update={"try_number": pending.failures + 1, "protocol": protocol}
        )
        run.write(f"ill.outbound.{command.protocol}", command)
        sent += 1
        if retry:
            break  # the partner was failing: what follows waits for this one's result
    return sent


def withdraw_unsent(
    run: Run, recipient: str, attempt: int | None = None, in_flight_too: bool = False
) -> list[Pending]:
    """Take back what waits for `recipient` (of one lender attempt, or all) and has not been
    handed to the outbound connector: it is never sent. Steps in flight stay (they may have
    arrived) unless `in_flight_too` (the recipient cannot be reached). The ids taken are
    remembered so a late result is not tried again."""
    txn = run.txn
    taken = [
        p
        for p in txn.pending
        if p.recipient == recipient
        and attempt in (None, p.command.attempt)
        and (in_flight_too or p.status is not Sending.IN_FLIGHT)
    ]
    txn.pending = [p for p in txn.pending if p not in taken]
    ids = [p.command.command_id for p in taken]
    txn.withdrawn = [*txn.withdrawn, *ids][-WITHDRAWN_MEMORY:]
    parked = any(p.status is Sending.PARKED for p in txn.pending)
    if taken and not parked and (txn.needs_attention or "").startswith("delivery of"):
        txn.needs_attention = None
    return taken


def pending_for(txn: Transaction, command_id: str) -> Pending | None:
    return next((p for p in txn.pending if p.command.command_id == command_id), None)


def delivered(run: Run, command_id: str) -> None:
    """The recipient accepted a delivery: the next step queued for it goes now."""
    txn = run.txn
    done = pending_for(txn, command_id)
    if done is None:
        return
    txn.pending.remove(done)
    parked = any(p.status is Sending.PARKED for p in txn.pending)
    if not parked and (txn.needs_attention or "").startswith("delivery of"):
        txn.needs_attention = None
    release(run, done.recipient, force=True)


def request_unreachable(run: Run, result: DeliveryResult, first_failed: datetime) -> bool:
    """Whether a failed delivery is the request to the lender now asked, and that lender is
    past its chances: the failure is final, or unreachable_after or the schedule ran out."""
    txn, attempt = run.txn, run.txn.attempt
    if not (
        result.event is Event.REQUEST
        and attempt is not None
        and result.attempt == attempt.number
        and txn.state is State.REQUESTED
    ):
        return False
    partner = run.directory.partner(result.recipient)
    schedule = partner.retry_minutes if partner else []
    pending = pending_for(txn, result.command_id)
    failures = (pending.failures if pending else 0) + 1
    return (
        not result.retryable
        or run.at - aware(first_failed) >= unreachable_after(run.directory, result.recipient)
        or failures > len(schedule)
    )


def schedule_retry(run: Run, result: DeliveryResult) -> str:
    """Schedule the next try of a failed delivery, or park it after the last."""
    txn = run.txn
    pending = pending_for(txn, result.command_id)
    if pending is None:
        # Not a delivery this engine sent (or from before pending deliveries were kept).
        txn.needs_attention = (
            f"delivery of {result.event.value} to {result.recipient} failed: {result.detail}"
        )
        return "failed"
    partner = run.directory.partner(result.recipient)
    schedule = partner.retry_minutes if partner else []
    failures = pending.failures + 1
    pending.failures, pending.first_failed, pending.error = (
        failures,
        pending.first_failed or run.at,
        result.detail,
    )
    if result.retryable and failures <= len(schedule):
        pending.status = Sending.RETRY
        pending.next_at = run.at + timedelta(minutes=schedule[failures - 1])
        return f"try {failures + 1} at {pending.next_at.isoformat()}"
    every = partner.parked_retry_minutes if partner else 60.0
    pending.status = Sending.PARKED
    pending.next_at = run.at + timedelta(minutes=every)
    txn.needs_attention = (
        f"delivery of {result.event.value} to {result.recipient} parked after "
        f"{failures} failed tries: {result.detail}"
    )
    return f"parked after {failures} tries; tried again every {every:g} minutes"


def resend_due(run: Run) -> int:
    """Send again every failed step whose time has come (one per recipient, in order)."""
    return sum(release(run, r, force=True) for r in due_recipients(run.txn, run.at))


def redeliver(run: Run, recipient: str | None) -> int:
    recipients = {p.recipient for p in run.txn.pending}
    chosen = sorted(recipients if recipient is None else recipients & {recipient})
    return sum(release(run, r, force=True) for r in chosen)


def waiting(txn: Transaction, recipient: str | None) -> list[Pending]:
    """Deliveries not in flight (failed, parked or queued behind one), to one partner or all."""
    return [
        p
        for p in txn.pending
        if p.status is not Sending.IN_FLIGHT and recipient in (None, p.recipient)
    ]
