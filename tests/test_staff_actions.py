"""Staff actions through the engine (`StaffCommand`, `RouteCommand` next): what each partner
is sent, what is refused and why, and that who asked and why is on ill.events. The table
test (tests/test_table.py) walks every row; these are the rules around the rows."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.core.records import RouteAction, StaffAction, StaffCommand, VerdictOutcome
from hub.domain.engine import apply
from hub.domain.lifecycle import State
from hub.domain.transaction import Result
from tests.test_table import T0, TXN, D, deliveries, reach, route


def command(action: StaffAction, text: str = "", to: str | None = None) -> StaffCommand:
    return StaffCommand(
        command_id=f"staff-{action.value}-{text}-{to}",
        transaction_id=TXN,
        action=action,
        text=text,
        to=to,  # type: ignore[arg-type]
        by="console:olive",
    )


def events(result: Result) -> list[dict[str, Any]]:
    return [o.value for o in result.outputs if o.topic == "ill.events" and o.value]


def refused(state: State, order: StaffCommand) -> str:
    loan = reach(state)
    result = apply(loan.txn, order, T0, directory=D)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
    assert result.transaction == loan.txn  # nothing changed
    assert not [o for o in result.outputs if o.topic == "ill.deadletter"]  # no dead letter
    return result.verdict.error or ""


def test_a_message_to_the_lender_goes_under_the_lenders_request_id() -> None:
    loan = reach(State.LOANED)
    attempt = loan.row.attempt
    assert attempt is not None
    result = apply(loan.txn, command(StaffAction.MESSAGE, "please ship", "lender"), T0, directory=D)
    assert deliveries(result) == [("L1", "BorrowerNotification")]
    [sent] = [o.value for o in result.outputs if o.topic.startswith("ill.outbound.")]
    assert sent["message"]["request_id"] == attempt.request_id
    assert "please ship" in sent["message"]["note"] and "console:olive" in sent["message"]["note"]
    [line] = events(result)
    assert line["kind"] == "staff" and line["sender"] == "console:olive"
    assert line["detail"] == "message to L1: please ship"
    assert result.transaction is not None and result.transaction.state is State.LOANED


def test_a_note_tells_nobody_and_is_not_a_step_of_the_loan() -> None:
    loan = reach(State.REQUESTED)
    result = apply(loan.txn, command(StaffAction.NOTE, "phoned L1"), T0, directory=D)
    assert deliveries(result) == []
    [line] = events(result)
    assert line["kind"] == "staff" and line["detail"] == "note by console:olive: phoned L1"
    assert result.transaction is not None
    assert result.transaction.history == loan.row.history  # no progress for "stuck"


def test_a_closed_loan_keeps_who_and_why() -> None:
    loan = reach(State.OVERDUE)
    order = command(StaffAction.CLOSE, "returned outside the system")
    result = apply(loan.txn, order, T0, directory=D)
    assert deliveries(result) == []
    [line] = events(result)
    assert (line["from_state"], line["to_state"]) == ("Overdue", "LoanCompleted")
    assert line["detail"] == "closed by staff (console:olive: returned outside the system)"


def test_a_cancel_before_the_lender_got_the_request_sends_it_nothing() -> None:
    loan = reach(State.REQUESTED)
    result = apply(loan.txn, command(StaffAction.CANCEL, "patron left"), T0, directory=D)
    # The Request to L1 is still in flight: its Cancel goes only if the Request gets through.
    assert deliveries(result) == [("L1", "Cancel"), ("B", "CancelReply")]
    [cancel] = [
        o.value
        for o in result.outputs
        if o.topic.startswith("ill.outbound.") and o.value and o.value["recipient"] == "L1"
    ]
    assert cancel["withdraws"], "conditional on the request having been sent"
    [line] = events(result)
    assert "cancelled by staff (console:olive: patron left)" in line["detail"]


@pytest.mark.parametrize(
    ("state", "order", "why"),
    [
        (State.LOANED, command(StaffAction.CANCEL), "once the item is out, close the loan"),
        (State.REQUESTED, command(StaffAction.CLOSE, "x"), "cancel the request instead"),
        (State.LOCATING, command(StaffAction.MESSAGE, "x", "lender"), "no lender holds"),
        (State.CANCELLED, command(StaffAction.MESSAGE, "x", "borrower"), "nobody to tell"),
        (State.REQUESTED, command(StaffAction.NOTE, "  "), "needs its text"),
        (State.REQUESTED, command(StaffAction.MESSAGE, "x"), "borrower or the lender"),
    ],
)
def test_staff_actions_the_state_does_not_allow_are_refused_with_what_to_do(
    state: State, order: StaffCommand, why: str
) -> None:
    assert why in refused(state, order)


def test_the_next_lender_needs_one_holding_the_request() -> None:
    loan = reach(State.LOCATING)
    result = apply(loan.txn, route(RouteAction.NEXT), T0, directory=D)
    assert result.verdict is not None and result.verdict.outcome is VerdictOutcome.REFUSED
    assert "no lender holds it yet" in (result.verdict.error or "")
