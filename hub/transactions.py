"""The transaction engine: applies partner evidence and delivery results to a transaction.

Pure: it takes a transaction row and a message and returns the new row and the records to
write (`Output`). The faust agent in `hub.agents` does the I/O. Outputs are deterministic
(ids derive from the message id), so re-applying after a crash yields the same records, which
downstream consumers drop by id: a step is applied once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from connectors.core.directory import Directory
from connectors.core.holdings import HoldingsResult, search_terms
from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Event,
    Message,
    Reason,
    Role,
    lender_request_id,
    now,
    parse_lender_request_id,
)
from connectors.core.records import (
    DeadLetter,
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    Locate,
    Located,
    Redeliver,
    RouteAction,
    RouteCommand,
    RoutingDecision,
    StateChange,
    Tick,
    Verdict,
    VerdictOutcome,
)
from hub.lifecycle import (
    ROUTABLE,
    TERMINAL,
    Effect,
    IllegalTransition,
    Previous,
    State,
    transition,
)
from hub.load import LoadView, NoLoad, load_key
from hub.rota import Candidate, at_limit, rank

SEEN_LIMIT = 200
REPLAY_LIMIT = 8
NO_LENDER = Reason.from_code(18, "no lender in the rota could supply")
NO_ANSWER = Reason.from_code(27, "no answer in time")
# Deadlines by state: the need-before date while no lender has shipped, the lender's answer
# time-out while it has not answered, the due date while the item is out.
NEED_BEFORE_STATES = ROUTABLE
DUE_STATES = frozenset({State.LOANED, State.RECEIVED, State.RECALLED})


def aware(moment: datetime | None) -> datetime | None:
    """Partners send bare dates too; deadlines compare in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


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
    automatic: bool = Field(False, description="rejected by rshub on the lender's behalf")


class Step(BaseModel):
    at: datetime
    event: str
    sender: str | None
    from_state: State
    to_state: State
    ref: str


class Sending(StrEnum):
    IN_FLIGHT = "in_flight"  # handed to the outbound connector, no result yet
    QUEUED = "queued"  # waits behind an earlier step to the same recipient
    RETRY = "retry"  # failed; tried again at next_at
    PARKED = "parked"  # failed every scheduled try; tried again rarely, or on demand


class Pending(BaseModel):
    """A delivery its recipient has not accepted yet. Kept until it has: a crash, a restart
    or a partner outage between the decision and the delivery loses nothing."""

    command: Delivery
    status: Sending = Sending.IN_FLIGHT
    failures: int = Field(0, description="failed tries so far")
    first_failed: datetime | None = None
    next_at: datetime | None = Field(None, description="next try (retry and parked)")
    error: str = ""

    @property
    def recipient(self) -> str:
        return self.command.recipient


class Transaction(BaseModel):
    id: str
    state: State = State.NEW
    previous_state: State | None = None
    borrower: str
    borrower_request_id: str
    request: Message | None = None
    profile: str | None = None
    rota: list[str] = Field(default_factory=list)
    ranking: list[Candidate] = Field(default_factory=list)
    locate_id: str | None = None
    skipped_by_staff: list[str] = Field(default_factory=list)
    round_start: int = Field(0, description="attempts before a staff restart do not count")
    attempts: list[Attempt] = Field(default_factory=list)
    item_id: str | None = None
    due_date: datetime | None = None
    need_before: datetime | None = None
    lender_deadline: datetime | None = None
    next_deadline: datetime | None = None
    needs_attention: str | None = None
    pending: list[Pending] = Field(
        default_factory=list, description="deliveries not yet accepted, oldest first"
    )
    history: list[Step] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    replay: dict[str, list[Output]] = Field(default_factory=dict)

    @property
    def attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def open_with(self) -> str | None:
        """The lender holding this request open (counted in its load), if any."""
        attempt = self.attempt
        if attempt is None or attempt.outcome is not None or self.state in TERMINAL:
            return None
        return attempt.lender if self.state is not State.LOCATING else None

    def deadline(self) -> datetime | None:
        due = [
            self.need_before if self.state in NEED_BEFORE_STATES else None,
            self.lender_deadline if self.state is State.REQUESTED else None,
            self.due_date if self.state in DUE_STATES else None,
            *(p.next_at for p in self.pending),
        ]
        return min((aware(d) for d in due if d is not None), default=None)

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

    def __init__(
        self,
        txn: Transaction,
        directory: Directory,
        ref: str,
        load: LoadView | None = None,
        at: datetime | None = None,
    ) -> None:
        self.txn, self.directory, self.ref = txn, directory, ref
        self.load = load or NoLoad()
        self.at = at or now()
        self.outputs: list[Output] = []
        self.open_before = txn.open_with

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
        self.txn.pending.append(Pending(command=command, status=Sending.QUEUED))
        self.release(recipient)

    def release(self, recipient: str, force: bool = False) -> int:
        """Send what may go to `recipient` now, in order. Steps in flight do not hold back the
        next (the outbound connector keeps one transaction's steps in order and fails a step
        whose predecessor failed); a failed step does, until its retry is due, staff ask, or
        the partner accepted something again (`force`: send the first failed one, and wait
        for its result before sending what follows)."""
        sent = 0
        for pending in [p for p in self.txn.pending if p.recipient == recipient]:
            if pending.status is Sending.IN_FLIGHT:
                continue
            retry = pending.status is not Sending.QUEUED
            if retry and not force:
                break
            pending.status, pending.next_at = Sending.IN_FLIGHT, None
            command = pending.command.model_copy(update={"try_number": pending.failures + 1})
            self.outputs.append(as_output(f"ill.outbound.{command.protocol}", self.txn.id, command))
            sent += 1
            if retry:
                break  # the partner was failing: what follows waits for this one's result
        return sent

    # -- deliveries: results, retries, parking ---------------------------------------------

    def delivery_failed(self, result: DeliveryResult) -> str:
        """Schedule the next try of a failed delivery, park it after the last, or (a request
        its lender cannot be reached for in time) move on to the next lender."""
        txn = self.txn
        pending = _pending(txn, result.command_id)
        if pending is not None and pending.status is not Sending.IN_FLIGHT:
            return "stale result"
        failures = (pending.failures if pending else 0) + 1
        first_failed = (pending.first_failed if pending else None) or self.at
        partner = self.directory.partner(result.recipient)
        schedule = partner.retry_minutes if partner else []
        attempt = txn.attempt
        if (
            result.event is Event.REQUEST
            and attempt is not None
            and result.attempt == attempt.number
            and txn.state is State.REQUESTED
        ):
            limit = timedelta(minutes=partner.unreachable_after_minutes if partner else 0)
            if not result.retryable or self.at - first_failed >= limit or failures > len(schedule):
                txn.pending = [p for p in txn.pending if p.recipient != result.recipient]
                attempt.outcome = f"Unreachable: {result.detail}"
                self.ask_next_lender(attempt.outcome)
                return "lender unreachable, next lender asked"
        if pending is None:
            # Not a delivery this engine sent (or from before pending deliveries were kept).
            txn.needs_attention = (
                f"delivery of {result.event.value} to {result.recipient} failed: {result.detail}"
            )
            return "failed"
        pending.failures, pending.first_failed, pending.error = (
            failures,
            first_failed,
            result.detail,
        )
        if result.retryable and failures <= len(schedule):
            pending.status = Sending.RETRY
            pending.next_at = self.at + timedelta(minutes=schedule[failures - 1])
            return f"try {failures + 1} at {pending.next_at.isoformat()}"
        every = partner.parked_retry_minutes if partner else 60.0
        pending.status = Sending.PARKED
        pending.next_at = self.at + timedelta(minutes=every)
        txn.needs_attention = (
            f"delivery of {result.event.value} to {result.recipient} parked after "
            f"{failures} failed tries: {result.detail}"
        )
        return f"parked after {failures} tries; tried again every {every:g} minutes"

    def delivered(self, command_id: str) -> None:
        """The recipient accepted a delivery: the next step queued for it goes now."""
        txn = self.txn
        done = _pending(txn, command_id)
        if done is None:
            return
        txn.pending.remove(done)
        parked = any(p.status is Sending.PARKED for p in txn.pending)
        if not parked and (txn.needs_attention or "").startswith("delivery of"):
            txn.needs_attention = None
        self.release(done.recipient, force=True)

    def retry_due(self) -> int:
        """Send again every failed step whose time has come (one per recipient, in order).
        A request its lender has not taken within unreachable_after goes to the next lender
        instead of being tried again."""
        txn, attempt = self.txn, self.txn.attempt
        moved_on = 0
        if attempt is not None and txn.state is State.REQUESTED:
            request = next(
                (
                    p
                    for p in txn.pending
                    if p.recipient == attempt.lender
                    and p.command.message.event is Event.REQUEST
                    and p.first_failed is not None
                ),
                None,
            )
            partner = self.directory.partner(attempt.lender)
            limit = timedelta(minutes=partner.unreachable_after_minutes if partner else 0)
            if request is not None and self.at - aware(request.first_failed) >= limit:  # type: ignore[operator]
                txn.pending = [p for p in txn.pending if p.recipient != attempt.lender]
                attempt.outcome = f"Unreachable: {request.error}"
                self.ask_next_lender(attempt.outcome)
                moved_on = 1
        due = {
            p.recipient
            for p in self.txn.pending
            if p.next_at is not None and aware(p.next_at) <= self.at  # type: ignore[operator]
        }
        return moved_on + sum(self.release(recipient, force=True) for recipient in sorted(due))

    def redeliver(self, recipient: str | None) -> int:
        recipients = {p.recipient for p in self.txn.pending}
        chosen = sorted(recipients if recipient is None else recipients & {recipient})
        return sum(self.release(r, force=True) for r in chosen)

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
        txn = self.txn
        after = txn.open_with
        if after != self.open_before:
            if self.open_before:
                key = load_key(self.open_before, txn.id)
                self.outputs.append(Output(topic="ill.load", key=key, value=None))
            if after:
                value = {"borrower": txn.borrower, "lender": after, "transaction_id": txn.id}
                self.outputs.append(
                    Output(topic="ill.load", key=load_key(after, txn.id), value=value)
                )
        txn.next_deadline = txn.deadline()
        snapshot = self.txn.model_dump(mode="json", exclude={"replay", "seen"})
        self.outputs.append(Output(topic="ill.transactions", key=self.txn.id, value=snapshot))
        return self.outputs

    # -- effects ---------------------------------------------------------------------------

    def start(self) -> None:
        """Choose the rota profile; search the members' catalogues, or rank them at once when
        there is nothing to search (no catalogue, or nothing in the request to search by)."""
        txn = self.txn
        assert txn.request is not None
        profile = self.directory.profile_for(txn.request)
        txn.profile = profile.name
        members = self.directory.rota_for(txn.request)
        terms = search_terms(txn.request.bibliographic) if profile.check_holdings else []
        searchable = [
            m
            for m in members
            if m not in txn.skipped_by_staff
            and (partner := self.directory.partner(m)) is not None
            and partner.catalogue is not None
        ]
        txn.state = State.LOCATING
        if terms and searchable:
            txn.locate_id = f"{self.ref}:locate"
            command = Locate(
                locate_id=txn.locate_id, transaction_id=txn.id, terms=terms, lenders=searchable
            )
            self.outputs.append(as_output("ill.locate", txn.id, command))
            return
        self.rank({})
        self.ask_next_lender(None)

    def rank(self, holdings: dict[str, HoldingsResult]) -> None:
        txn = self.txn
        assert txn.request is not None
        txn.locate_id = None
        ranked = rank(
            self.directory.profile_for(txn.request),
            self.directory.rota_for(txn.request),
            txn.borrower,
            txn.request.service_type,
            holdings,
            self.load,
            self.directory,
        )
        txn.ranking = ranked
        txn.rota = [c.lender for c in ranked if not c.skip]

    def ask_next_lender(self, why_previous: str | None, forced: str | None = None) -> None:
        """Ask the best lender not yet tried in this round (or `forced`, named by staff). A
        lender at its limit of open incoming requests gets an automatic rejection recorded on
        its behalf, and the next is considered."""
        txn = self.txn
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
                None
                if forced
                else at_limit(self.directory, lender, self.load.figures(lender, txn.borrower))
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
            self.record("automatic", Event.UNFILLED.value, lender, txn.state, detail=limit)
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
        self.route(
            RoutingDecision(
                transaction_id=txn.id,
                attempt=number,
                profile=txn.profile,
                candidates=[{**c.model_dump(mode="json"), "why": c.why} for c in txn.ranking],
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
        partner = self.directory.partner(chosen)
        days = partner.answer_timeout_days if partner else 5.0
        txn.lender_deadline = self.at + timedelta(days=days)
        self.deliver(
            chosen, txn.request.model_copy(update={"request_id": attempt.request_id}), number
        )
        if any(not a.automatic for a in txn.attempts[:-1]):
            # The borrower hears that the request moved on, not that it failed (ISO 18626:
            # ExpectToSupply as a Notification); protocols without such a message skip it.
            # Automatic rejections alone are not news: no lender had been asked.
            moved = Message(
                event=Event.LENDER_NOTE,
                request_id=txn.borrower_request_id,
                sender="rshub",
                source_protocol="rshub",
                note=f"rshub: {why_previous or reason}; asking the next lender",
            )
            self.deliver(txn.borrower, moved, attempt=0)
        txn.state = State.REQUESTED

    def withdraw(self, why: str) -> None:
        """Take the request back from the lender holding it (staff rerouting, time-out,
        expiry): the lender gets a Cancel, the attempt ends."""
        txn = self.txn
        attempt = txn.attempt
        if attempt is None or attempt.outcome is not None or txn.state not in ROUTABLE:
            return
        attempt.outcome = why
        cancel = Message(
            event=Event.CANCEL,
            request_id=attempt.request_id,
            sender=txn.borrower,
            source_protocol="rshub",
            note=f"rshub: {why}",
            patron_id=txn.request.patron_id if txn.request else None,
            item_id=txn.item_id,
        )
        self.deliver(attempt.lender, cancel, attempt.number)

    def answer_cancel(self) -> None:
        """A cancel before any lender was asked: the hub itself says yes."""
        reply = Message(
            event=Event.CANCEL_REPLY,
            request_id=self.txn.borrower_request_id,
            sender="rshub",
            source_protocol="rshub",
            answer=True,
            note="rshub: cancelled before a lender was asked",
        )
        self.txn.locate_id = None
        self.deliver(self.txn.borrower, reply, attempt=0)

    def _last_reason(self) -> Reason:
        return next((a.reason for a in reversed(self.txn.attempts) if a.reason), NO_LENDER)

    def forward(self, message: Message, role: Role) -> None:
        """Pass a step to the other party, under the request id that party knows, with what
        the transaction knows and the sender's protocol did not say (item id, patron)."""
        txn = self.txn
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
            borrower = self.directory.partner(txn.borrower)
            if message.due_date and borrower and borrower.delivery_time_offset_days:
                # The patron must return it in time for the library to ship it back.
                offset = timedelta(days=borrower.delivery_time_offset_days)
                update["due_date"] = message.due_date - offset
            self.deliver(txn.borrower, message.model_copy(update=update), 0)

    # -- the clock -------------------------------------------------------------------------

    def tick(self) -> str | None:
        """Fire what is due at `self.at`; returns what happened (None: nothing was due)."""
        retried = self.retry_due()
        happened = self.deadline_due()
        said = [f"{retried} failed deliveries sent again or moved on"] if retried else []
        return "; ".join([*said, *([happened] if happened else [])]) or None

    def deadline_due(self) -> str | None:
        txn = self.txn
        if txn.need_before and txn.state in NEED_BEFORE_STATES and self.at >= txn.need_before:
            why = f"need-before date {txn.need_before.date().isoformat()} passed"
            self.withdraw(f"request expired: {why}")
            txn.state = State.EXPIRED
            txn.locate_id = None
            expired = Message(
                event=Event.EXPIRED,
                request_id=txn.borrower_request_id,
                sender="rshub",
                source_protocol="rshub",
                reason=Reason.from_code(27, why),
                note=f"rshub: {why}",
            )
            self.deliver(txn.borrower, expired, attempt=0)
            return f"expired: {why}"
        if txn.lender_deadline and txn.state is State.REQUESTED and self.at >= txn.lender_deadline:
            attempt = txn.attempt
            assert attempt is not None
            why = f"no answer from {attempt.lender} by {txn.lender_deadline.isoformat()}"
            self.withdraw(f"Expired: {why}")
            attempt.reason = NO_ANSWER
            self.ask_next_lender(why)
            return f"lender timed out: {why}"
        if txn.due_date and txn.state in DUE_STATES and self.at >= txn.due_date:
            attempt = txn.attempt
            assert attempt is not None
            txn.state = State.OVERDUE
            overdue = Message(
                event=Event.OVERDUE,
                sender=attempt.lender,
                source_protocol="rshub",
                due_date=txn.due_date,
                note=f"rshub: due date {txn.due_date.date().isoformat()} passed without a return",
            )
            self.forward(overdue, Role.LENDER)
            return "overdue"
        return None


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


def new_transaction(message: Message) -> Transaction:
    return Transaction(
        id=message.transaction_id, borrower=message.sender, borrower_request_id=message.request_id
    )


def apply(
    txn: Transaction | None,
    message: Message,
    directory: Directory,
    load: LoadView | None = None,
    at: datetime | None = None,
) -> Result:
    """Apply a partner's message to its transaction (None when the row does not exist yet).
    `load` gives the lenders' open requests; `at` is the hub's clock (default: now)."""
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
    run = _Run(txn, directory, ref, load, at)
    if rule.effect is Effect.START:
        txn.request = message
        txn.need_before = aware(message.need_before)
        run.start()
    elif rule.effect is Effect.ANSWER:
        run.answer_cancel()
        assert not isinstance(rule.target, Previous)
        txn.state = rule.target
    elif rule.effect is Effect.NONE:
        pass
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
    return _applied(run, ref, run.finish())


def _applied(run: _Run, ref: str, outputs: list[Output]) -> Result:
    txn = run.txn
    txn.remember(ref, outputs)
    verdict = Verdict(
        message_id=ref, transaction_id=txn.id, outcome=VerdictOutcome.APPLIED, state=txn.state
    )
    return Result(
        transaction=txn,
        outputs=[*outputs, as_output("ill.replies", txn.id, verdict)],
        verdict=verdict,
    )


def apply_control(
    txn: Transaction | None,
    control: Located | Tick | RouteCommand | Redeliver,
    directory: Directory,
    load: LoadView | None = None,
) -> Result:
    """Apply a hub-internal input: holdings found, a clock tick, a staff routing command or a
    request to redeliver. Stale holdings and ticks with nothing due change nothing."""
    ref = control.ref
    if txn is not None and ref in txn.seen:
        return Result(transaction=txn, outputs=[*txn.replay.get(ref, [])])
    if isinstance(control, RouteCommand):
        return _route(txn, control, directory, load)
    if isinstance(control, Redeliver):
        return _redeliver(txn, control, directory, load)
    if txn is None:
        return Result(transaction=None, outputs=[])
    at = control.at if isinstance(control, Tick) else None
    run = _Run(txn.model_copy(deep=True), directory, ref, load, at)
    before = run.txn.state
    if isinstance(control, Located):
        if before is not State.LOCATING or control.locate_id != txn.locate_id:
            return Result(transaction=txn, outputs=[])
        run.rank({result.lender: result for result in control.results})
        run.ask_next_lender(None)
        run.record("transition", "Located", "rshub", before, detail=_holdings_line(control))
    else:
        happened = run.tick()
        if happened is None:
            return Result(transaction=txn, outputs=[])
        run.record("timer", "Tick", "rshub", before, detail=happened)
    outputs = run.finish()
    run.txn.remember(ref, outputs)
    return Result(transaction=run.txn, outputs=outputs)


def _redeliver(
    txn: Transaction | None, command: Redeliver, directory: Directory, load: LoadView | None
) -> Result:
    key = command.transaction_id
    label = "redeliver" + (f" to {command.partner}" if command.partner else "")
    if txn is None:
        return _refusal(None, command.ref, key, command.by, label, f"no transaction {key}")
    run = _Run(txn.model_copy(deep=True), directory, command.ref, load)
    before = run.txn.state
    sent = run.redeliver(command.partner)
    if not sent:
        waiting = [p for p in txn.pending if p.status is not Sending.IN_FLIGHT]
        if command.partner:
            waiting = [p for p in waiting if p.recipient == command.partner]
        if not waiting:
            return _refusal(txn, command.ref, key, command.by, label, "nothing waits for delivery")
    run.record("delivery", label, command.by, before, detail=f"{sent} deliveries sent again")
    return _applied(run, command.ref, run.finish())


def _holdings_line(located: Located) -> str:
    return ", ".join(f"{r.lender}: {r.status.value}" for r in located.results)


ROUTE_NEEDS_LENDER = frozenset({RouteAction.LENDER, RouteAction.SKIP})


def _route(
    txn: Transaction | None, command: RouteCommand, directory: Directory, load: LoadView | None
) -> Result:
    """Staff routing: ask a named lender now, skip one, or restart the rota."""
    key = command.transaction_id
    label = f"route {command.action.value}" + (f" {command.lender}" if command.lender else "")
    if txn is None:
        return _refusal(None, command.ref, key, command.by, label, f"no transaction {key}")
    if txn.state not in ROUTABLE:
        return _refusal(
            txn,
            command.ref,
            key,
            command.by,
            label,
            f"not possible in state {txn.state.value}: routing can change only while the "
            f"request looks for a lender ({', '.join(sorted(s.value for s in ROUTABLE))})",
        )
    lender = command.lender
    if command.action in ROUTE_NEEDS_LENDER:
        partner = directory.partner(lender or "")
        if partner is None:
            return _refusal(txn, command.ref, key, command.by, label, f"unknown partner {lender}")
        if command.action is RouteAction.LENDER and (
            not partner.lends or partner.symbol == txn.borrower
        ):
            return _refusal(
                txn, command.ref, key, command.by, label, f"{lender} cannot lend this request"
            )
    run = _Run(txn.model_copy(deep=True), directory, command.ref, load)
    work = run.txn
    before = work.state
    holder = work.open_with
    if command.action is RouteAction.LENDER:
        assert lender is not None
        run.withdraw(f"staff sent the request to {lender}")
        work.locate_id = None
        if not work.ranking:
            run.rank({})
        run.ask_next_lender(f"{command.by} chose {lender}", forced=lender)
    elif command.action is RouteAction.SKIP:
        assert lender is not None
        work.skipped_by_staff = [*dict.fromkeys([*work.skipped_by_staff, lender])]
        if holder == lender:
            run.withdraw(f"skipped by {command.by}")
            run.ask_next_lender(f"{lender} skipped by {command.by}")
    else:
        run.withdraw(f"rota restarted by {command.by}")
        work.round_start = len(work.attempts)
        run.start()
    run.record("transition", label, command.by, before)
    return _applied(run, command.ref, run.finish())


def _learn(run: _Run, message: Message) -> None:
    """Keep what later steps need: the item id (renewals are addressed by it) and due date."""
    txn = run.txn
    if message.item_id and message.event in (Event.LOANED, Event.COPY_COMPLETED):
        txn.item_id = message.item_id
        assert txn.attempt is not None
        run.index_item(message.item_id, txn.attempt.lender, alive=True)
    if message.due_date and message.event in (Event.LOANED, Event.RENEW_ANSWER):
        txn.due_date = aware(message.due_date)
    if txn.state in TERMINAL and txn.item_id and txn.attempt is not None:
        run.index_item(txn.item_id, txn.attempt.lender, alive=False)


def _refuse(txn: Transaction | None, message: Message, error: IllegalTransition) -> Result:
    key = message.transaction_id or message.request_id or "unaddressed"
    return _refusal(
        txn,
        message.message_id,
        key,
        message.sender,
        message.event.value,
        str(error),
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
    protocol: str | None = "rshub",
    audit_ref: str | None = None,
) -> Result:
    """Refuse an input: the row stays as it was; a dead letter, an event and the verdict."""
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
    )
    outputs = [
        as_output("ill.deadletter", key, letter),
        as_output("ill.events", key, change),
        as_output("ill.replies", key, verdict),
    ]
    return Result(transaction=txn, outputs=outputs, verdict=verdict)


def _pending(txn: Transaction, command_id: str) -> Pending | None:
    return next((p for p in txn.pending if p.command.command_id == command_id), None)


def apply_delivery(
    txn: Transaction | None,
    result: DeliveryResult,
    directory: Directory,
    load: LoadView | None = None,
) -> Result:
    """Apply an outbound connector's report; the clock is the report's time. Accepted: the
    next step to that partner may go. Failed: retried on the partner's schedule, parked after
    it; a request no lender can be reached for moves on to the next lender."""
    ref = result.result_id
    if txn is None or ref in txn.seen:
        return Result(transaction=txn, outputs=[*(txn.replay.get(ref, []) if txn else [])])
    txn = txn.model_copy(deep=True)
    run = _Run(txn, directory, ref, load, aware(result.at))
    before = txn.state
    detail = result.detail
    if result.outcome is DeliveryOutcome.FAILED:
        detail = run.delivery_failed(result) + (f" ({result.detail})" if result.detail else "")
    else:
        run.delivered(result.command_id)
    run.record(
        "delivery",
        f"{result.event.value}:{result.outcome.value}",
        result.recipient,
        before,
        detail=detail,
    )
    outputs = run.finish()
    txn.remember(ref, outputs)
    return Result(transaction=txn, outputs=outputs)
