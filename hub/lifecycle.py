"""The transaction lifecycle as one transition table.

Everything that decides whether a step of a loan is legal lives here, as data: for each state,
the events it accepts, the state they lead to and what the hub does about them. The table does
not know protocols. `hub.transactions` interprets it; tests walk it row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.core.model import Event


class State(StrEnum):
    NEW = "New"
    LOCATING = "Locating"  # the lenders' catalogues are being searched
    REQUESTED = "Requested"  # a lender has been asked and has not answered
    WILL_SUPPLY = "WillSupply"
    LOANED = "Loaned"  # shipped by the lender, not yet received
    RECEIVED = "Received"
    RENEW_PENDING = "RenewPending"
    CANCEL_PENDING = "CancelPending"
    RECALLED = "Recalled"
    OVERDUE = "Overdue"
    RETURNED = "Returned"  # shipped back by the borrower
    LOAN_COMPLETED = "LoanCompleted"
    COPY_COMPLETED = "CopyCompleted"
    CANCELLED = "Cancelled"
    UNFILLED = "Unfilled"  # every lender of the rota said no
    EXPIRED = "Expired"  # the borrower's need-before date passed before a lender supplied


TERMINAL = frozenset(
    {State.LOAN_COMPLETED, State.COPY_COMPLETED, State.CANCELLED, State.UNFILLED, State.EXPIRED}
)
# States in which the request is still looking for a lender (routing may be changed).
ROUTABLE = frozenset({State.LOCATING, State.REQUESTED, State.WILL_SUPPLY})


class Effect(StrEnum):
    START = "start"  # build the rota and ask the first lender
    FORWARD = "forward"  # pass the step on to the other party
    NEXT_LENDER = "next_lender"  # close this lender's attempt, ask the next (or tell Unfilled)
    ANSWER = "answer"  # no lender holds the request yet: the hub answers the borrower itself
    NONE = "none"  # recorded and answered; nothing is passed on (a status query)


class Previous(StrEnum):
    """Marker: go back to the state before the pending cancel or renew."""

    STATE = "previous"


@dataclass(frozen=True)
class Transition:
    target: State | Previous
    effect: Effect


# (state, event, answer) -> transition. `answer` is the yes/no of cancel replies and renew
# answers and None for every other event.
_ROWS: list[tuple[State, Event, bool | None, State | Previous, Effect]] = [
    (State.NEW, Event.REQUEST, None, State.LOCATING, Effect.START),
    (State.LOCATING, Event.CANCEL, None, State.CANCELLED, Effect.ANSWER),
    # The lender answers.
    (State.REQUESTED, Event.WILL_SUPPLY, None, State.WILL_SUPPLY, Effect.FORWARD),
    (State.REQUESTED, Event.LOANED, None, State.LOANED, Effect.FORWARD),
    (State.REQUESTED, Event.COPY_COMPLETED, None, State.COPY_COMPLETED, Effect.FORWARD),
    (State.REQUESTED, Event.UNFILLED, None, State.REQUESTED, Effect.NEXT_LENDER),
    (State.REQUESTED, Event.EXPIRED, None, State.REQUESTED, Effect.NEXT_LENDER),
    (State.REQUESTED, Event.CANCEL, None, State.CANCEL_PENDING, Effect.FORWARD),
    (State.WILL_SUPPLY, Event.LOANED, None, State.LOANED, Effect.FORWARD),
    (State.WILL_SUPPLY, Event.COPY_COMPLETED, None, State.COPY_COMPLETED, Effect.FORWARD),
    (State.WILL_SUPPLY, Event.UNFILLED, None, State.REQUESTED, Effect.NEXT_LENDER),
    (State.WILL_SUPPLY, Event.EXPIRED, None, State.REQUESTED, Effect.NEXT_LENDER),
    (State.WILL_SUPPLY, Event.CANCEL, None, State.CANCEL_PENDING, Effect.FORWARD),
    # Cancellation.
    (State.CANCEL_PENDING, Event.CANCEL_REPLY, True, State.CANCELLED, Effect.FORWARD),
    (State.CANCEL_PENDING, Event.CANCEL_REPLY, False, Previous.STATE, Effect.FORWARD),
    # A lender that shipped before it saw the cancel: the loan goes on.
    (State.CANCEL_PENDING, Event.LOANED, None, State.LOANED, Effect.FORWARD),
    (State.CANCEL_PENDING, Event.UNFILLED, None, State.CANCELLED, Effect.FORWARD),
    # The loan.
    (State.LOANED, Event.RECEIVED, None, State.RECEIVED, Effect.FORWARD),
    (State.LOANED, Event.RECALLED, None, State.RECALLED, Effect.FORWARD),
    (State.LOANED, Event.OVERDUE, None, State.OVERDUE, Effect.FORWARD),
    (State.RECEIVED, Event.RENEW, None, State.RENEW_PENDING, Effect.FORWARD),
    (State.RECEIVED, Event.SHIPPED_RETURN, None, State.RETURNED, Effect.FORWARD),
    (State.RECEIVED, Event.RECALLED, None, State.RECALLED, Effect.FORWARD),
    (State.RECEIVED, Event.OVERDUE, None, State.OVERDUE, Effect.FORWARD),
    (State.RECEIVED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, Effect.FORWARD),
    (State.RENEW_PENDING, Event.RENEW_ANSWER, True, State.RECEIVED, Effect.FORWARD),
    (State.RENEW_PENDING, Event.RENEW_ANSWER, False, Previous.STATE, Effect.FORWARD),
    (State.RENEW_PENDING, Event.RECALLED, None, State.RECALLED, Effect.FORWARD),
    (State.RENEW_PENDING, Event.SHIPPED_RETURN, None, State.RETURNED, Effect.FORWARD),
    (State.OVERDUE, Event.RENEW, None, State.RENEW_PENDING, Effect.FORWARD),
    (State.OVERDUE, Event.SHIPPED_RETURN, None, State.RETURNED, Effect.FORWARD),
    (State.OVERDUE, Event.RECALLED, None, State.RECALLED, Effect.FORWARD),
    (State.OVERDUE, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, Effect.FORWARD),
    (State.RECALLED, Event.SHIPPED_RETURN, None, State.RETURNED, Effect.FORWARD),
    (State.RECALLED, Event.OVERDUE, None, State.OVERDUE, Effect.FORWARD),
    (State.RECALLED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, Effect.FORWARD),
    (State.RETURNED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, Effect.FORWARD),
]

# Notifications are relayed in every open state after the request and change nothing.
_ROWS += [
    (state, note, None, state, Effect.FORWARD)
    for state in State
    if state not in TERMINAL and state not in (State.NEW, State.LOCATING)
    for note in (Event.LENDER_NOTE, Event.BORROWER_NOTE)
]

# Evidence with its own event; the table decides what it means.
_OPEN = [s for s in State if s not in TERMINAL and s not in (State.NEW,)]
_ROWS += [(state, Event.STATUS_QUERY, None, state, Effect.NONE) for state in _OPEN]
_ROWS += [
    (state, event, None, State.REQUESTED, Effect.NEXT_LENDER)
    for state in (State.REQUESTED, State.WILL_SUPPLY)
    for event in (Event.RETRY_POSSIBLE,)
]
_ROWS += [
    (state, Event.CONDITIONAL, None, state, Effect.FORWARD)
    for state in (State.REQUESTED, State.WILL_SUPPLY)
]
_ROWS += [
    (state, event, None, state, Effect.FORWARD)
    for state in _OPEN
    if state is not State.LOCATING
    for event in (Event.LOST, Event.DAMAGED)
]

TRANSITIONS: dict[tuple[State, Event, bool | None], Transition] = {
    (state, event, answer): Transition(target, effect)
    for state, event, answer, target, effect in _ROWS
}

# Events whose table key includes the yes/no answer.
ANSWERED = frozenset({Event.CANCEL_REPLY, Event.RENEW_ANSWER})


class IllegalTransition(Exception):
    """An event that the current state does not accept; names event, sender side and state."""

    def __init__(self, event: Event, side: str, state: State, detail: str = "") -> None:
        self.event, self.side, self.state = event, side, state
        text = f"{event.value} from the {side} is not allowed in state {state.value}"
        super().__init__(f"{text}: {detail}" if detail else text)


def transition(state: State, event: Event, answer: bool | None, side: str) -> Transition:
    key_answer = (bool(answer) if answer is not None else False) if event in ANSWERED else None
    try:
        return TRANSITIONS[(state, event, key_answer)]
    except KeyError:
        raise IllegalTransition(event, side, state) from None


def accepted_events(state: State) -> list[Event]:
    return sorted({event for (s, event, _a) in TRANSITIONS if s is state})
