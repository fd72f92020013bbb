"""The transaction engine: applies partner evidence and delivery results to a transaction.

Pure: it takes a transaction row and a message and returns the new row and the records to
write (`Output`). The faust agent in `hub.agents` does the I/O. Outputs are deterministic
(ids derive from the message id), so re-applying after a crash yields the same records, which
downstream consumers drop by id: a step is applied once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from hub.directory import Directory
from hub.lifecycle import (
    TERMINAL,
    Effect,
    IllegalTransition,
    Previous,
    State,
    transition,
)
from hub.model import (
    SENDER,
    Event,
    Message,
    Reason,
    Role,
    lender_request_id,
    now,
    parse_lender_request_id,
)
from hub.records import (
    DeadLetter,
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    RoutingDecision,
    StateChange,
    Verdict,
    VerdictOutcome,
)

SEEN_LIMIT = 200
REPLAY_LIMIT = 8
NO_LENDER = Reason.from_code(18, "no lender in the rota could supply")


class Output(BaseModel):
    topic: str
    key: str
    value: dict[str, Any] | None


class Attempt(BaseModel):
    number: int
    lender: str
    request_id: str
    outcome: str | None = None
    reason: Reason | None = None


class Step(BaseModel):
    at: datetime
    event: str
    sender: str | None
    from_state: State
    to_state: State
    ref: str


class Transaction(BaseModel):
    id: str
    state: State = State.NEW
    previous_state: State | None = None
    borrower: str
    borrower_request_id: str
    request: Message | None = None
    rota: list[str] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    item_id: str | None = None
    due_date: datetime | None = None
    needs_attention: str | None = None
    history: list[Step] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    replay: dict[str, list[Output]] = Field(default_factory=dict)

    @property
    def attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def remember(self, ref: str, outputs: list[Output]) -> None:
        self.seen = [*self.seen, ref][-SEEN_LIMIT:]
        self.replay[ref] = outputs
        while len(self.replay) > REPLAY_LIMIT:
            self.replay.pop(next(iter(self.replay)))


class Result(BaseModel):
    transaction: Transaction | None
    outputs: list[Output]
    verdict: Verdict | None = None


def as_output(topic: str, key: str, record: BaseModel | None) -> Output:
    return Output(
        topic=topic, key=key, value=None if record is None else record.model_dump(mode="json")
    )


class _Run:
    """Collects the outputs of applying one message to one transaction."""

    def __init__(self, txn: Transaction, directory: Directory, ref: str) -> None:
        self.txn, self.directory, self.ref = txn, directory, ref
        self.outputs: list[Output] = []

    def deliver(self, recipient: str, message: Message, attempt: int) -> None:
        partner = self.directory.partner(recipient)
        protocol = partner.protocol if partner else "unknown"
        update: dict[str, object] = {"transaction_id": self.txn.id}
        if recipient == self.txn.borrower and self.txn.request is not None:
            # What the borrower's protocol said with its request (its own transaction-id in
            # ISO 10161) goes back with every answer, so the borrower finds its request.
            update["extensions"] = {**message.extensions, "origin": self.txn.request.extensions}
        command = Delivery(
            command_id=f"{self.ref}:{len(self.outputs)}",
            transaction_id=self.txn.id,
            recipient=recipient,
            protocol=protocol,
            attempt=attempt,
            message=message.model_copy(update=update),
        )
        self.outputs.append(as_output(f"ill.outbound.{protocol}", self.txn.id, command))

    def record(
        self, kind: str, event: str, sender: str | None, before: State, detail: str = ""
    ) -> None:
        change = StateChange(
            event_id=f"{self.ref}:{len(self.outputs)}",
            transaction_id=self.txn.id,
            kind=kind,
            event=event,
            sender=sender,
            from_state=before,
            to_state=self.txn.state,
            detail=detail,
        )
        self.outputs.append(as_output("ill.events", self.txn.id, change))
        if kind == "transition":
            self.txn.history.append(
                Step(
                    at=now(),
                    event=event,
                    sender=sender,
                    from_state=before,
                    to_state=self.txn.state,
                    ref=self.ref,
                )
            )

    def route(self, decision: RoutingDecision) -> None:
        self.outputs.append(as_output("ill.routing", self.txn.id, decision))

    def index_item(self, item_id: str, lender: str, alive: bool) -> None:
        for partner in (lender, self.txn.borrower):
            value = {"transaction_id": self.txn.id} if alive else None
            self.outputs.append(Output(topic="ill.items", key=f"{partner}|{item_id}", value=value))

    def finish(self) -> list[Output]:
        snapshot = self.txn.model_dump(mode="json", exclude={"replay", "seen"})
        self.outputs.append(Output(topic="ill.transactions", key=self.txn.id, value=snapshot))
        return self.outputs

    # -- effects ---------------------------------------------------------------------------

    def ask_next_lender(self, why_previous: str | None) -> None:
        txn = self.txn
        assert txn.request is not None
        tried = {a.lender for a in txn.attempts}
        chosen = next((lender for lender in txn.rota if lender not in tried), None)
        number = len(txn.attempts) + 1
        if chosen is None:
            reason = "rota exhausted" if txn.rota else "no lender in the rota"
        elif number == 1:
            reason = "first lender of the rota"
        else:
            reason = f"previous lender: {why_previous}"
        skipped = [
            {"lender": lender, "reason": "already tried"} for lender in txn.rota if lender in tried
        ]
        self.route(
            RoutingDecision(
                transaction_id=txn.id,
                attempt=number,
                candidates=txn.rota,
                chosen=chosen,
                skipped=skipped,
                reason=reason,
            )
        )
        if chosen is None:
            txn.state = State.UNFILLED
            unfilled = Message(
                event=Event.UNFILLED,
                request_id=txn.borrower_request_id,
                sender="rshub",
                reason=self._last_reason(),
                note=f"rshub: {reason}",
                source_protocol="rshub",
            )
            self.deliver(txn.borrower, unfilled, attempt=0)
            return
        attempt = Attempt(
            number=number, lender=chosen, request_id=lender_request_id(txn.id, number)
        )
        txn.attempts.append(attempt)
        self.deliver(
            chosen, txn.request.model_copy(update={"request_id": attempt.request_id}), number
        )
        if number > 1:
            # The borrower hears that the request moved on, not that it failed (ISO 18626:
            # ExpectToSupply as a Notification); protocols without such a message skip it.
            moved = Message(
                event=Event.LENDER_NOTE,
                request_id=txn.borrower_request_id,
                sender="rshub",
                source_protocol="rshub",
                note=f"rshub: {why_previous}; asking the next lender",
            )
            self.deliver(txn.borrower, moved, attempt=0)
        txn.state = State.REQUESTED

    def _last_reason(self) -> Reason:
        return next((a.reason for a in reversed(self.txn.attempts) if a.reason), NO_LENDER)

    def forward(self, message: Message, role: Role) -> None:
        """Pass a step to the other party, under the request id that party knows, with what
        the transaction knows and the sender's protocol did not say (item id, patron)."""
        txn = self.txn
        if not message.relay:
            return  # a question for the hub itself (ISO 10161 Status-Query)
        known = {
            "item_id": message.item_id or txn.item_id,
            "patron_id": message.patron_id or (txn.request.patron_id if txn.request else None),
        }
        if role is Role.BORROWER:
            attempt = txn.attempt
            assert attempt is not None
            update = {**known, "request_id": attempt.request_id}
            self.deliver(attempt.lender, message.model_copy(update=update), attempt.number)
        else:
            update = {**known, "request_id": txn.borrower_request_id}
            self.deliver(txn.borrower, message.model_copy(update=update), 0)


def _sender_side(txn: Transaction, message: Message) -> Role:
    """Check that the message comes from the party allowed to say it; return that party."""
    role = SENDER[message.event]
    if role is Role.BORROWER:
        if message.sender != txn.borrower:
            raise IllegalTransition(
                message.event,
                message.sender or "unknown partner",
                txn.state,
                f"only the borrower {txn.borrower} may send it",
            )
        return role
    attempt = txn.attempt
    if attempt is None or message.sender != attempt.lender:
        current = attempt.lender if attempt else "none"
        raise IllegalTransition(
            message.event,
            message.sender or "unknown partner",
            txn.state,
            f"the current lender is {current}",
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


def new_transaction(message: Message) -> Transaction:
    return Transaction(
        id=message.transaction_id, borrower=message.sender, borrower_request_id=message.request_id
    )


def apply(txn: Transaction | None, message: Message, directory: Directory) -> Result:
    """Apply a partner's message to its transaction (None when the row does not exist yet)."""
    ref = message.message_id
    if txn is not None and ref in txn.seen:
        outputs = [*txn.replay.get(ref, [])]
        verdict = Verdict(
            message_id=ref, transaction_id=txn.id, outcome=VerdictOutcome.DUPLICATE, state=txn.state
        )
        return Result(
            transaction=txn,
            outputs=[*outputs, as_output("ill.replies", txn.id, verdict)],
            verdict=verdict,
        )
    if txn is None:
        if message.event is not Event.REQUEST:
            return _refuse(
                None,
                message,
                IllegalTransition(
                    message.event,
                    message.sender or "unknown partner",
                    State.NEW,
                    f"no transaction {message.transaction_id or '(unknown)'}",
                ),
            )
        txn = new_transaction(message)
    txn = txn.model_copy(deep=True)
    before = txn.state
    try:
        role = _sender_side(txn, message) if before is not State.NEW else Role.BORROWER
        rule = transition(before, message.event, message.answer, role.value)
    except IllegalTransition as error:
        return _refuse(txn if before is not State.NEW else None, message, error)

    if message.event in (Event.LOANED, Event.COPY_COMPLETED) and not message.item_id:
        # Some protocols (ISO 10161 Shipped) name no item; others (NCIP) need one for every
        # later step. The lender's request id is unique and finds the transaction.
        assert txn.attempt is not None
        message = message.model_copy(update={"item_id": txn.attempt.request_id})
    run = _Run(txn, directory, ref)
    if rule.effect is Effect.START:
        txn.request = message
        txn.rota = directory.rota_for(txn.borrower)
        run.ask_next_lender(None)
    elif rule.effect is Effect.NEXT_LENDER:
        assert txn.attempt is not None
        reason = message.reason.name if message.reason else "no reason given"
        txn.attempt.outcome = f"{message.event.value}: {reason}"
        txn.attempt.reason = message.reason
        run.ask_next_lender(txn.attempt.outcome)
    else:
        run.forward(message, role)
        if isinstance(rule.target, Previous):
            txn.state, txn.previous_state = txn.previous_state or State.RECEIVED, None
        else:
            if (
                rule.target in (State.CANCEL_PENDING, State.RENEW_PENDING)
                and rule.target is not before
            ):
                txn.previous_state = before
            txn.state = rule.target
    _learn(run, message)
    run.record("transition", message.event.value, message.sender, before)
    outputs = run.finish()
    txn.remember(ref, outputs)
    verdict = Verdict(
        message_id=ref, transaction_id=txn.id, outcome=VerdictOutcome.APPLIED, state=txn.state
    )
    return Result(
        transaction=txn,
        outputs=[*outputs, as_output("ill.replies", txn.id, verdict)],
        verdict=verdict,
    )


def _learn(run: _Run, message: Message) -> None:
    """Keep what later steps need: the item id (renewals are addressed by it) and due date."""
    txn = run.txn
    if message.item_id and message.event in (Event.LOANED, Event.COPY_COMPLETED):
        txn.item_id = message.item_id
        assert txn.attempt is not None
        run.index_item(message.item_id, txn.attempt.lender, alive=True)
    if message.due_date and message.event in (Event.LOANED, Event.RENEW_ANSWER):
        txn.due_date = message.due_date
    if txn.state in TERMINAL and txn.item_id and txn.attempt is not None:
        run.index_item(txn.item_id, txn.attempt.lender, alive=False)


def _refuse(txn: Transaction | None, message: Message, error: IllegalTransition) -> Result:
    state = txn.state if txn else State.NEW
    key = message.transaction_id or message.request_id or "unaddressed"
    verdict = Verdict(
        message_id=message.message_id,
        transaction_id=key,
        outcome=VerdictOutcome.REFUSED,
        state=state,
        error=str(error),
    )
    letter = DeadLetter(
        stage="apply",
        error=str(error),
        partner=message.sender,
        protocol=message.source_protocol,
        transaction_id=key,
        audit_ref=message.audit_ref,
        detail={"event": message.event.value, "state": state.value},
    )
    change = StateChange(
        event_id=f"{message.message_id}:refused",
        transaction_id=key,
        kind="refused",
        event=message.event.value,
        sender=message.sender,
        from_state=state,
        to_state=state,
        detail=str(error),
    )
    outputs = [
        as_output("ill.deadletter", key, letter),
        as_output("ill.events", key, change),
        as_output("ill.replies", key, verdict),
    ]
    return Result(transaction=txn, outputs=outputs, verdict=verdict)


def apply_delivery(txn: Transaction | None, result: DeliveryResult, directory: Directory) -> Result:
    """Apply an outbound connector's report. A request no lender can be reached for moves on."""
    ref = result.result_id
    if txn is None or ref in txn.seen:
        return Result(transaction=txn, outputs=[*(txn.replay.get(ref, []) if txn else [])])
    txn = txn.model_copy(deep=True)
    run = _Run(txn, directory, ref)
    before = txn.state
    attempt = txn.attempt
    lender_unreachable = (
        result.outcome is DeliveryOutcome.FAILED
        and result.event is Event.REQUEST
        and attempt is not None
        and result.attempt == attempt.number
        and txn.state is State.REQUESTED
    )
    if lender_unreachable:
        assert attempt is not None
        attempt.outcome = f"Unreachable: {result.detail}"
        run.ask_next_lender(attempt.outcome)
    elif result.outcome is DeliveryOutcome.FAILED:
        txn.needs_attention = (
            f"delivery of {result.event.value} to {result.recipient} failed: {result.detail}"
        )
    run.record(
        "delivery",
        f"{result.event.value}:{result.outcome.value}",
        result.recipient,
        before,
        detail=result.detail,
    )
    outputs = run.finish()
    txn.remember(ref, outputs)
    return Result(transaction=txn, outputs=outputs)
