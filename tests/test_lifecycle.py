"""The transition table and the engine that interprets it, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.core.directory import Directory
from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Correlation,
    Event,
    Message,
    Money,
    Reason,
    Role,
    lender_request_id,
    transaction_id,
)
from connectors.core.records import (
    DeliveryOutcome,
    DeliveryResult,
    Redeliver,
    RouteAction,
    RouteCommand,
    Tick,
    VerdictOutcome,
)
from hub.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Previous,
    State,
    transition,
)
from hub.domain.transaction import Result, Transaction
from tests.engine_steps import feed, records, row

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

DIRECTORY = Directory.model_validate(
    {
        "consortium": "T",
        "partners": [
            {
                "symbol": s,
                "name": s,
                "protocol": "ncip",
                "endpoint": f"http://127.0.0.1:1/{s}",
                "agency_ids": [f"{s}-ID"],
            }
            for s in ("B", "L1", "L2")
        ],
        "rotas": [{"name": "r", "members": ["B", "L1", "L2"]}],
        "default_rota": "r",
    }
)
TXN = transaction_id("B", "REQ-1")


def msg(event: Event, sender: str, request_id: str = "", **fields: object) -> Message:
    return Message(event=event, sender=sender, request_id=request_id, transaction_id=TXN, **fields)


def step(txn: Transaction | None, message: Message) -> Transaction:
    result = feed(txn, message, DIRECTORY)
    assert result.verdict is not None and result.verdict.outcome is not VerdictOutcome.REFUSED, (
        result.verdict
    )
    assert result.transaction is not None
    return result.transaction


def requested() -> Transaction:
    return step(None, msg(Event.REQUEST, "B", "REQ-1"))


def lid(n: int) -> str:
    return lender_request_id(TXN, n)


def deliveries(result: Result) -> list[tuple[str, str, str]]:
    return [
        (v["recipient"], v["message"]["event"], v["message"]["request_id"])
        for v in records(result, "ill.outbound.")
    ]


@pytest.mark.parametrize("key", sorted(TRANSITIONS, key=str))
def test_every_row_names_a_sender_and_leaves_terminal_states_alone(
    key: tuple[State, Event, bool | None],
) -> None:
    state, event, _answer = key
    assert event in SENDER or event in EITHER_SIDE
    assert state not in TERMINAL


@pytest.mark.parametrize("state", [s for s in State if s is not State.NEW])
def test_every_state_is_reachable(state: State) -> None:
    targets = {t.target for t in TRANSITIONS.values() if not isinstance(t.target, Previous)}
    # Unfilled (rota exhausted) and Expired (need-before date) are reached by the engine.
    assert state in targets | {State.UNFILLED, State.EXPIRED}


def test_illegal_event_names_event_side_and_state() -> None:
    with pytest.raises(
        IllegalTransition, match="Received from the borrower is not allowed in state Requested"
    ):
        transition(State.REQUESTED, Event.RECEIVED, None, "borrower")


def test_request_asks_first_lender_and_never_the_borrower() -> None:
    result = feed(None, msg(Event.REQUEST, "B", "REQ-1"), DIRECTORY)
    assert result.transaction and result.transaction.rota == ["L1", "L2"]
    assert deliveries(result) == [("L1", "Request", lid(1))]
    routing = records(result, "ill.routing")
    assert routing[0]["chosen"] == "L1"


def test_whole_loan_walks_the_table() -> None:
    txn = requested()
    walk = [
        (msg(Event.WILL_SUPPLY, "L1", lid(1)), State.WILL_SUPPLY, "B"),
        (msg(Event.LOANED, "L1", lid(1), item_id="I"), State.LOANED, "B"),
        (msg(Event.RECEIVED, "B", "REQ-1"), State.RECEIVED, "L1"),
        (msg(Event.RENEW, "B", "REQ-1"), State.RENEW_PENDING, "L1"),
        (msg(Event.RENEW_ANSWER, "L1", lid(1), answer=False), State.RECEIVED, "B"),
        (msg(Event.OVERDUE, "L1", lid(1)), State.OVERDUE, "B"),
        (msg(Event.RECALLED, "L1", lid(1)), State.RECALLED, "B"),
        (msg(Event.SHIPPED_RETURN, "B", "REQ-1"), State.RETURNED, "L1"),
        (msg(Event.LOAN_COMPLETED, "L1", lid(1)), State.LOAN_COMPLETED, "B"),
    ]
    for message, state, recipient in walk:
        result = feed(txn, message, DIRECTORY)
        assert result.transaction is not None
        txn = result.transaction
        assert txn.state is state, message.event
        sent = deliveries(result)
        assert [r for r, _e, _i in sent] == [recipient]
        # Each side sees its own request id.
        assert sent[0][2] == ("REQ-1" if recipient == "B" else lid(1))
    items = [
        o
        for o in feed(None, msg(Event.REQUEST, "B", "REQ-1"), DIRECTORY).outputs
        if o.topic == "ill.items"
    ]
    assert items == []


def test_unfilled_tries_next_lender_then_tells_borrower_with_last_reason() -> None:
    txn = requested()
    result = feed(txn, msg(Event.UNFILLED, "L1", lid(1), reason=Reason.from_code(1)), DIRECTORY)
    assert deliveries(result) == [("L2", "Request", lid(2)), ("B", "LenderNotification", "REQ-1")]
    txn = row(result)
    result = feed(txn, msg(Event.UNFILLED, "L2", lid(2), reason=Reason.from_code(5)), DIRECTORY)
    assert result.transaction and result.transaction.state is State.UNFILLED
    out = records(result, "ill.outbound.")
    assert out[0]["recipient"] == "B" and out[0]["message"]["reason"]["code"] == 5


def test_duplicate_is_applied_once_and_replays_the_same_outputs() -> None:
    txn = requested()
    message = msg(Event.LOANED, "L1", lid(1), item_id="I")
    first = feed(txn, message, DIRECTORY)
    again = feed(first.transaction, message, DIRECTORY)
    assert again.verdict and again.verdict.outcome is VerdictOutcome.DUPLICATE
    assert again.transaction == first.transaction
    commands = [[v["command_id"] for v in records(r, "ill.outbound.")] for r in (first, again)]
    assert commands[0] == commands[1] != []


def test_refusals_leave_the_transaction_unchanged_and_dead_letter() -> None:
    txn = requested()
    cases = [
        msg(Event.LOANED, "L2", lid(1), item_id="I"),  # not the current lender
        msg(Event.RECEIVED, "B", "REQ-1"),  # not yet shipped
        msg(Event.CANCEL, "L1", lid(1)),  # only the borrower cancels
    ]
    for message in cases:
        result = feed(txn, message, DIRECTORY)
        assert result.verdict and result.verdict.outcome is VerdictOutcome.REFUSED
        assert result.transaction == txn
        assert [o.topic for o in result.outputs] == ["ill.deadletter", "ill.events", "ill.replies"]


def test_answer_from_an_earlier_lender_is_refused() -> None:
    txn = step(requested(), msg(Event.UNFILLED, "L1", lid(1)))
    # A rota may list a lender twice (last resort); its answer to the first ask is stale.
    txn.attempts[-1].lender = "L1"
    result = feed(txn, msg(Event.LOANED, "L1", lid(1), item_id="I"), DIRECTORY)
    assert result.verdict and result.verdict.outcome is VerdictOutcome.REFUSED
    assert "earlier attempt" in (result.verdict.error or "")


def test_message_for_unknown_transaction_is_refused() -> None:
    result = feed(None, msg(Event.RECEIVED, "B", "REQ-9"), DIRECTORY)
    assert result.verdict and result.verdict.outcome is VerdictOutcome.REFUSED


def test_cancel_refused_returns_to_previous_state() -> None:
    txn = step(requested(), msg(Event.WILL_SUPPLY, "L1", lid(1)))
    txn = step(txn, msg(Event.CANCEL, "B", "REQ-1"))
    assert txn.state is State.CANCEL_PENDING
    txn = step(txn, msg(Event.CANCEL_REPLY, "L1", lid(1), answer=False))
    assert txn.state is State.WILL_SUPPLY


def test_unreachable_lender_is_skipped() -> None:
    txn = requested()
    # Retried on the lender's schedule until its unreachable_after (30 minutes) has passed.
    command = txn.pending[0].command
    failure = DeliveryResult(
        command_id=command.command_id,
        transaction_id=TXN,
        recipient="L1",
        event=Event.REQUEST,
        attempt=1,
        outcome=DeliveryOutcome.FAILED,
        detail="connection refused",
        at=T0,
    )
    txn = row(feed(txn, failure, DIRECTORY))
    assert txn is not None
    txn = row(feed(txn, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=6)), DIRECTORY))
    assert txn is not None
    failure = failure.model_copy(update={"try_number": 2, "at": T0 + timedelta(minutes=31)})
    result = feed(txn, failure, DIRECTORY)
    assert deliveries(result)[0] == ("L2", "Request", lid(2))
    assert result.transaction and "Unreachable" in (result.transaction.attempts[0].outcome or "")
    # Reported again (a redelivered result): applied once.
    again = feed(result.transaction, failure, DIRECTORY)
    assert again.transaction == result.transaction


def test_lender_roles_match_iso18626() -> None:
    assert SENDER[Event.REQUEST] is Role.BORROWER and SENDER[Event.LOANED] is Role.LENDER


def test_notification_changes_nothing_even_while_a_cancel_is_pending() -> None:
    txn = step(
        step(requested(), msg(Event.WILL_SUPPLY, "L1", lid(1))), msg(Event.CANCEL, "B", "REQ-1")
    )
    result = feed(txn, msg(Event.LENDER_NOTE, "L1", lid(1), note="looking for it"), DIRECTORY)
    assert result.transaction and result.transaction.state is State.CANCEL_PENDING
    assert deliveries(result) == [("B", "LenderNotification", "REQ-1")]
    txn = step(result.transaction, msg(Event.CANCEL_REPLY, "L1", lid(1), answer=False))
    assert txn.state is State.WILL_SUPPLY


def test_a_status_query_is_recorded_but_not_passed_on() -> None:
    txn = step(requested(), msg(Event.WILL_SUPPLY, "L1", lid(1)))
    result = feed(txn, msg(Event.STATUS_QUERY, "L1", lid(1), note="Status-Query"), DIRECTORY)
    assert result.verdict and result.verdict.outcome is VerdictOutcome.APPLIED
    assert result.verdict.state == State.WILL_SUPPLY and deliveries(result) == []


# -- correlation: what each party gave to recognise its messages, handed back to it only ----


def keys(protocol: str, request_id: str, **more: str) -> Correlation:
    return Correlation.model_validate({"protocol": protocol, "request_id": request_id, **more})


def delivered(result: Result) -> list[dict[str, Any]]:
    return records(result, "ill.outbound.")


def test_each_party_gets_back_only_the_correlation_it_gave() -> None:
    mine = keys("iso10161", "REQ-1", **{"transaction-group-qualifier": "G-7"})
    txn = step(None, msg(Event.REQUEST, "B", "REQ-1", correlation=mine))
    [request] = [p.command for p in txn.pending]
    # The lender hears of the request with nothing of the borrower's keys.
    assert request.recipient == "L1" and request.correlation is None
    assert request.message.correlation is None
    theirs = keys("ncip", lid(1), **{"ncip_request": "L1-99"})
    answered = feed(txn, msg(Event.WILL_SUPPLY, "L1", lid(1), correlation=theirs), DIRECTORY)
    [to_borrower] = delivered(answered)
    assert to_borrower["recipient"] == "B"
    assert to_borrower["correlation"] == mine.model_dump(mode="json")
    assert to_borrower["message"]["correlation"] is None
    cancelled = feed(row(answered), msg(Event.CANCEL, "B", "REQ-1"), DIRECTORY)
    [to_lender] = delivered(cancelled)
    assert to_lender["recipient"] == "L1"
    assert to_lender["correlation"] == theirs.model_dump(mode="json")


def test_a_lender_asked_again_starts_without_its_old_correlation() -> None:
    first = keys("x", lid(1))
    txn = step(requested(), msg(Event.WILL_SUPPLY, "L1", lid(1), correlation=first))
    again = RouteCommand(
        command_id="c-1", transaction_id=TXN, action=RouteAction.LENDER, lender="L1"
    )
    result = feed(txn, again, DIRECTORY, at=T0)
    [cancel, request, _note] = delivered(result)
    # The Cancel ends the first attempt, in its keys; the new request starts afresh.
    assert (cancel["recipient"], cancel["message"]["event"]) == ("L1", "Cancel")
    assert cancel["correlation"] == first.model_dump(mode="json")
    assert (request["recipient"], request["message"]["request_id"]) == ("L1", lid(2))
    assert request["correlation"] is None


def test_a_later_message_adds_keys_but_never_changes_the_first() -> None:
    txn = step(None, msg(Event.REQUEST, "B", "REQ-1", correlation=keys("p", "REQ-1", a="1")))
    txn = step(txn, msg(Event.WILL_SUPPLY, "L1", lid(1)))
    later = keys("p", "REQ-1", a="changed", b="2")
    txn = step(txn, msg(Event.CANCEL, "B", "REQ-1", correlation=later))
    assert txn.parties["B"].model_dump() == {
        "protocol": "p",
        "request_id": "REQ-1",
        "a": "1",
        "b": "2",
    }


def test_every_delivery_says_the_state_after_its_step() -> None:
    result = feed(requested(), msg(Event.UNFILLED, "L1", lid(1)), DIRECTORY)
    assert [(v["recipient"], v["state"]) for v in delivered(result)] == [
        ("L2", "Requested"),
        ("B", "Requested"),
    ]
    last = feed(row(result), msg(Event.UNFILLED, "L2", lid(2)), DIRECTORY)
    assert [(v["recipient"], v["state"]) for v in delivered(last)] == [("B", "Unfilled")]


def test_a_lender_renewing_unasked_moves_the_due_date_and_ends_an_overdue() -> None:
    """Issue 26: the BL renews loans on its own (RENEWED*date); that answer was refused as
    the hub had asked for no renewal."""
    txn = requested()
    first, later = T0 + timedelta(days=21), T0 + timedelta(days=42)
    txn = step(txn, msg(Event.LOANED, "L1", lid(1), item_id="I", due_date=first))
    txn = step(txn, msg(Event.RECEIVED, "B", "REQ-1"))
    txn = step(txn, msg(Event.OVERDUE, "L1", lid(1)))
    result = feed(
        txn, msg(Event.RENEW_ANSWER, "L1", lid(1), answer=True, due_date=later), DIRECTORY
    )
    assert result.transaction is not None
    assert result.transaction.state is State.RECEIVED
    assert result.transaction.due_date == later
    assert deliveries(result) == [("B", "RenewAnswer", "REQ-1")]


def _route_to(txn: Transaction, lender: str, ref: str = "c-9") -> Result:
    order = RouteCommand(
        command_id=ref, transaction_id=TXN, action=RouteAction.LENDER, lender=lender
    )
    return feed(txn, order, DIRECTORY, at=T0 + timedelta(minutes=10))


def _failed(txn: Transaction, index: int = 0) -> DeliveryResult:
    command = txn.pending[index].command
    return DeliveryResult(
        command_id=command.command_id,
        transaction_id=TXN,
        recipient=command.recipient,
        event=command.message.event,
        attempt=command.attempt,
        outcome=DeliveryOutcome.FAILED,
        detail="connection refused",
        at=T0,
    )


def test_a_reroute_takes_back_a_request_the_old_lender_never_received() -> None:
    txn = row(feed(requested(), _failed(requested()), DIRECTORY))
    [waiting] = txn.pending
    assert waiting.status.value == "retry"
    result = _route_to(txn, "L2")
    # Nothing for L1: not the request, not a Cancel for a request it never had.
    assert [d for d in deliveries(result) if d[0] != "B"] == [("L2", "Request", lid(2))]
    after = row(result)
    assert "L1" not in [p.recipient for p in after.pending]
    [event] = records(result, "ill.events")
    assert "never received the request" in event["detail"]
    # L1 answers again: nothing waits for it; a late result of its request is not retried.
    late = _failed(txn).model_copy(update={"try_number": 2})
    again = feed(after, late, DIRECTORY)
    assert deliveries(again) == []
    assert row(again).needs_attention is None
    assert "L1" not in [p.recipient for p in row(again).pending]


def test_a_reroute_while_the_request_is_in_flight_cancels_only_if_it_arrives() -> None:
    txn = requested()
    request_id = txn.pending[0].command.command_id
    result = _route_to(txn, "L2")
    cancel = next(v for v in records(result, "ill.outbound.") if v["recipient"] == "L1")
    assert cancel["message"]["event"] == "Cancel"
    assert cancel["withdraws"] == [request_id]


def test_a_reroute_after_the_request_arrived_cancels_it_once() -> None:
    txn = requested()
    command = txn.pending[0].command
    accepted = _failed(txn).model_copy(update={"outcome": DeliveryOutcome.SENT})
    txn = row(feed(txn, accepted, DIRECTORY))
    assert txn.pending == [] and command.command_id
    result = _route_to(txn, "L2")
    cancels = [v for v in records(result, "ill.outbound.") if v["recipient"] == "L1"]
    assert [(c["message"]["event"], c["withdraws"]) for c in cancels] == [("Cancel", [])]


@pytest.mark.parametrize(
    "order",
    [
        RouteCommand(command_id="c-1", transaction_id=TXN, action=RouteAction.LENDER, lender="LX"),
        Redeliver(command_id="c-2", transaction_id=TXN, partner="L2"),
    ],
)
def test_a_staff_typo_is_refused_to_the_staff_and_leaves_no_dead_letter(
    order: RouteCommand | Redeliver,
) -> None:
    result = feed(requested(), order, DIRECTORY, at=T0)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
    assert records(result, "ill.deadletter") == []
    [event] = records(result, "ill.events")
    assert event["kind"] == "refused"


def test_a_retry_with_a_higher_cost_reaches_the_lender_as_a_request_on_the_same_transaction() -> (
    None
):
    """ISO 18626 Retry: L1 could supply at a higher cost (RetryPossible), the borrower retries
    with a higher maximum cost; the lenders are asked again, L1 first, with a Request that
    carries the new cost, on the same transaction."""
    asked = {"bibliographic": {"title": "T"}, "max_cost": Money(amount="10", currency="EUR")}
    txn = step(None, msg(Event.REQUEST, "B", "REQ-1", **asked))
    reason = Reason(name="CostExceedsMaxCost")
    txn = step(txn, msg(Event.RETRY_POSSIBLE, "L1", lid(1), reason=reason))
    assert txn.attempt is not None and txn.attempt.lender == "L2"
    higher = {**asked, "max_cost": Money(amount="40", currency="EUR")}
    retry = msg(Event.RETRY, "B", "REQ-1", previous_request_id="REQ-1b", **higher)
    result = feed(txn, retry, DIRECTORY)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.APPLIED
    after = result.transaction
    assert after is not None and after.id == txn.id and after.state is State.REQUESTED
    # L2, which held the request, is withdrawn; L1 is asked again (a new round), and the
    # borrower hears that its request moved on.
    assert deliveries(result) == [
        ("L2", "Cancel", lid(2)),
        ("L1", "Request", lid(3)),
        ("B", "LenderNotification", "REQ-1"),
    ]
    [request] = [r["message"] for r in records(result, "ill.outbound.") if r["recipient"] == "L1"]
    assert request["event"] == "Request" and request["max_cost"] == {
        "amount": "40",
        "currency": "EUR",
    }
    assert request["previous_request_id"] is None  # the borrower's new id is not the lender's
    assert after.request is not None and after.request.request_id == "REQ-1"


def test_a_retry_of_an_ended_request_is_refused_saying_to_send_a_new_one() -> None:
    txn = requested()
    for n, lender in enumerate(("L1", "L2"), start=1):
        txn = step(txn, msg(Event.UNFILLED, lender, lid(n)))
    assert txn.state is State.UNFILLED
    result = feed(txn, msg(Event.RETRY, "B", "REQ-1"), DIRECTORY)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
    assert result.verdict.error is not None and "send a New request" in result.verdict.error
    # Nothing is asked again: the request stays ended.
    assert result.transaction is not None and result.transaction.state is State.UNFILLED
    assert records(result, "ill.outbound.") == []
    # A Retry naming no request the hub knows is refused too.
    unknown = feed(None, msg(Event.RETRY, "B", "REQ-9"), DIRECTORY)
    assert unknown.verdict is not None and unknown.verdict.outcome is VerdictOutcome.REFUSED
