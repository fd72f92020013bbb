"""What the hub does for a row of the lifecycle table: one function per `Effect`.

An effect works on the run's transaction (rota, attempts, deliveries) and writes records,
but never assigns the state: the row's target does, after its effects. Where what follows
depends on the outcome, an effect emits a follow-up input for the table (`Run.emit`).
Each returns a note for the step's line on ill.events, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from connectors.core.holdings import HoldingsResult, search_terms
from connectors.core.model import Event, Message, Reason, Role, lender_request_id
from connectors.core.records import Locate, RoutingDecision
from connectors.core.topics import Topic
from hub.domain import outbox as deliveries
from hub.domain.inputs import Input
from hub.domain.lifecycle import ROUTABLE, Effect, Hub, State
from hub.domain.rota import at_limit, rank
from hub.domain.run import Run
from hub.domain.transaction import Attempt, Sending, aware

NO_LENDER = Reason.from_code(18, "no lender in the rota could supply")
HUB = "rshub"

Note = str | None


def hub_message(run: Run, event: Event, request_id: str, **fields: object) -> Message:
    """A step the hub itself says, stamped with the run's time."""
    return Message.model_validate(
        {
            "event": event,
            "request_id": request_id,
            "sender": HUB,
            "source_protocol": HUB,
            "timestamp": run.at,
            **fields,
        }
    )


# -- the request and its rota -------------------------------------------------------------


def take_request(run: Run, given: Input) -> Note:
    """Keep the borrower's request (a Retry's too: kept as the Request it is now, which is
    what lenders are asked with; the borrower's new id for it is not theirs to see, but
    addresses this transaction from now on)."""
    message = given.message
    assert message is not None
    if message.event is Event.RETRY and message.previous_request_id:
        run.index_retried(message.previous_request_id)  # the codec put the new id there
    if message.event is not Event.REQUEST:
        message = message.model_copy(update={"event": Event.REQUEST, "previous_request_id": None})
    run.txn.request = message
    need = message.need_before
    run.txn.need_before = aware(need) if need else None
    return None


def start(run: Run, given: Input) -> Note:
    """Choose the rota profile; search the members' catalogues, or go on at once (Located
    with no holdings) when there is nothing to search (no catalogue, or nothing in the
    request to search by)."""
    txn, directory = run.txn, run.directory
    assert txn.request is not None
    profile = directory.profile_for(txn.request)
    txn.profile = profile.name
    members = directory.rota_for(txn.request)
    terms = search_terms(txn.request.bibliographic) if profile.check_holdings else []
    searchable = [
        m
        for m in members
        if m not in txn.skipped_by_staff
        and (partner := directory.partner(m)) is not None
        and partner.catalogue is not None
    ]
    if terms and searchable:
        txn.locate_id = f"{run.ref}:locate"
        command = Locate(
            locate_id=txn.locate_id, transaction_id=txn.id, terms=terms, lenders=searchable
        )
        run.write(Topic.LOCATE, command)
        return None
    txn.locate_id = None
    run.emit(Input(Hub.LOCATED, note="nothing to search"))
    return None


def new_round(run: Run, given: Input) -> Note:
    """Staff restart: the lenders asked so far may be asked again."""
    run.txn.round_start = len(run.txn.attempts)
    return None


def rank_rota(run: Run, given: Input) -> Note:
    _rank(run, {result.lender: result for result in given.holdings})
    return None


def _rank(run: Run, holdings: dict[str, HoldingsResult]) -> None:
    txn = run.txn
    assert txn.request is not None
    txn.locate_id = None
    ranked = rank(
        run.directory.profile_for(txn.request),
        run.directory.rota_for(txn.request),
        txn.borrower,
        txn.request.service_type,
        holdings,
        run.load,
        run.directory,
    )
    txn.ranking = ranked
    txn.rota = [c.lender for c in ranked if not c.skip]


def next_lender(run: Run, given: Input) -> Note:
    _ask(run, given.why)
    return None


def ask_named(run: Run, given: Input) -> Note:
    assert given.lender is not None
    run.txn.locate_id = None
    if not run.txn.ranking:
        _rank(run, {})
    _ask(run, given.why, forced=given.lender)
    return None


def _ask(run: Run, why_previous: str | None, forced: str | None = None) -> None:
    """Ask the best lender not yet tried in this round (or `forced`, named by staff). A
    lender at its limit of open incoming requests gets an automatic rejection recorded on
    its behalf, and the next is considered. Nobody left: RotaExhausted."""
    txn, directory = run.txn, run.directory
    assert txn.request is not None
    tried = {a.lender for a in txn.attempts[txn.round_start :]}
    skipped = [{"lender": c.lender, "reason": c.skip} for c in txn.ranking if c.skip]
    skipped += [
        {"lender": lender, "reason": "already tried"} for lender in txn.rota if lender in tried
    ]
    skipped += [
        {"lender": lender, "reason": "skipped by staff"}
        for lender in txn.rota
        if lender in txn.skipped_by_staff and lender not in tried
    ]
    queue = (
        [forced]
        if forced
        else [
            lender
            for lender in txn.rota
            if lender not in tried and lender not in txn.skipped_by_staff
        ]
    )
    chosen = None
    for lender in queue:
        limit = (
            None if forced else at_limit(directory, lender, run.load.figures(lender, txn.borrower))
        )
        if limit is None:
            chosen = lender
            break
        number = len(txn.attempts) + 1
        txn.attempts.append(
            Attempt(
                number=number,
                lender=lender,
                request_id=lender_request_id(txn.id, number),
                outcome=f"Unfilled: rejected by rshub on the lender's behalf ({limit})",
                reason=Reason.from_code(20, f"over limit: {limit}"),
                automatic=True,
            )
        )
        skipped.append({"lender": lender, "reason": f"rejected on its behalf: {limit}"})
        run.record("automatic", Event.UNFILLED.value, lender, txn.state, detail=limit)
        why_previous = f"{lender} is at its limit ({limit})"
    number = len(txn.attempts) + 1
    if forced:
        reason = f"chosen by staff ({why_previous})" if why_previous else "chosen by staff"
    elif chosen is None:
        reason = "rota exhausted" if txn.rota else "no lender in the rota"
    elif number == 1 or why_previous is None:
        reason = "best ranked lender of the rota"
    else:
        reason = f"next in the rota; previous: {why_previous}"
    run.route(
        RoutingDecision(
            transaction_id=txn.id,
            attempt=number,
            profile=txn.profile,
            candidates=[{**c.model_dump(mode="json"), "why": c.why} for c in txn.ranking],
            chosen=chosen,
            skipped=skipped,
            reason=reason,
            at=run.at,
        )
    )
    if chosen is None:
        last = next((a.reason for a in reversed(txn.attempts) if a.reason), NO_LENDER)
        run.emit(Input(Hub.ROTA_EXHAUSTED, why=reason, reason=last))
        return
    attempt = Attempt(number=number, lender=chosen, request_id=lender_request_id(txn.id, number))
    txn.attempts.append(attempt)
    partner = directory.partner(chosen)
    days = partner.answer_timeout_days if partner else 5.0
    txn.lender_deadline = run.at + timedelta(days=days)
    request = txn.request.model_copy(update={"request_id": attempt.request_id})
    deliveries.deliver(run, chosen, request, number)
    if any(not a.automatic for a in txn.attempts[:-1]):
        # The borrower hears that the request moved on, not that it failed (ISO 18626:
        # ExpectToSupply as a Notification); protocols without such a message skip it.
        # Automatic rejections alone are not news: no lender had been asked.
        moved = hub_message(
            run,
            Event.LENDER_NOTE,
            txn.borrower_request_id,
            note=f"rshub: {why_previous or reason}; asking the next lender",
        )
        deliveries.deliver(run, txn.borrower, moved, attempt=0)


def never_ask(run: Run, given: Input) -> Note:
    """Never ask this lender for this request."""
    txn = run.txn
    assert given.lender is not None
    txn.skipped_by_staff = [*dict.fromkeys([*txn.skipped_by_staff, given.lender])]
    return None


def skip_holder(run: Run, given: Input) -> Note:
    """The lender skipped holds the request: take it back; the next is asked (a follow-up)."""
    if run.txn.open_with == given.lender:
        note = _withdraw(run, given.withdraw)
        run.emit(Input(Hub.LENDER_SKIPPED, sender=given.sender, why=given.why))
        return note
    return None


def close_attempt(run: Run, given: Input) -> Note:
    """The current lender's attempt ends (unless a withdrawal already ended it)."""
    attempt = run.txn.attempt
    assert attempt is not None
    if attempt.outcome is None:
        attempt.outcome = given.outcome
    attempt.reason = given.reason
    return None


def withdraw(run: Run, given: Input) -> Note:
    return _withdraw(run, given.withdraw)


def _withdraw(run: Run, why: str) -> Note:
    """Take the request back from the lender holding it (staff rerouting, time-out,
    expiry). What waits for that lender and was never sent is dropped; the lender gets one
    Cancel if it may have the request: it accepted it, or it is in flight (then the Cancel
    goes only if the request gets through, `Delivery.withdraws`). A lender that never
    received it gets nothing: a Request then a Cancel would be a book nobody wants."""
    txn = run.txn
    attempt = txn.attempt
    if attempt is None or attempt.outcome is not None or txn.state not in ROUTABLE:
        return None
    attempt.outcome = why
    request = next(
        (
            p
            for p in txn.pending
            if p.command.attempt == attempt.number and p.command.message.event is Event.REQUEST
        ),
        None,
    )
    dropped = deliveries.withdraw_unsent(run, attempt.lender, attempt.number)
    said = ", ".join(p.command.message.event.value for p in dropped)
    note = f"withdrawn before sent to {attempt.lender}: {said}" if dropped else None
    in_flight = [
        p.command.command_id
        for p in txn.pending
        if p.recipient == attempt.lender and p.command.attempt == attempt.number
    ]
    # A lender that answered has the request, whatever its delivery's result says.
    received = request is None or txn.state is not State.REQUESTED
    if not received and not in_flight:
        never = f"{attempt.lender} never received the request, nothing to cancel"
        return f"{note}; {never}" if note else never
    cancel = Message(
        event=Event.CANCEL,
        request_id=attempt.request_id,
        sender=txn.borrower,
        source_protocol=HUB,
        timestamp=run.at,
        note=f"rshub: {why}",
        patron_id=txn.request.patron_id if txn.request else None,
        item_id=txn.item_id,
    )
    # Conditional only while the request itself may not have arrived.
    withdraws = [] if received else in_flight
    deliveries.deliver(run, attempt.lender, cancel, attempt.number, withdraws=withdraws)
    return note


def drop_deliveries(run: Run, given: Input) -> Note:
    """The lender cannot be reached: what waits for it is not for it any more."""
    attempt = run.txn.attempt
    assert attempt is not None
    deliveries.withdraw_unsent(run, attempt.lender, in_flight_too=True)
    return None


# -- steps between the parties -------------------------------------------------------------


def forward(run: Run, given: Input) -> Note:
    """Pass a step to the other party, under the request id that party knows, with what
    the transaction knows and the sender's protocol did not say (item id, patron)."""
    assert given.message is not None and given.role is not None
    _forward(run, given.message, given.role)
    return None


def _forward(run: Run, message: Message, role: Role) -> None:
    txn = run.txn
    known: dict[str, object] = {
        "item_id": message.item_id or txn.item_id,
        "patron_id": message.patron_id or (txn.request.patron_id if txn.request else None),
    }
    if role is Role.BORROWER:
        attempt = txn.attempt
        assert attempt is not None
        update = {**known, "request_id": attempt.request_id}
        deliveries.deliver(run, attempt.lender, message.model_copy(update=update), attempt.number)
        return
    update = {**known, "request_id": txn.borrower_request_id}
    borrower = run.directory.partner(txn.borrower)
    if message.due_date and borrower and borrower.delivery_time_offset_days:
        # The patron must return it in time for the library to ship it back.
        offset = timedelta(days=borrower.delivery_time_offset_days)
        update["due_date"] = message.due_date - offset
    deliveries.deliver(run, txn.borrower, message.model_copy(update=update), 0)


def attention(run: Run, given: Input) -> Note:
    """Staff must settle this (a lost item: charges, replacement)."""
    assert given.message is not None
    said = f": {given.message.note}" if given.message.note else ""
    run.txn.needs_attention = (
        f"{given.message.event.value} reported by {given.sender}{said}; staff must settle it"
    )
    return None


def answer_cancel(run: Run, given: Input) -> Note:
    """A cancel before any lender was asked: the hub itself says yes."""
    txn = run.txn
    reply = hub_message(
        run,
        Event.CANCEL_REPLY,
        txn.borrower_request_id,
        answer=True,
        note="rshub: cancelled before a lender was asked",
    )
    txn.locate_id = None
    deliveries.deliver(run, txn.borrower, reply, attempt=0)
    return None


def refuse_for_lender(run: Run, given: Input) -> Note:
    """The borrower's Cancel or Renew has no form in its lender's protocol: the hub answers
    no on the lender's behalf, so the borrower is not left waiting."""
    txn = run.txn
    result = given.result
    assert result is not None
    answer = Event.CANCEL_REPLY if result.event is Event.CANCEL else Event.RENEW_ANSWER
    why = f"{result.recipient} takes no {result.event.value} in its protocol"
    reply = hub_message(run, answer, txn.borrower_request_id, answer=False, note=f"rshub: {why}")
    deliveries.deliver(run, txn.borrower, reply, attempt=0)
    return why


def tell_unfilled(run: Run, given: Input) -> Note:
    txn = run.txn
    unfilled = hub_message(
        run,
        Event.UNFILLED,
        txn.borrower_request_id,
        reason=given.reason or NO_LENDER,
        note=f"rshub: {given.why}",
    )
    deliveries.deliver(run, txn.borrower, unfilled, attempt=0)
    return given.why


def tell_expired(run: Run, given: Input) -> Note:
    txn = run.txn
    txn.locate_id = None
    expired = hub_message(
        run,
        Event.EXPIRED,
        txn.borrower_request_id,
        reason=Reason.from_code(27, given.why),
        note=f"rshub: {given.why}",
    )
    deliveries.deliver(run, txn.borrower, expired, attempt=0)
    return f"expired: {given.why}"


def tell_overdue(run: Run, given: Input) -> Note:
    txn, attempt = run.txn, run.txn.attempt
    assert attempt is not None and txn.due_date is not None
    overdue = hub_message(
        run,
        Event.OVERDUE,
        "",
        sender=attempt.lender,
        due_date=txn.due_date,
        note=f"rshub: due date {txn.due_date.date().isoformat()} passed without a return",
    )
    _forward(run, overdue, Role.LENDER)
    return "overdue"


# -- deliveries ----------------------------------------------------------------------------


def release(run: Run, given: Input) -> Note:
    assert given.result is not None
    deliveries.delivered(run, given.result.command_id)
    return None


def retry_later(run: Run, given: Input) -> Note:
    """Schedule the next try of a failed delivery, or park it after the last."""
    result = given.result
    assert result is not None
    if result.command_id in run.txn.withdrawn:
        return "withdrawn: not tried again"
    pending = deliveries.pending_for(run.txn, result.command_id)
    if pending is not None and pending.status is not Sending.IN_FLIGHT:
        return "stale result"
    return deliveries.schedule_retry(run, result)


def retry_or_move_on(run: Run, given: Input) -> Note:
    """As retry_later; but a request its lender cannot be reached for in time (a final
    failure, unreachable_after passed, the schedule run out) emits LenderUnreachable."""
    result = given.result
    assert result is not None
    pending = deliveries.pending_for(run.txn, result.command_id)
    if pending is None or pending.status is Sending.IN_FLIGHT:
        first_failed = (pending.first_failed if pending else None) or run.at
        if deliveries.request_unreachable(run, result, first_failed):
            outcome = f"Unreachable: {result.detail}"
            run.emit(Input(Hub.LENDER_UNREACHABLE, outcome=outcome, why=outcome))
            return "lender unreachable, next lender asked"
    return retry_later(run, given)


def resend_due(run: Run, given: Input) -> Note:
    return f"{deliveries.resend_due(run)} failed deliveries sent again"


def resend(run: Run, given: Input) -> Note:
    return f"{deliveries.redeliver(run, given.partner)} deliveries sent again"


def nothing(run: Run, given: Input) -> Note:
    return None


# -- staff ---------------------------------------------------------------------------------


def tell_cancelled(run: Run, given: Input) -> Note:
    """Staff cancelled the request: the borrower hears so as the answer to a cancel (ISO
    18626's Cancelled status), the one form every protocol has for a request that ends
    cancelled. A catalogue search still running is no longer waited for."""
    txn = run.txn
    txn.locate_id = None
    reply = hub_message(
        run, Event.CANCEL_REPLY, txn.borrower_request_id, answer=True, note=f"rshub: {given.why}"
    )
    deliveries.deliver(run, txn.borrower, reply, attempt=0)
    return given.why


def tell_partner(run: Run, given: Input) -> Note:
    """Staff's message to one party, as the other party's notification would reach it: to
    the borrower as the lender's (LenderNotification), to the lender as the borrower's, under
    the request id that party knows. A protocol without notifications gets nothing (its
    connector reports it not applicable)."""
    txn = run.txn
    assert given.role is not None
    if given.role is Role.BORROWER:
        note = hub_message(run, Event.LENDER_NOTE, txn.borrower_request_id, note=given.why)
        deliveries.deliver(run, txn.borrower, note, attempt=0)
        return f"message to {txn.borrower}"
    attempt = txn.attempt
    assert attempt is not None  # the engine refuses a message to a lender nobody is
    note = hub_message(
        run, Event.BORROWER_NOTE, attempt.request_id, sender=txn.borrower, note=given.why
    )
    deliveries.deliver(run, attempt.lender, note, attempt.number)
    return f"message to {attempt.lender}"


EFFECTS: dict[Effect, Callable[[Run, Input], Note]] = {
    Effect.TAKE_REQUEST: take_request,
    Effect.START: start,
    Effect.NEW_ROUND: new_round,
    Effect.RANK: rank_rota,
    Effect.FORWARD: forward,
    Effect.ATTENTION: attention,
    Effect.CLOSE_ATTEMPT: close_attempt,
    Effect.WITHDRAW: withdraw,
    Effect.DROP_DELIVERIES: drop_deliveries,
    Effect.NEXT_LENDER: next_lender,
    Effect.ASK_NAMED: ask_named,
    Effect.NEVER_ASK: never_ask,
    Effect.SKIP_HOLDER: skip_holder,
    Effect.ANSWER_CANCEL: answer_cancel,
    Effect.TELL_UNFILLED: tell_unfilled,
    Effect.TELL_EXPIRED: tell_expired,
    Effect.TELL_OVERDUE: tell_overdue,
    Effect.RELEASE: release,
    Effect.REFUSE_FOR_LENDER: refuse_for_lender,
    Effect.RETRY_LATER: retry_later,
    Effect.RETRY_OR_MOVE_ON: retry_or_move_on,
    Effect.RESEND_DUE: resend_due,
    Effect.RESEND: resend,
    Effect.NONE: nothing,
    Effect.TELL_CANCELLED: tell_cancelled,
    Effect.TELL_PARTNER: tell_partner,
}
