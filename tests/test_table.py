"""Every row of the lifecycle table, run through `apply()`; and proof that every input the hub
can meet in every state has a row or is refused or ignored on purpose.

Each row is reached the way the hub reaches it: a transaction is walked into the row's state
by real inputs (a request, the catalogue search's answer, the partners' messages, ticks), then
the input that leads to the row is applied. Hub inputs that only effects emit (RotaExhausted,
LenderSkipped, LenderUnreachable) are reached through the record that makes them happen.
The engine reads no clock: here, reading it fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

import connectors.core.model as model
from connectors.core.directory import Directory
from connectors.core.holdings import Holding, HoldingsResult
from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Bibliographic,
    Event,
    Message,
    Money,
    Role,
    transaction_id,
)
from connectors.core.records import (
    DeliveryOutcome,
    DeliveryResult,
    Located,
    Redeliver,
    RouteAction,
    RouteCommand,
    StaffAction,
    StaffCommand,
    Tick,
    VerdictOutcome,
)
from hub.domain.effects import EFFECTS
from hub.domain.engine import Record, apply
from hub.domain.lifecycle import (
    ANSWERED,
    EMITS,
    OUT_OF_TURN,
    ROUTABLE,
    TABLE,
    TERMINAL,
    WITH_LENDER,
    Effect,
    Hub,
    Input,
    OutOfTurn,
    Previous,
    State,
    accepts,
)
from hub.domain.transaction import Pending, Result, Sending, Transaction

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
NEED_BEFORE = T0 + timedelta(days=20)
DUE = T0 + timedelta(days=40)
TXN = transaction_id("B", "R-1")
BOOK = Bibliographic(title="T", isbn="9780262033848")

D = Directory.model_validate(
    {
        "consortium": "T",
        "partners": [
            {
                "symbol": s,
                "name": s,
                "protocol": "ncip",
                "endpoint": f"http://127.0.0.1:1/{s}",
                "retry_minutes": [5, 10],
                "parked_retry_minutes": 60,
                "unreachable_after_minutes": 30,
                **(
                    {"catalogue": {"kind": "z3950", "address": "127.0.0.1:1"}}
                    if s in ("L1", "L2")
                    else {}
                ),
            }
            for s in ("B", "L1", "L2", "L3")
        ],
        "rotas": [{"name": "r", "members": ["B", "L1", "L2", "L3"]}],
        "default_rota": "r",
    }
)


class NoClock(datetime):
    @classmethod
    def now(cls, tz: object = None) -> NoClock:
        raise AssertionError("the engine read the clock")


@pytest.fixture(autouse=True)
def no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every default timestamp of the model and the records comes from model.datetime."""
    monkeypatch.setattr(model, "datetime", NoClock)


# -- walking a transaction into a state ----------------------------------------------------


@dataclass
class Loan:
    """One transaction, moved only by `apply()`."""

    txn: Transaction | None = None
    at: datetime = T0
    last: Result | None = field(default=None, repr=False)

    def feed(self, record: Record, at: datetime | None = None) -> Result:
        """Apply at the record's own time (a tick's, a delivery result's) or the loan's."""
        own = record.at if isinstance(record, (Tick, DeliveryResult)) else None
        result = apply(self.txn, record, at or own or self.at, directory=D)
        assert result.verdict is None or result.verdict.outcome is not VerdictOutcome.REFUSED, (
            result.verdict
        )
        self.txn, self.last = result.transaction, result
        return result

    @property
    def row(self) -> Transaction:
        assert self.txn is not None
        return self.txn

    def says(self, event: Event, sender: str, **fields: object) -> Result:
        return self.feed(self.message(event, sender, **fields))

    def message(self, event: Event, sender: str, **fields: object) -> Message:
        attempt = self.txn.attempt if self.txn else None
        request_id = "R-1" if sender == "B" or attempt is None else attempt.request_id
        return Message.model_validate(
            {
                "event": event,
                "sender": sender,
                "request_id": request_id,
                "transaction_id": TXN,
                "timestamp": self.at,
                **EVENT_FIELDS.get(event, {}),
                **fields,
            }
        )

    def in_flight(self) -> Pending:
        return next(p for p in reversed(self.row.pending) if p.status is Sending.IN_FLIGHT)

    def result(
        self, pending: Pending, outcome: DeliveryOutcome, **fields: object
    ) -> DeliveryResult:
        return DeliveryResult.model_validate(
            {
                "command_id": pending.command.command_id,
                "transaction_id": TXN,
                "recipient": pending.recipient,
                "event": pending.command.message.event,
                "attempt": pending.command.attempt,
                "try_number": pending.failures + 1,
                "outcome": outcome,
                "detail": "connection refused",
                "at": self.at,
                **fields,
            }
        )

    def fail_one(self) -> Pending:
        """The latest delivery in flight fails once (a retry is scheduled)."""
        pending = self.in_flight()
        self.feed(self.result(pending, DeliveryOutcome.FAILED))
        return pending


EVENT_FIELDS: dict[Event, dict[str, object]] = {
    Event.REQUEST: {"bibliographic": BOOK, "need_before": NEED_BEFORE},
    # The borrower's request again, now with a maximum cost (a lender's RetryPossible).
    Event.RETRY: {
        "bibliographic": BOOK,
        "need_before": NEED_BEFORE,
        "max_cost": Money(amount="40", currency="EUR"),
    },
    Event.LOANED: {"item_id": "I-1", "due_date": DUE},
    Event.COPY_COMPLETED: {"item_id": "I-1"},
    Event.RENEW_ANSWER: {"due_date": DUE + timedelta(days=14)},
}


def held(loan: Loan) -> Located:
    assert loan.row.locate_id is not None
    results = [HoldingsResult(lender=x, status=Holding.HELD) for x in ("L1", "L2")]
    return Located(locate_id=loan.row.locate_id, transaction_id=TXN, results=results)


def route(action: RouteAction, lender: str | None = None) -> RouteCommand:
    return RouteCommand(
        command_id=f"route-{action.value}-{lender}",
        transaction_id=TXN,
        action=action,
        lender=lender,
    )


def staff(action: StaffAction, text: str = "said by staff", to: str | None = None) -> StaffCommand:
    return StaffCommand(
        command_id=f"staff-{action.value}", transaction_id=TXN, action=action, text=text, to=to
    )


def tick(at: datetime) -> Tick:
    return Tick(transaction_id=TXN, at=at)


# How each state is reached from nothing; each path starts from an earlier state's.
PATHS: dict[State, tuple[State | None, Callable[[Loan], object]]] = {
    State.LOCATING: (None, lambda loan: loan.says(Event.REQUEST, "B")),
    State.REQUESTED: (State.LOCATING, lambda loan: loan.feed(held(loan))),
    State.WILL_SUPPLY: (State.REQUESTED, lambda loan: loan.says(Event.WILL_SUPPLY, "L1")),
    State.LOANED: (State.WILL_SUPPLY, lambda loan: loan.says(Event.LOANED, "L1")),
    State.RECEIVED: (State.LOANED, lambda loan: loan.says(Event.RECEIVED, "B")),
    State.RENEW_PENDING: (State.RECEIVED, lambda loan: loan.says(Event.RENEW, "B")),
    State.RECALLED: (State.LOANED, lambda loan: loan.says(Event.RECALLED, "L1")),
    # By the clock, as the hub reaches it (a lender may then demand the item: Overdue again).
    State.OVERDUE: (State.LOANED, lambda loan: loan.feed(tick(DUE))),
    State.RETURNED: (State.RECEIVED, lambda loan: loan.says(Event.SHIPPED_RETURN, "B")),
    State.LOAN_COMPLETED: (State.RETURNED, lambda loan: loan.says(Event.LOAN_COMPLETED, "L1")),
    State.COPY_COMPLETED: (State.REQUESTED, lambda loan: loan.says(Event.COPY_COMPLETED, "L1")),
    State.CANCEL_PENDING: (State.WILL_SUPPLY, lambda loan: loan.says(Event.CANCEL, "B")),
    State.CANCELLED: (State.LOCATING, lambda loan: loan.says(Event.CANCEL, "B")),
    State.UNFILLED: (State.REQUESTED, lambda loan: _unfill(loan, "L1", "L2", "L3")),
    State.EXPIRED: (State.REQUESTED, lambda loan: loan.feed(tick(NEED_BEFORE))),
}
# Where a state can come with a delivery in flight when its usual path gives none: a search
# started again by staff while the Cancel to the lender it had is on its way.
WITH_A_DELIVERY: dict[State, tuple[State, Callable[[Loan], object]]] = {
    State.LOCATING: (State.REQUESTED, lambda loan: loan.feed(route(RouteAction.RESTART))),
}


def _unfill(loan: Loan, *lenders: str) -> None:
    for lender in lenders:
        loan.says(Event.UNFILLED, lender)


def reach(state: State, delivering: bool = False) -> Loan:
    loan = Loan()
    if state is State.NEW:
        return loan
    earlier, step = (WITH_A_DELIVERY if delivering else {}).get(state) or PATHS[state]
    if earlier is not None:
        loan = reach(earlier)
    step(loan)
    assert loan.row.state is state, (state, loan.row.state)
    return loan


# -- the row test --------------------------------------------------------------------------


@dataclass
class Case:
    """How a row is reached and what it must do."""

    loan: Loan
    record: Record
    at: datetime
    state: State  # the state after everything the input led to
    delivers: list[tuple[str, str]]  # (recipient, event) of each delivery, in order
    check: Callable[[Transaction], object] = lambda txn: None
    writes: tuple[str, ...] = ()  # other topics the step must write to


def other_side(loan: Loan, sender: str) -> str:
    attempt = loan.row.attempt
    assert attempt is not None
    return attempt.lender if sender == "B" else "B"


def partner_case(state: State, event: Event, answer: bool | None, side: Role) -> Case:
    loan = reach(state)
    sender = (
        "B"
        if side is Role.BORROWER
        else (loan.row.attempt.lender if loan.txn and loan.row.attempt else "L1")
    )
    fields = {} if answer is None else {"answer": answer}
    message = loan.message(event, sender, **fields)
    rule = TABLE[(state, event, answer)]
    target = rule.target
    if isinstance(target, Previous):
        assert loan.row.previous_state is not None
        target = loan.row.previous_state
    effects = rule.effects
    delivers: list[tuple[str, str]] = []

    def check(txn: Transaction) -> None:
        return None

    writes: tuple[str, ...] = ()
    if Effect.FORWARD in effects:
        delivers = [(other_side(loan, sender), event.value)]
    if Effect.NEXT_LENDER in effects:
        delivers = [("L2", "Request"), ("B", "LenderNotification")]

        def check(txn: Transaction) -> None:
            assert txn.attempts[0].outcome and txn.attempts[0].outcome.startswith(event.value)

    if Effect.ANSWER_CANCEL in effects:
        delivers = [("B", "CancelReply")]
    if Effect.ATTENTION in effects:

        def check(txn: Transaction) -> None:
            assert txn.needs_attention and event.value in txn.needs_attention

    if Effect.WITHDRAW in effects:
        delivers = _cancel_to_holder(loan)
    if Effect.TAKE_REQUEST in effects and state is not State.NEW:  # a Retry

        def check(txn: Transaction) -> None:
            # Kept as the Request lenders are asked with, the new data in it; every lender
            # may be asked again.
            assert txn.request is not None and txn.request.event is Event.REQUEST
            assert txn.request.max_cost == Money(amount="40", currency="EUR")
            assert txn.round_start == len(txn.attempts)

    if Effect.START in effects:
        writes = ("ill.locate",)
    return Case(loan, message, T0, target, delivers, check, writes)


def _cancel_to_holder(loan: Loan) -> list[tuple[str, str]]:
    return [("L1", "Cancel")] if loan.row.state in WITH_LENDER else []


def hub_case(state: State, name: Hub) -> Case:
    record: Record
    if name is Hub.LOCATED:
        loan = reach(state)
        return Case(loan, held(loan), T0, State.REQUESTED, [("L1", "Request")])
    if name is Hub.ROTA_EXHAUSTED:
        loan = reach(state)
        _unfill(loan, "L1", "L2")
        record = loan.message(Event.UNFILLED, "L3")
        return Case(loan, record, T0, State.UNFILLED, [("B", "Unfilled")])
    if name is Hub.LENDER_TIMED_OUT:
        loan = reach(state)
        at = T0 + timedelta(days=5, hours=1)

        def timed_out(txn: Transaction) -> None:
            assert txn.attempts[0].outcome and txn.attempts[0].outcome.startswith("Expired")

        delivers = [("L1", "Cancel"), ("L2", "Request"), ("B", "LenderNotification")]
        return Case(loan, tick(at), at, State.REQUESTED, delivers, timed_out)
    if name is Hub.LENDER_UNREACHABLE:
        loan = reach(state)
        request = loan.row.pending[0]
        assert request.recipient == "L1" and request.command.message.event is Event.REQUEST
        record = loan.result(request, DeliveryOutcome.FAILED, retryable=False)

        def moved_on(txn: Transaction) -> None:
            assert "Unreachable" in (txn.attempts[0].outcome or "")
            assert all(p.recipient != "L1" for p in txn.pending)

        delivers = [("L2", "Request"), ("B", "LenderNotification")]
        return Case(loan, record, T0, State.REQUESTED, delivers, moved_on)
    if name is Hub.LENDER_SKIPPED:
        loan = reach(state)
        delivers = [("L1", "Cancel"), ("L2", "Request"), ("B", "LenderNotification")]
        record = route(RouteAction.SKIP, "L1")
        return Case(loan, record, T0, State.REQUESTED, delivers)
    if name is Hub.NEED_BEFORE_PASSED:
        loan = reach(state)
        delivers = [*_cancel_to_holder(loan), ("B", "Expired")]
        return Case(loan, tick(NEED_BEFORE), NEED_BEFORE, State.EXPIRED, delivers)
    if name is Hub.DUE_DATE_PASSED:
        loan = reach(state)
        return Case(loan, tick(DUE), DUE, State.OVERDUE, [("B", "Overdue")])
    if name is Hub.ROUTE_LENDER:
        loan = reach(state)
        delivers = [*_cancel_to_holder(loan), ("L3", "Request")]
        if loan.row.attempts:
            delivers.append(("B", "LenderNotification"))
        return Case(loan, route(RouteAction.LENDER, "L3"), T0, State.REQUESTED, delivers)
    if name is Hub.ROUTE_SKIP:
        loan = reach(state)

        def skipped(txn: Transaction) -> None:
            assert txn.skipped_by_staff == ["L2"]

        return Case(loan, route(RouteAction.SKIP, "L2"), T0, state, [], skipped)
    if name is Hub.ROUTE_RESTART:
        loan = reach(state)
        delivers = _cancel_to_holder(loan)
        record = route(RouteAction.RESTART)
        return Case(loan, record, T0, State.LOCATING, delivers, writes=("ill.locate",))
    if name is Hub.ROUTE_NEXT:
        loan = reach(state)

        def moved_on(txn: Transaction) -> None:
            assert txn.attempts[0].outcome == "moved on by staff"
            assert txn.skipped_by_staff == []  # it may be asked again in a later round

        delivers = [("L1", "Cancel"), ("L2", "Request"), ("B", "LenderNotification")]
        return Case(loan, route(RouteAction.NEXT), T0, State.REQUESTED, delivers, moved_on)
    if name is Hub.STAFF_CANCEL:
        loan = reach(state)
        delivers = [*_cancel_to_holder(loan), ("B", "CancelReply")]
        return Case(loan, staff(StaffAction.CANCEL), T0, State.CANCELLED, delivers)
    if name is Hub.STAFF_CLOSE:
        loan = reach(state)
        return Case(loan, staff(StaffAction.CLOSE), T0, State.LOAN_COMPLETED, [])
    if name is Hub.STAFF_NOTE:
        loan = reach(state)
        return Case(loan, staff(StaffAction.NOTE), T0, state, [])
    if name is Hub.STAFF_MESSAGE:
        loan = reach(state)
        record = staff(StaffAction.MESSAGE, to="borrower")
        return Case(loan, record, T0, state, [("B", "LenderNotification")])
    loan = reach(state, delivering=True)
    if name is Hub.DELIVERED:
        pending = loan.in_flight()

        def gone(txn: Transaction) -> None:
            assert pending.command.command_id not in [p.command.command_id for p in txn.pending]

        record = loan.result(pending, DeliveryOutcome.SENT)
        return Case(loan, record, T0, state, [], gone)
    if name is Hub.NOT_CARRIED:
        pending = loan.in_flight()
        asked = pending.command.message.event
        if state in (State.CANCEL_PENDING, State.RENEW_PENDING):
            # The borrower's own Cancel or Renew, which the lender's protocol cannot carry.
            assert asked in (Event.CANCEL, Event.RENEW)
            previous = loan.row.previous_state
            assert previous is not None
            record = loan.result(pending, DeliveryOutcome.NOT_APPLICABLE)
            answer = Event.CANCEL_REPLY if asked is Event.CANCEL else Event.RENEW_ANSWER
            return Case(loan, record, T0, previous, [(loan.row.borrower, answer.value)])
        record = loan.result(pending, DeliveryOutcome.NOT_APPLICABLE, event=Event.CANCEL)
        return Case(loan, record, T0, state, [])
    if name is Hub.DELIVERY_FAILED:
        pending = loan.in_flight()

        def retried(txn: Transaction) -> None:
            again = next(
                p for p in txn.pending if p.command.command_id == pending.command.command_id
            )
            assert again.status is Sending.RETRY and again.next_at == T0 + timedelta(minutes=5)

        record = loan.result(pending, DeliveryOutcome.FAILED)
        return Case(loan, record, T0, state, [], retried)
    failed = loan.fail_one()
    sent_again = [(failed.recipient, failed.command.message.event.value)]
    if name is Hub.RETRY_DUE:
        at = T0 + timedelta(minutes=5)
        return Case(loan, tick(at), at, state, sent_again)
    assert name is Hub.REDELIVER
    order = Redeliver(command_id="redeliver-1", transaction_id=TXN, partner=failed.recipient)
    return Case(loan, order, T0, state, sent_again)


def row_cases() -> list[object]:
    cases: list[object] = []
    for (state, given, answer), _rule in sorted(TABLE.items(), key=str):
        if isinstance(given, Event):
            sides = [SENDER[given]] if given in SENDER else [Role.BORROWER, Role.LENDER]
            if state is State.LOCATING:
                sides = [s for s in sides if s is Role.BORROWER]  # no lender yet
            for side in sides:
                name = f"{state.value}-{given.value}-{answer}-{side.value}"
                cases.append(pytest.param(state, given, answer, side, id=name))
        elif given is Hub.UNREPORTED_END:
            # Applies only with partners that cannot report a loan's end (a directory with
            # `reports`): walked row by row in tests/test_silent_partners.py.
            continue
        else:
            cases.append(pytest.param(state, given, answer, None, id=f"{state}-{given}"))
    return cases


def deliveries(result: Result) -> list[tuple[str, str]]:
    return [
        (o.value["recipient"], o.value["message"]["event"])
        for o in result.outputs
        if o.topic.startswith("ill.outbound.") and o.value
    ]


@pytest.mark.parametrize(("state", "given", "answer", "side"), row_cases())
def test_every_row_through_apply(
    state: State, given: Input, answer: bool | None, side: Role | None
) -> None:
    if isinstance(given, Event):
        assert side is not None
        case = partner_case(state, given, answer, side)
    else:
        case = hub_case(state, given)
    before = case.loan.txn
    result = apply(before, case.record, case.at, directory=D)
    assert result.verdict is None or result.verdict.outcome is VerdictOutcome.APPLIED
    txn = result.transaction
    assert txn is not None and txn != before, "the row changed nothing"
    assert txn.state is case.state
    assert deliveries(result) == case.delivers
    # Every delivery made by this step says where the transaction now stands.
    made = [o.value for o in result.outputs if o.topic.startswith("ill.outbound.") and o.value]
    fresh = [v for v in made if v["try_number"] == 1]
    assert all(v["state"] == txn.state.value for v in fresh)
    for topic in case.writes:
        assert any(o.topic == topic for o in result.outputs), topic
    case.check(txn)
    # One line on ill.events, from where the transaction stood to where it stands.
    [line] = [o.value for o in result.outputs if o.topic == "ill.events" and o.value]
    assert (line["from_state"], line["to_state"]) == (
        (before.state if before else State.NEW).value,
        txn.state.value,
    )


# -- exhaustiveness ------------------------------------------------------------------------

# Hub inputs that come from outside the table (a record or the clock), and those only
# effects emit (follow-ups).
FROM_RECORDS = frozenset(
    {
        Hub.LOCATED,
        Hub.DELIVERED,
        Hub.DELIVERY_FAILED,
        Hub.NOT_CARRIED,
        Hub.REDELIVER,
        Hub.ROUTE_LENDER,
        Hub.ROUTE_SKIP,
        Hub.ROUTE_RESTART,
        Hub.ROUTE_NEXT,
        Hub.STAFF_CANCEL,
        Hub.STAFF_CLOSE,
        Hub.STAFF_NOTE,
        Hub.STAFF_MESSAGE,
    }
)
FROM_CLOCK = frozenset(
    {
        Hub.RETRY_DUE,
        Hub.LENDER_UNREACHABLE,
        Hub.NEED_BEFORE_PASSED,
        Hub.LENDER_TIMED_OUT,
        Hub.DUE_DATE_PASSED,
        Hub.UNREPORTED_END,
    }
)
FOLLOW_UPS = frozenset(h for emitted in EMITS.values() for h in emitted)
LIVE = [s for s in State if s is not State.NEW]  # a transaction exists in every state but New


def test_every_effect_has_its_code() -> None:
    assert set(EFFECTS) == set(Effect)


def test_every_hub_input_comes_from_somewhere() -> None:
    assert set(Hub) == FROM_RECORDS | FROM_CLOCK | FOLLOW_UPS


def test_every_follow_up_has_a_row_where_it_is_emitted() -> None:
    for (state, given, _answer), rule in TABLE.items():
        for effect in rule.effects:
            for follow_up in EMITS.get(effect, ()):
                assert not isinstance(rule.target, Previous)
                assert accepts(rule.target, follow_up), (state, given, effect, follow_up)


@pytest.mark.parametrize("name", sorted(FROM_RECORDS))
def test_records_have_a_row_in_every_state_or_a_deliberate_answer(name: Hub) -> None:
    missing = [s for s in LIVE if not accepts(s, name)]
    assert not missing or OUT_OF_TURN.get(name) in (OutOfTurn.REFUSE, OutOfTurn.IGNORE), missing
    # Deliveries are owed in every state, the ended ones too.
    if name in (Hub.DELIVERED, Hub.DELIVERY_FAILED, Hub.NOT_CARRIED, Hub.REDELIVER):
        assert missing == []


@pytest.mark.parametrize("state", LIVE)
def test_the_clock_asks_only_what_the_state_has_rows_for(state: State) -> None:
    """Whatever is due at once (every deadline passed, a failed delivery waiting), a Tick
    leads only to inputs the state has rows for."""
    loan = reach(state, delivering=True)
    loan.fail_one()
    far = T0 + timedelta(days=400)
    result = apply(loan.txn, tick(far), far, directory=D)
    assert result.transaction is not None and result.outputs


def _sides(event: Event) -> list[str]:
    if event in EITHER_SIDE:
        return ["B", "L1"]
    return ["B"] if SENDER[event] is Role.BORROWER else ["L1"]


def refusal_cases() -> list[object]:
    cases: list[object] = []
    for state in State:
        for event in Event:
            for sender in _sides(event):
                answers = (True, False) if event in ANSWERED else (None,)
                for answer in answers:
                    if (state, event, answer) not in TABLE:
                        name = f"{state.value}-{event.value}-{sender}-{answer}"
                        cases.append(pytest.param(state, event, sender, answer, id=name))
    return cases


@pytest.mark.parametrize(("state", "event", "sender", "answer"), refusal_cases())
def test_a_partner_event_without_a_row_is_refused(
    state: State, event: Event, sender: str, answer: bool | None
) -> None:
    loan = reach(state)
    # Said differently from anything the walk said: the same message again is a duplicate.
    fields: dict[str, object] = {"note": "out of turn"}
    if answer is not None:
        fields["answer"] = answer
    result = apply(loan.txn, loan.message(event, sender, **fields), T0, directory=D)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
    assert result.transaction == loan.txn
    assert [o.topic for o in result.outputs] == ["ill.deadletter", "ill.events", "ill.replies"]


@pytest.mark.parametrize("state", [s for s in LIVE if s not in ROUTABLE])
def test_staff_routing_out_of_turn_is_refused(state: State) -> None:
    loan = reach(state)
    for action, lender in ((RouteAction.LENDER, "L3"), (RouteAction.SKIP, "L2")):
        result = apply(loan.txn, route(action, lender), T0, directory=D)
        assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
        assert result.transaction == loan.txn
        # Told to the staff who asked, kept on ill.events; not a dead letter (issue 27).
        assert [o.topic for o in result.outputs] == ["ill.events", "ill.replies"]
    result = apply(loan.txn, route(RouteAction.RESTART), T0, directory=D)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED


@pytest.mark.parametrize("state", LIVE)
def test_a_search_answer_no_longer_waited_for_is_ignored(state: State) -> None:
    """The answer to an earlier search (before a restart, a cancel, staff routing)."""
    loan = reach(state)
    results = [HoldingsResult(lender="L1", status=Holding.HELD)]
    stale = Located(locate_id="an-earlier-search", transaction_id=TXN, results=results)
    result = apply(loan.txn, stale, T0, directory=D)
    assert result.transaction == loan.txn and result.outputs == []


def test_terminal_states_take_no_partner_event() -> None:
    assert not any(s in TERMINAL for (s, given, _a) in TABLE if isinstance(given, Event))
