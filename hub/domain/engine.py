"""The transaction engine: `apply(transaction, input, at)`, the one way anything changes a
transaction.

Pure: it takes a transaction row (None when there is none yet), one input and the time, and
returns the new row and the records to write (`Result`). The faust agent in `hub.runtime.agents`
does the I/O and gives the time (the engine reads no clock). Inputs are a partner's
`Message`, an outbound connector's `DeliveryResult`, the locate agent's `Located`, the
timer's `Tick`, and the staff's `RouteCommand`, `Redeliver` and `StaffCommand`. Each is read
into an input of the lifecycle table (`hub.domain.lifecycle`), whose row says what the hub
does and where the transaction goes; effects may emit follow-ups that go through the table in turn.

Outputs are deterministic (ids derive from the input's id), and an input already applied is
answered from memory: re-applying after a crash yields the same records, which downstream
consumers drop by id. A step is applied once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.core.directory import Directory
from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Event,
    Message,
    Role,
    parse_lender_request_id,
)
from connectors.core.records import (
    DeadLetter,
    DeliveryOutcome,
    DeliveryResult,
    Located,
    Redeliver,
    RouteAction,
    RouteCommand,
    StaffAction,
    StaffCommand,
    StateChange,
    Tick,
    Verdict,
    VerdictOutcome,
)
from connectors.core.topics import Topic
from hub.domain import outbox as deliveries
from hub.domain.deadlines import CHECKS
from hub.domain.effects import EFFECTS
from hub.domain.inputs import HUB, Input
from hub.domain.lifecycle import (
    ITEM_OUT,
    OUT_OF_TURN,
    REMEMBERS_PREVIOUS,
    ROUTABLE,
    WITH_LENDER,
    Hub,
    IllegalTransition,
    OutOfTurn,
    Previous,
    State,
    Transition,
    accepts,
    transition,
)
from hub.domain.load import LoadView
from hub.domain.run import Run
from hub.domain.transaction import (
    Output,
    Result,
    Transaction,
    as_output,
    aware,
    new_transaction,
    party,
)

Record = Message | DeliveryResult | Located | Tick | RouteCommand | Redeliver | StaffCommand


def apply(
    txn: Transaction | None,
    given: Record,
    at: datetime,
    *,
    directory: Directory,
    load: LoadView | None = None,
) -> Result:
    """Apply one input to its transaction at time `at`. `load` gives the lenders' open
    requests (for the rota). An input already applied gets the outputs it got then."""
    reader = READERS[type(given)]
    ref = reader.ref(given)
    if txn is not None and ref in txn.seen:
        return _replay(txn, ref, reader.answered)
    if isinstance(given, Message):
        # A message's id is a digest of its whole content: worked out once per step.
        return _message(txn, given, aware(at), directory, load, ref)
    return reader.read(txn, given, aware(at), directory, load)


def _replay(txn: Transaction, ref: str, answered: bool) -> Result:
    outputs = list(txn.replay.get(ref, []))
    if not answered:
        return Result(transaction=txn, outputs=outputs)
    verdict = Verdict(
        message_id=ref, transaction_id=txn.id, outcome=VerdictOutcome.DUPLICATE, state=txn.state
    )
    return Result(
        transaction=txn,
        outputs=[*outputs, as_output(Topic.REPLIES, txn.id, verdict)],
        verdict=verdict,
    )


# -- the table -----------------------------------------------------------------------------


def _through_table(run: Run, first: Input, rule: Transition) -> str:
    """Apply `first` by its row, then every follow-up its effects emit, in order. Returns
    what happened, for the step's line on ill.events: what the first row's effects said,
    then each follow-up by name."""
    said = [_step(run, first, rule)]
    while run.follow_ups:
        given = run.follow_ups.popleft()
        # A follow-up without a row is a bug in the table (tests/test_table.py proves none).
        detail = _step(run, given, transition(run.txn.state, given.name, given.answer, "hub"))
        said.append(f"{given.name.value}: {detail}" if detail else given.name.value)
    return "; ".join(part for part in said if part)


def _step(run: Run, given: Input, rule: Transition) -> str:
    """One row: its effects, then its target."""
    txn = run.txn
    before = txn.state
    notes = [EFFECTS[effect](run, given) for effect in rule.effects]
    if isinstance(rule.target, Previous):
        txn.state, txn.previous_state = txn.previous_state or State.RECEIVED, None
    else:
        if rule.target in REMEMBERS_PREVIOUS and rule.target is not before:
            txn.previous_state = before
        txn.state = rule.target
    detail = "; ".join(note for note in notes if note)
    if given.note:
        detail = f"{detail} ({given.note})" if detail else given.note
    return detail


def _row(txn: Transaction, given: Input) -> Transition | None:
    """The row for a hub input, or None when it comes out of turn and is ignored."""
    try:
        return transition(txn.state, given.name, given.answer, "hub")
    except IllegalTransition:
        assert isinstance(given.name, Hub) and OUT_OF_TURN.get(given.name) is OutOfTurn.IGNORE
        return None


def _applied(run: Run, answered: bool) -> Result:
    txn = run.txn
    outputs = run.finish()
    txn.remember(run.ref, outputs)
    if not answered:
        return Result(transaction=txn, outputs=outputs)
    verdict = Verdict(
        message_id=run.ref, transaction_id=txn.id, outcome=VerdictOutcome.APPLIED, state=txn.state
    )
    return Result(
        transaction=txn,
        outputs=[*outputs, as_output(Topic.REPLIES, txn.id, verdict)],
        verdict=verdict,
    )


def _unchanged(txn: Transaction | None) -> Result:
    return Result(transaction=txn, outputs=[])


# -- readers: one per kind of input --------------------------------------------------------


def _message(
    txn: Transaction | None,
    message: Message,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
    ref: str | None = None,
) -> Result:
    """A partner's message: checked against the side that may say it and the table. `ref`:
    its `message_id`, when the caller has it."""
    ref = message.message_id if ref is None else ref
    if txn is None:
        if message.event is not Event.REQUEST:
            error = IllegalTransition(
                message.event,
                message.sender or "unknown partner",
                State.NEW,
                f"no transaction {message.transaction_id or '(unknown)'}",
            )
            return _refuse(None, message, error, at, ref)
        txn = new_transaction(message)
    before = txn.state
    try:
        role = _sender_side(txn, message) if before is not State.NEW else Role.BORROWER
        silent = directory.unreported(_other_party(txn, role))
        rule = transition(before, message.event, message.answer, role.value, silent)
    except IllegalTransition as error:
        return _refuse(txn if before is not State.NEW else None, message, error, at, ref)
    run = Run(txn.working_copy(), directory, ref, at, load)
    _learn_party(run.txn, message, role)
    reason = message.reason.name if message.reason else "no reason given"
    outcome = f"{message.event.value}: {reason}"
    given = Input(
        message.event,
        sender=message.sender,
        answer=message.answer,
        message=message,
        role=role,
        outcome=outcome,
        why=outcome,
        reason=message.reason,
        withdraw=WITHDRAWS.get(message.event, ""),
    )
    detail = _through_table(run, given, rule)
    _learn(run, message)
    run.record("transition", message.event.value, message.sender, before, detail)
    return _applied(run, answered=True)


# Why a lender's request is taken back, for the partner events whose rows withdraw it.
WITHDRAWS: dict[Event, str] = {Event.RETRY: "the borrower retried the request with changes"}


def _sender_side(txn: Transaction, message: Message) -> Role:
    """Check that the message comes from the party allowed to say it; return that party."""
    if message.event in EITHER_SIDE:
        role = Role.BORROWER if message.sender == txn.borrower else Role.LENDER
    else:
        role = SENDER[message.event]
    if role is Role.BORROWER:
        if message.sender != txn.borrower:
            raise IllegalTransition(
                message.event,
                message.sender or "unknown partner",
                txn.state,
                "only this request's borrower may send it",
            )
        return role
    attempt = txn.attempt
    if attempt is None or message.sender != attempt.lender:
        # Say only what the sender may know: not who the lender is.
        raise IllegalTransition(
            message.event,
            message.sender or "unknown partner",
            txn.state,
            "the sender is not this request's current lender",
        )
    parsed = parse_lender_request_id(message.request_id) if message.request_id else None
    if parsed and parsed[1] != attempt.number:
        raise IllegalTransition(
            message.event,
            "lender",
            txn.state,
            f"request {message.request_id} belongs to an earlier attempt",
        )
    return role


def _other_party(txn: Transaction, role: Role) -> str | None:
    """The party that did not send: its channel decides which silent-partner rows apply."""
    if role is Role.LENDER:
        return txn.borrower
    return txn.attempt.lender if txn.attempt is not None else None


def _learn_party(txn: Transaction, message: Message, role: Role) -> None:
    """Keep what the sender gave to recognise its own messages: the first it gave for this
    request (for a lender: for this attempt), plus any keys a later message adds."""
    given = message.correlation
    if given is None:
        return
    attempt = txn.attempt
    number = attempt.number if role is Role.LENDER and attempt is not None else 0
    key = party(message.sender, number)
    known = txn.parties.get(key)
    if known is None:
        txn.parties[key] = given
        return
    old, new = known.model_dump(), given.model_dump()
    if set(new) - set(old):
        txn.parties[key] = type(given).model_validate({**new, **old})


def _learn(run: Run, message: Message) -> None:
    """Keep what later steps need: the item id (renewals are addressed by it) and due date."""
    txn = run.txn
    if message.item_id and message.event in (Event.LOANED, Event.COPY_COMPLETED):
        txn.item_id = message.item_id
        assert txn.attempt is not None
        run.index_item(message.item_id, txn.attempt.lender, alive=True)
    if message.due_date and message.event in (Event.LOANED, Event.RENEW_ANSWER):
        txn.due_date = aware(message.due_date)


def _delivery(
    txn: Transaction | None,
    result: DeliveryResult,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """An outbound connector's report. Accepted: the next step to that partner may go.
    Failed: retried on the partner's schedule, parked after it; a request no lender can be
    reached for moves on to the next lender."""
    if txn is None:
        return _unchanged(None)
    if result.outcome is DeliveryOutcome.FAILED:
        name = Hub.DELIVERY_FAILED
    elif (
        result.outcome is DeliveryOutcome.NOT_APPLICABLE
        and result.event in (Event.CANCEL, Event.RENEW)
        and result.attempt != 0
    ):
        name = Hub.NOT_CARRIED
    else:
        name = Hub.DELIVERED
    given = Input(
        name,
        sender=result.recipient,
        note=result.detail,
        result=result,
    )
    rule = _row(txn, given)
    if rule is None:
        return _unchanged(txn)
    run = Run(txn.working_copy(), directory, result.result_id, at, load)
    detail = _through_table(run, given, rule)
    label = f"{result.event.value}:{result.outcome.value}"
    run.record("delivery", label, result.recipient, txn.state, detail)
    return _applied(run, answered=False)


def _located(
    txn: Transaction | None,
    located: Located,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """The catalogue search answered. A search no longer waited for changes nothing."""
    if txn is None or located.locate_id != txn.locate_id:
        return _unchanged(txn)
    holdings = ", ".join(f"{r.lender}: {r.status.value}" for r in located.results)
    given = Input(Hub.LOCATED, holdings=tuple(located.results), note=holdings)
    rule = _row(txn, given)
    if rule is None:
        return _unchanged(txn)
    run = Run(txn.working_copy(), directory, located.ref, at, load)
    detail = _through_table(run, given, rule)
    run.record("transition", Hub.LOCATED.value, HUB, txn.state, detail)
    return _applied(run, answered=False)


def _tick(
    txn: Transaction | None,
    tick: Tick,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """The clock: each deadline due at `at`, in the clock's order. Nothing due: no change."""
    if txn is None:
        return _unchanged(None)
    run = Run(txn.working_copy(), directory, tick.ref, at, load)
    happened = []
    for check in CHECKS:
        given = check(run.txn, at, directory)
        if given is not None:
            rule = transition(run.txn.state, given.name, None, "hub")
            detail = _through_table(run, given, rule)
            happened.append(f"{given.name.value}: {detail}" if detail else given.name.value)
    if not happened:
        return _unchanged(txn)
    run.record("timer", "Tick", HUB, txn.state, "; ".join(happened))
    return _applied(run, answered=False)


ROUTES: dict[RouteAction, Hub] = {
    RouteAction.LENDER: Hub.ROUTE_LENDER,
    RouteAction.SKIP: Hub.ROUTE_SKIP,
    RouteAction.RESTART: Hub.ROUTE_RESTART,
    RouteAction.NEXT: Hub.ROUTE_NEXT,
}


def _route(
    txn: Transaction | None,
    command: RouteCommand,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """Staff routing: ask a named lender now, skip one, or restart the rota."""
    key, by, lender = command.transaction_id, command.by, command.lender
    label = f"route {command.action.value}" + (f" {lender}" if lender else "")

    def refuse(error: str) -> Result:
        return _refusal(txn, command.ref, key, by, label, error, at, staff=True)

    if txn is None:
        return refuse(f"no transaction {key}")
    name = ROUTES[command.action]
    if not accepts(txn.state, name):
        if command.action is RouteAction.NEXT and txn.state in ROUTABLE:
            return refuse(f"not possible in state {txn.state.value}: no lender holds it yet")
        return refuse(
            f"not possible in state {txn.state.value}: routing can change only while the "
            f"request looks for a lender ({', '.join(sorted(s.value for s in ROUTABLE))})"
        )
    if command.action in (RouteAction.LENDER, RouteAction.SKIP):
        partner = directory.partner(lender or "")
        if partner is None:
            return refuse(f"unknown partner {lender}")
        if command.action is RouteAction.LENDER and (
            not partner.lends or partner.symbol == txn.borrower
        ):
            return refuse(f"{lender} cannot lend this request")
    texts: dict[RouteAction, tuple[str, str | None]] = {
        RouteAction.LENDER: (f"staff sent the request to {lender}", f"{by} chose {lender}"),
        RouteAction.SKIP: (f"skipped by {by}", f"{lender} skipped by {by}"),
        RouteAction.RESTART: (f"rota restarted by {by}", None),
        RouteAction.NEXT: (f"moved on by {by}", f"{by} asked the next lender"),
    }
    withdraw, why = texts[command.action]
    given = Input(name, sender=by, lender=lender, withdraw=withdraw, why=why)
    run = Run(txn.working_copy(), directory, command.ref, at, load)
    detail = _through_table(run, given, transition(txn.state, name, None, "staff"))
    run.record("transition", label, by, txn.state, detail)
    return _applied(run, answered=True)


def _redeliver(
    txn: Transaction | None,
    command: Redeliver,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """Send a transaction's failed or parked deliveries again now (staff, or a partner that
    answers again)."""
    key = command.transaction_id
    label = "redeliver" + (f" to {command.partner}" if command.partner else "")
    if txn is None:
        error = f"no transaction {key}"
        return _refusal(None, command.ref, key, command.by, label, error, at, staff=True)
    if not deliveries.waiting(txn, command.partner):
        error = "nothing waits for delivery"
        return _refusal(txn, command.ref, key, command.by, label, error, at, staff=True)
    given = Input(Hub.REDELIVER, sender=command.by, partner=command.partner)
    run = Run(txn.working_copy(), directory, command.ref, at, load)
    detail = _through_table(run, given, transition(txn.state, Hub.REDELIVER, None, "staff"))
    run.record("delivery", label, command.by, txn.state, detail)
    return _applied(run, answered=True)


STAFF: dict[StaffAction, Hub] = {
    StaffAction.CANCEL: Hub.STAFF_CANCEL,
    StaffAction.CLOSE: Hub.STAFF_CLOSE,
    StaffAction.NOTE: Hub.STAFF_NOTE,
    StaffAction.MESSAGE: Hub.STAFF_MESSAGE,
}


def _states(states: frozenset[State]) -> str:
    return ", ".join(sorted(s.value for s in states))


# Why a staff action is refused in a state that has no row for it: what to do instead.
STAFF_HINTS: dict[StaffAction, str] = {
    StaffAction.CANCEL: (
        "a request is cancelled while it looks for a lender "
        f"({_states(frozenset({State.LOCATING}) | WITH_LENDER)}); once the item is out, "
        "close the loan instead"
    ),
    StaffAction.CLOSE: (
        f"a loan is closed by staff while its item is out ({_states(ITEM_OUT)}); "
        "before it ships, cancel the request instead"
    ),
    StaffAction.MESSAGE: "the request is closed: there is nobody to tell",
}


def _staff(
    txn: Transaction | None,
    command: StaffCommand,
    at: datetime,
    directory: Directory,
    load: LoadView | None,
) -> Result:
    """Staff cancel a request, close a loan, note something on its timeline or send a party
    a message. The text is recorded on ill.events with the staff member's name."""
    key, by, action = command.transaction_id, command.by, command.action
    text = command.text.strip()
    label = f"staff {action.value}" + (f" to the {command.to}" if command.to else "")

    def refuse(error: str) -> Result:
        return _refusal(txn, command.ref, key, by, label, error, at, staff=True)

    if txn is None:
        return refuse(f"no transaction {key}")
    if not text and action is not StaffAction.CANCEL:
        return refuse(f"a {action.value} needs its text (the reason, the note, the message)")
    name = STAFF[action]
    if not accepts(txn.state, name):
        return refuse(f"not possible in state {txn.state.value}: {STAFF_HINTS[action]}")
    role: Role | None = None
    if action is StaffAction.MESSAGE:
        if command.to not in ("borrower", "lender"):
            return refuse("a message goes to the borrower or the lender")
        role = Role(command.to)
        attempt = txn.attempt
        if role is Role.LENDER and (attempt is None or attempt.outcome is not None):
            return refuse("no lender holds this request: there is no lender to tell")
    said = f"{by}: {text}" if text else by
    why = {
        StaffAction.CANCEL: f"cancelled by staff ({said})",
        StaffAction.CLOSE: f"closed by staff ({said})",
        StaffAction.NOTE: f"note by {said}",
        StaffAction.MESSAGE: f"rshub staff ({by}): {text}",
    }[action]
    given = Input(name, sender=by, role=role, why=why, withdraw=why)
    run = Run(txn.working_copy(), directory, command.ref, at, load)
    detail = _through_table(run, given, transition(txn.state, name, None, "staff"))
    if action is not StaffAction.CANCEL:
        detail = f"{detail}: {text}" if detail else why
    # A note or a message changes nothing: a staff line, not a step of the loan's history
    # (nor progress: a note does not make a stuck request look moving).
    kind = "transition" if action in (StaffAction.CANCEL, StaffAction.CLOSE) else "staff"
    run.record(kind, label, by, txn.state, detail)
    return _applied(run, answered=True)


@dataclass(frozen=True)
class Reader:
    """How one kind of record enters the engine: its id, its reader, and whether someone
    waits for a verdict on it (the gateway's partner, the staff's command)."""

    ref: Callable[[Any], str]
    read: Callable[..., Result]
    answered: bool


READERS: dict[type, Reader] = {
    Message: Reader(lambda m: m.message_id, _message, answered=True),
    DeliveryResult: Reader(lambda r: r.result_id, _delivery, answered=False),
    Located: Reader(lambda c: c.ref, _located, answered=False),
    Tick: Reader(lambda c: c.ref, _tick, answered=False),
    RouteCommand: Reader(lambda c: c.ref, _route, answered=True),
    Redeliver: Reader(lambda c: c.ref, _redeliver, answered=True),
    StaffCommand: Reader(lambda c: c.ref, _staff, answered=True),
}


# -- refusals ------------------------------------------------------------------------------


def _refuse(
    txn: Transaction | None,
    message: Message,
    error: IllegalTransition,
    at: datetime,
    ref: str | None = None,
) -> Result:
    key = message.transaction_id or message.request_id or "unaddressed"
    return _refusal(
        txn,
        message.message_id if ref is None else ref,
        key,
        message.sender,
        message.event.value,
        str(error),
        at,
        protocol=message.source_protocol,
        audit_ref=message.audit_ref,
    )


def _refusal(
    txn: Transaction | None,
    ref: str,
    key: str,
    sender: str | None,
    event: str,
    error: str,
    at: datetime,
    protocol: str | None = "rshub",
    audit_ref: str | None = None,
    staff: bool = False,
) -> Result:
    """Refuse an input: the row stays as it was; a dead letter, an event and the verdict.
    A staff command gets no dead letter: the refusal is answered to whoever typed it at
    once (and kept on ill.events); a dead letter would mark a healthy request as needing
    attention for a typo."""
    state = txn.state if txn else State.NEW
    verdict = Verdict(
        message_id=ref, transaction_id=key, outcome=VerdictOutcome.REFUSED, state=state, error=error
    )
    letter = DeadLetter(
        stage="apply",
        error=error,
        partner=sender,
        protocol=protocol,
        transaction_id=key,
        audit_ref=audit_ref,
        detail={"event": event, "state": state.value},
        at=at,
    )
    change = StateChange(
        event_id=f"{ref}:refused",
        transaction_id=key,
        kind="refused",
        event=event,
        sender=sender,
        from_state=state,
        to_state=state,
        detail=error,
        at=at,
    )
    outputs: list[Output] = [
        *([] if staff else [as_output(Topic.DEADLETTER, key, letter)]),
        as_output(Topic.EVENTS, key, change),
        as_output(Topic.REPLIES, key, verdict),
    ]
    return Result(transaction=txn, outputs=outputs, verdict=verdict)
