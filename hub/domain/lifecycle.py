"""The transaction lifecycle as one transition table.

Everything that decides what a step of a loan does lives here, as data: for each state, the
inputs it accepts (a partner's event, or one of the hub's own: a catalogue search answered,
a deadline passed, a delivery accepted or failed, a staff command), the state they lead to
and the effects the hub carries out. The table does not know protocols or records.
`hub.domain.engine` interprets it: it runs a row's effects, then moves to the row's target. Effects
never assign a state; when what happens next depends on the outcome (is there another lender
to ask?), an effect emits a follow-up input that goes through this table in turn (a rota with
nobody left to ask emits RotaExhausted, whose row moves to Unfilled and tells the borrower).
Tests walk the table row by row (tests/test_table.py).
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
# States in which a lender holds the request and has not shipped (it may be withdrawn).
WITH_LENDER = frozenset({State.REQUESTED, State.WILL_SUPPLY})
# States in which the item is out: shipped by the lender and not yet checked in.
ITEM_OUT = frozenset(
    {
        State.LOANED,
        State.RECEIVED,
        State.RENEW_PENDING,
        State.RECALLED,
        State.OVERDUE,
        State.RETURNED,
    }
)
OPEN = frozenset(s for s in State if s not in TERMINAL and s is not State.NEW)


class Hub(StrEnum):
    """The hub's own inputs: what its clock, its catalogue search, its outbound connectors
    and its staff say. Each is a column of the table like a partner's event."""

    # The catalogue search answered (or there was nothing to search): rank and ask.
    LOCATED = "Located"
    # No lender of the rota is left to ask (emitted by the next_lender effect).
    ROTA_EXHAUSTED = "RotaExhausted"
    # The clock: the lender's answer time, the need-before date, the due date passed.
    LENDER_TIMED_OUT = "LenderTimedOut"
    NEED_BEFORE_PASSED = "NeedBeforePassed"
    DUE_DATE_PASSED = "DueDatePassed"
    # The lender could not be reached with the request within its unreachable_after.
    LENDER_UNREACHABLE = "LenderUnreachable"
    # Outbound connectors: a delivery was accepted, or failed; a retry's time came.
    DELIVERED = "Delivered"
    DELIVERY_FAILED = "DeliveryFailed"
    # The lender's protocol has no form for the borrower's Cancel or Renew (the British
    # Library takes neither by mail): the borrower must hear no, not silence.
    NOT_CARRIED = "NotCarried"
    RETRY_DUE = "RetryDue"
    # Staff (`rshub route`, `rshub redeliver`) and the hub when a partner answers again.
    ROUTE_LENDER = "RouteLender"
    ROUTE_SKIP = "RouteSkip"
    ROUTE_RESTART = "RouteRestart"
    REDELIVER = "Redeliver"
    # The lender holding the request was skipped by staff (emitted by the skip effect).
    LENDER_SKIPPED = "LenderSkipped"
    # Silent partners (SILENT_ENDS below): a loan whose end neither party can report is
    # closed by the hub's clock.
    UNREPORTED_END = "UnreportedEnd"
    # Staff: move on from the lender holding the request (it may be asked again later).
    ROUTE_NEXT = "RouteNext"
    # Staff acting on a request beyond its routing (StaffCommand; rows in _STAFF below).
    STAFF_CANCEL = "StaffCancel"
    STAFF_CLOSE = "StaffClose"
    STAFF_NOTE = "StaffNote"
    STAFF_MESSAGE = "StaffMessage"


Input = Event | Hub


class Effect(StrEnum):
    """What the hub does for a row, in the row's order (`hub.domain.effects` holds the code)."""

    TAKE_REQUEST = "take_request"  # keep the borrower's request and its need-before date
    START = "start"  # choose the rota; search the catalogues, or emit Located at once
    NEW_ROUND = "new_round"  # staff restart: lenders asked so far may be asked again
    RANK = "rank"  # rank the rota with the holdings found
    FORWARD = "forward"  # pass the step on to the other party
    ATTENTION = "attention"  # staff must settle this (a lost item)
    CLOSE_ATTEMPT = "close_attempt"  # the current lender's attempt ends, with its reason
    WITHDRAW = "withdraw"  # take the request back from the lender holding it (a Cancel)
    DROP_DELIVERIES = "drop_deliveries"  # give up delivering to an unreachable lender
    NEXT_LENDER = "next_lender"  # ask the next lender, or emit RotaExhausted
    ASK_NAMED = "ask_named"  # ask the lender staff named
    NEVER_ASK = "never_ask"  # staff: never ask this lender for this request
    # If the skipped lender holds the request: take it back and emit LenderSkipped.
    SKIP_HOLDER = "skip_holder"
    ANSWER_CANCEL = "answer_cancel"  # no lender holds the request: the hub says yes itself
    TELL_UNFILLED = "tell_unfilled"  # tell the borrower no lender could supply
    TELL_EXPIRED = "tell_expired"  # tell the borrower its need-before date passed
    TELL_OVERDUE = "tell_overdue"  # tell the borrower the due date passed
    RELEASE = "release"  # a delivery was accepted: the next one to that partner goes
    # The borrower's Cancel or Renew cannot reach its lender: answer no on the lender's behalf.
    REFUSE_FOR_LENDER = "refuse_for_lender"
    RETRY_LATER = "retry_later"  # schedule a failed delivery again, or park it
    # The same, but a request its lender cannot be reached for in time emits LenderUnreachable.
    RETRY_OR_MOVE_ON = "retry_or_move_on"
    RESEND_DUE = "resend_due"  # send the failed deliveries whose retry time came
    RESEND = "resend"  # send the waiting deliveries now (staff, or a partner back)
    NONE = "none"  # recorded and answered; nothing is passed on (a status query)
    # Staff cancelled the request: the borrower hears it is cancelled (a CancelReply, yes).
    TELL_CANCELLED = "tell_cancelled"
    # Staff's message to the borrower or the lender, as a notification in its protocol.
    TELL_PARTNER = "tell_partner"


# Follow-up inputs each effect may emit; the exhaustiveness test checks every one of them
# has a row in the state the emitting row leads to.
EMITS: dict[Effect, frozenset[Hub]] = {
    Effect.START: frozenset({Hub.LOCATED}),
    Effect.NEXT_LENDER: frozenset({Hub.ROTA_EXHAUSTED}),
    Effect.SKIP_HOLDER: frozenset({Hub.LENDER_SKIPPED}),
    Effect.RETRY_OR_MOVE_ON: frozenset({Hub.LENDER_UNREACHABLE}),
}


class Previous(StrEnum):
    """Marker: go back to the state before the pending cancel or renew."""

    STATE = "previous"


# Entering these states remembers the state before, for Previous.STATE.
REMEMBERS_PREVIOUS = frozenset({State.CANCEL_PENDING, State.RENEW_PENDING})


@dataclass(frozen=True)
class Transition:
    target: State | Previous
    effects: tuple[Effect, ...]


Row = tuple[State, Input, bool | None, State | Previous, tuple[Effect, ...]]

FORWARD = (Effect.FORWARD,)
NEXT = (Effect.CLOSE_ATTEMPT, Effect.NEXT_LENDER)

# (state, input, answer) -> transition. `answer` is the yes/no of cancel replies and renew
# answers and None for every other input.
_PARTNERS: list[Row] = [
    (State.NEW, Event.REQUEST, None, State.LOCATING, (Effect.TAKE_REQUEST, Effect.START)),
    (State.LOCATING, Event.CANCEL, None, State.CANCELLED, (Effect.ANSWER_CANCEL,)),
    # The lender answers.
    (State.REQUESTED, Event.WILL_SUPPLY, None, State.WILL_SUPPLY, FORWARD),
    (State.REQUESTED, Event.LOANED, None, State.LOANED, FORWARD),
    (State.REQUESTED, Event.COPY_COMPLETED, None, State.COPY_COMPLETED, FORWARD),
    (State.REQUESTED, Event.UNFILLED, None, State.REQUESTED, NEXT),
    (State.REQUESTED, Event.EXPIRED, None, State.REQUESTED, NEXT),
    (State.REQUESTED, Event.CANCEL, None, State.CANCEL_PENDING, FORWARD),
    (State.WILL_SUPPLY, Event.LOANED, None, State.LOANED, FORWARD),
    (State.WILL_SUPPLY, Event.COPY_COMPLETED, None, State.COPY_COMPLETED, FORWARD),
    (State.WILL_SUPPLY, Event.UNFILLED, None, State.REQUESTED, NEXT),
    (State.WILL_SUPPLY, Event.EXPIRED, None, State.REQUESTED, NEXT),
    (State.WILL_SUPPLY, Event.CANCEL, None, State.CANCEL_PENDING, FORWARD),
    # Cancellation.
    (State.CANCEL_PENDING, Event.CANCEL_REPLY, True, State.CANCELLED, FORWARD),
    (State.CANCEL_PENDING, Event.CANCEL_REPLY, False, Previous.STATE, FORWARD),
    # A lender that shipped before it saw the cancel: the loan goes on.
    (State.CANCEL_PENDING, Event.LOANED, None, State.LOANED, FORWARD),
    (State.CANCEL_PENDING, Event.UNFILLED, None, State.CANCELLED, FORWARD),
    # The loan.
    (State.LOANED, Event.RECEIVED, None, State.RECEIVED, FORWARD),
    (State.LOANED, Event.RECALLED, None, State.RECALLED, FORWARD),
    (State.LOANED, Event.OVERDUE, None, State.OVERDUE, FORWARD),
    (State.RECEIVED, Event.RENEW, None, State.RENEW_PENDING, FORWARD),
    (State.RECEIVED, Event.SHIPPED_RETURN, None, State.RETURNED, FORWARD),
    (State.RECEIVED, Event.RECALLED, None, State.RECALLED, FORWARD),
    (State.RECEIVED, Event.OVERDUE, None, State.OVERDUE, FORWARD),
    (State.RECEIVED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, FORWARD),
    (State.RENEW_PENDING, Event.RENEW_ANSWER, True, State.RECEIVED, FORWARD),
    (State.RENEW_PENDING, Event.RENEW_ANSWER, False, Previous.STATE, FORWARD),
    (State.RENEW_PENDING, Event.RECALLED, None, State.RECALLED, FORWARD),
    # A lender that renews unasked (the British Library's automatic renewal, RENEWED*date):
    # the new due date is the news; an overdue loan is no longer overdue.
    (State.LOANED, Event.RENEW_ANSWER, True, State.LOANED, FORWARD),
    (State.RECEIVED, Event.RENEW_ANSWER, True, State.RECEIVED, FORWARD),
    (State.OVERDUE, Event.RENEW_ANSWER, True, State.RECEIVED, FORWARD),
    (State.RENEW_PENDING, Event.SHIPPED_RETURN, None, State.RETURNED, FORWARD),
    (State.OVERDUE, Event.RENEW, None, State.RENEW_PENDING, FORWARD),
    (State.OVERDUE, Event.SHIPPED_RETURN, None, State.RETURNED, FORWARD),
    (State.OVERDUE, Event.RECALLED, None, State.RECALLED, FORWARD),
    (State.OVERDUE, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, FORWARD),
    (State.RECALLED, Event.SHIPPED_RETURN, None, State.RETURNED, FORWARD),
    (State.RECALLED, Event.OVERDUE, None, State.OVERDUE, FORWARD),
    (State.RECALLED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, FORWARD),
    (State.RETURNED, Event.LOAN_COMPLETED, None, State.LOAN_COMPLETED, FORWARD),
]

# Notifications are relayed in every open state after the request and change nothing.
_PARTNERS += [
    (state, note, None, state, FORWARD)
    for state in sorted(OPEN - {State.LOCATING})
    for note in (Event.LENDER_NOTE, Event.BORROWER_NOTE)
]

# Evidence connectors report as it is; here is what it means.
# A lender that could supply on other terms later has not supplied: the next lender is asked
# (as for Unfilled); the borrower hears only that the request moved on.
_PARTNERS += [(s, Event.RETRY_POSSIBLE, None, State.REQUESTED, NEXT) for s in sorted(WITH_LENDER)]
# Conditions are the borrower's to accept or refuse (with its next message); nothing changes.
_PARTNERS += [(s, Event.CONDITIONAL, None, s, FORWARD) for s in sorted(WITH_LENDER)]
# A lost or damaged item is news for the other party; the loan's state stays (it is not
# returned or completed by saying so). A lost item needs staff to settle the charges.
_PARTNERS += [
    (s, Event.LOST, None, s, (Effect.FORWARD, Effect.ATTENTION)) for s in sorted(ITEM_OUT)
]
_PARTNERS += [(s, Event.DAMAGED, None, s, FORWARD) for s in sorted(ITEM_OUT)]
# The borrower retries with changed data (ISO 18626 requestType Retry, a higher maximum cost
# after a lender's RetryPossible, say), while the request still looks for a lender: whoever
# holds it is withdrawn, the request as now given is kept, and the rota starts again, every
# lender askable again (as staff's RouteRestart). Unfilled and Expired stay terminal: in
# ISO 18626 a Retry follows RetryPossible, never the final Unfilled; an ended request is
# refused with RETRY_ENDED (the borrower sends a New request).
_PARTNERS += [
    (
        s,
        Event.RETRY,
        None,
        State.LOCATING,
        (Effect.WITHDRAW, Effect.TAKE_REQUEST, Effect.NEW_ROUND, Effect.START),
    )
    for s in sorted(ROUTABLE)
]
# A question for the hub itself: the verdict (the state) is the answer.
_PARTNERS += [(s, Event.STATUS_QUERY, None, s, (Effect.NONE,)) for s in sorted(OPEN)]

_HUB: list[Row] = [
    # Finding a lender. A Located that comes when the search is no longer waited for
    # (cancelled, restarted, routed by staff) is stale and ignored (OUT_OF_TURN).
    (State.LOCATING, Hub.LOCATED, None, State.REQUESTED, (Effect.RANK, Effect.NEXT_LENDER)),
    # Every row that asks the next lender leads to Requested, where this one waits.
    (State.REQUESTED, Hub.ROTA_EXHAUSTED, None, State.UNFILLED, (Effect.TELL_UNFILLED,)),
    (
        State.REQUESTED,
        Hub.LENDER_TIMED_OUT,
        None,
        State.REQUESTED,
        (Effect.WITHDRAW, Effect.CLOSE_ATTEMPT, Effect.NEXT_LENDER),
    ),
    (
        State.REQUESTED,
        Hub.LENDER_UNREACHABLE,
        None,
        State.REQUESTED,
        (Effect.DROP_DELIVERIES, Effect.CLOSE_ATTEMPT, Effect.NEXT_LENDER),
    ),
    *[
        (s, Hub.LENDER_SKIPPED, None, State.REQUESTED, (Effect.NEXT_LENDER,))
        for s in sorted(WITH_LENDER)
    ],
    # The clock.
    *[
        (s, Hub.NEED_BEFORE_PASSED, None, State.EXPIRED, (Effect.WITHDRAW, Effect.TELL_EXPIRED))
        for s in sorted(ROUTABLE)
    ],
    *[
        (s, Hub.DUE_DATE_PASSED, None, State.OVERDUE, (Effect.TELL_OVERDUE,))
        for s in (State.LOANED, State.RECEIVED, State.RECALLED)
    ],
    # Staff routing, while the request looks for a lender.
    *[
        (s, Hub.ROUTE_LENDER, None, State.REQUESTED, (Effect.WITHDRAW, Effect.ASK_NAMED))
        for s in sorted(ROUTABLE)
    ],
    (State.LOCATING, Hub.ROUTE_SKIP, None, State.LOCATING, (Effect.NEVER_ASK,)),
    *[
        (s, Hub.ROUTE_SKIP, None, s, (Effect.NEVER_ASK, Effect.SKIP_HOLDER))
        for s in sorted(WITH_LENDER)
    ],
    *[
        (
            s,
            Hub.ROUTE_RESTART,
            None,
            State.LOCATING,
            (Effect.WITHDRAW, Effect.NEW_ROUND, Effect.START),
        )
        for s in sorted(ROUTABLE)
    ],
    # Deliveries, in every state: a step owed to a partner is delivered even after the
    # transaction ended (the Unfilled that ends it, for one).
    *[(s, Hub.DELIVERED, None, s, (Effect.RELEASE,)) for s in State if s is not State.NEW],
    # A Cancel or Renew the lender's protocol cannot carry: no, and back to where it was.
    *[
        (s, Hub.NOT_CARRIED, None, Previous.STATE, (Effect.RELEASE, Effect.REFUSE_FOR_LENDER))
        for s in (State.CANCEL_PENDING, State.RENEW_PENDING)
    ],
    # Once the request moved on (the lender answered first), it is only a finished delivery.
    *[
        (s, Hub.NOT_CARRIED, None, s, (Effect.RELEASE,))
        for s in State
        if s not in (State.NEW, State.CANCEL_PENDING, State.RENEW_PENDING)
    ],
    *[
        (s, Hub.DELIVERY_FAILED, None, s, (Effect.RETRY_LATER,))
        for s in State
        if s not in (State.NEW, State.REQUESTED)
    ],
    # The request to the lender now asked: given up on once the lender is past reaching.
    (State.REQUESTED, Hub.DELIVERY_FAILED, None, State.REQUESTED, (Effect.RETRY_OR_MOVE_ON,)),
    *[(s, Hub.RETRY_DUE, None, s, (Effect.RESEND_DUE,)) for s in State if s is not State.NEW],
    *[(s, Hub.REDELIVER, None, s, (Effect.RESEND,)) for s in State if s is not State.NEW],
]

# -- staff actions -------------------------------------------------------------------------
# What staff may do to a request beyond its routing (StaffCommand on ill.control: the console,
# the API, the command line). Each is recorded with the staff member's name and text.
_STAFF: list[Row] = [
    # Ask the next lender: the one holding the request is withdrawn (one Cancel, if it may
    # have it) and the rota goes on, as when a lender does not answer in time.
    *[
        (
            s,
            Hub.ROUTE_NEXT,
            None,
            State.REQUESTED,
            (Effect.WITHDRAW, Effect.CLOSE_ATTEMPT, Effect.NEXT_LENDER),
        )
        for s in sorted(WITH_LENDER)
    ],
    # Cancel while the request looks for a lender: whoever holds it gets one Cancel in its
    # protocol (or nothing, if it never received the request), the borrower hears it is
    # cancelled. Once shipped, the item is out: staff close the loan instead.
    (State.LOCATING, Hub.STAFF_CANCEL, None, State.CANCELLED, (Effect.TELL_CANCELLED,)),
    *[
        (s, Hub.STAFF_CANCEL, None, State.CANCELLED, (Effect.WITHDRAW, Effect.TELL_CANCELLED))
        for s in sorted(WITH_LENDER)
    ],
    # A loan staff know is finished (returned outside the system, settled by phone): closed,
    # with the reason on the timeline. No partner is told: both already know.
    *[(s, Hub.STAFF_CLOSE, None, State.LOAN_COMPLETED, (Effect.NONE,)) for s in sorted(ITEM_OUT)],
    # A note for the timeline, in any state; nothing changes, nobody is told.
    *[(s, Hub.STAFF_NOTE, None, s, (Effect.NONE,)) for s in State if s is not State.NEW],
    # A message to a party of an open request (the engine checks the lender is there).
    *[(s, Hub.STAFF_MESSAGE, None, s, (Effect.TELL_PARTNER,)) for s in sorted(OPEN)],
]


def _table(rows: list[Row]) -> dict[tuple[State, Input, bool | None], Transition]:
    table: dict[tuple[State, Input, bool | None], Transition] = {}
    for state, given, answer, target, effects in rows:
        key = (state, given, answer)
        if key in table:
            raise ValueError(f"two rows for {state.value}, {given.value}, {answer}")
        table[key] = Transition(target, effects)
    return table


# Silent partners. A channel reports only some steps (each connector's `events_in`, given the
# engine by the directory's `reports`: an OpenURL borrower reports only its Request, an OpenURL
# or ILLiad lender nothing). A loan that waited for a step its party can never report would
# stay open for ever, so the other party's next step stands in for it. A row here applies
# only when the party that owes the step (`unreported`) cannot report it, and then it comes
# before the table's own row for the same state and input.
SilentRow = tuple[State, Event, Event, State, tuple[Effect, ...]]
_SILENT: list[SilentRow] = [
    # The borrower cannot report Received: the lender's check-in closes the loan.
    (State.LOANED, Event.LOAN_COMPLETED, Event.RECEIVED, State.LOAN_COMPLETED, FORWARD),
    # The lender cannot report Loaned: the borrower's receipt says it came.
    *[
        (s, Event.RECEIVED, Event.LOANED, State.RECEIVED, FORWARD)
        for s in (State.REQUESTED, State.WILL_SUPPLY)
    ],
    # The lender cannot report its check-in: the borrower's return leads to Returned as in
    # the table, and the clock closes the loan (SILENT_ENDS below), not the return itself:
    # the item is in the post, and a lender's demand for it (the BL's *FINAL DEMAND) must
    # still find the loan open.
]


def _silent_table(rows: list[SilentRow]) -> dict[tuple[State, Event], tuple[Event, Transition]]:
    table: dict[tuple[State, Event], tuple[Event, Transition]] = {}
    for state, given, unreported, target, effects in rows:
        if (state, given) in table:
            raise ValueError(f"two silent-partner rows for {state.value}, {given.value}")
        table[(state, given)] = (unreported, Transition(target, effects))
    return table


SILENT = _silent_table(_SILENT)


# -- Silent partners: loans whose end nobody can report ------------------------------------
# (Kept apart from the staff rows: this block is the silent-partner rule of issue 26.)
#
# Some pairs can never say that a loan ended: the lender cannot report its check-in and the
# borrower stops at its return (the BL and any borrower), or neither can report anything
# after the request or the lender's Loaned (an OpenURL patron borrowing from the BL, an
# OpenURL or ILLiad e-mail lender). Such a loan would stay open for ever, counted in the
# lender's load and in every open list. The hub closes it by the clock instead: the lender's
# `close_unreported_after_days` (directory) after the last step the pair can say, and lists
# it for staff until then (`needs_attention` says when it will close and why), so staff
# can close it sooner, or act when the item is not back. The close says so on the loan's
# timeline and tells neither party anything: nobody checked the item in.
# `hub.domain.deadlines` reads this table; the rows below are what the clock's input does.


class Since(StrEnum):
    """The last step a silent pair can say, which the closing clock counts from."""

    RETURN = "the borrower's return"
    DUE_DATE = "the due date"
    REQUEST = "the request to the lender"


# The clock counts from the due date where there is one (Since.DUE_DATE), else from the step
# that entered one of these states (a Loaned without a due date: from the Loaned).
ENTERED: dict[Since, frozenset[State]] = {
    Since.RETURN: frozenset({State.RETURNED}),
    Since.DUE_DATE: frozenset({State.LOANED}),
    Since.REQUEST: frozenset({State.REQUESTED, State.WILL_SUPPLY}),
}


@dataclass(frozen=True)
class SilentEnd:
    states: frozenset[State]
    lender_cannot: frozenset[Event]  # applies when the lender can report none of these
    borrower_cannot: frozenset[Event]  # ... and the borrower none of these
    since: Since
    why: str  # for the timeline and staff: {borrower} and {lender} name the parties
    # The clock's inputs the close stands in for while it is coming (they are not sent).
    instead_of: frozenset[Hub] = frozenset()


_CHECK_IN = frozenset({Event.LOAN_COMPLETED})
_ANY_RETURN = frozenset({Event.RECEIVED, Event.SHIPPED_RETURN})
SILENT_ENDS: list[SilentEnd] = [
    # The borrower shipped it back; the lender will never say it arrived.
    SilentEnd(
        frozenset({State.RETURNED}),
        _CHECK_IN,
        frozenset(),
        Since.RETURN,
        "{lender} cannot report its check-in",
    ),
    # The lender said Loaned (with its due date); neither party can say it went back.
    SilentEnd(
        frozenset(
            {State.LOANED, State.RECEIVED, State.RENEW_PENDING, State.OVERDUE, State.RECALLED}
        ),
        _CHECK_IN,
        frozenset({Event.SHIPPED_RETURN}),
        Since.DUE_DATE,
        "neither {borrower} can report its return nor {lender} its check-in",
    ),
    # The lender can report nothing after the request, the borrower neither receipt nor
    # return: the request handed over is the last the hub will learn. Here the lender's
    # answer time does not move the request on either (`instead_of`): the lender may well
    # have shipped, and asking a second one would order the item twice.
    SilentEnd(
        frozenset({State.REQUESTED, State.WILL_SUPPLY}),
        frozenset({Event.LOANED, Event.COPY_COMPLETED, Event.UNFILLED, Event.LOAN_COMPLETED}),
        _ANY_RETURN,
        Since.REQUEST,
        "neither {lender} nor {borrower} can report a step of it after the request",
        instead_of=frozenset({Hub.LENDER_TIMED_OUT}),
    ),
]


SILENT_END_STATES = frozenset(s for rule in SILENT_ENDS for s in rule.states)


def silent_end(
    state: State, lender_reports: frozenset[Event] | None, borrower_reports: frozenset[Event] | None
) -> SilentEnd | None:
    """The rule that closes a loan in `state` whose parties report only these steps (None:
    a channel not named in the directory's reports, taken to report every step)."""
    if state not in SILENT_END_STATES:
        return None
    return next(
        (
            rule
            for rule in SILENT_ENDS
            if state in rule.states
            and _cannot(rule.lender_cannot, lender_reports)
            and _cannot(rule.borrower_cannot, borrower_reports)
        ),
        None,
    )


def _cannot(steps: frozenset[Event], reports: frozenset[Event] | None) -> bool:
    """Whether a channel reporting `reports` can report none of `steps`."""
    if not steps:
        return True
    return reports is not None and not steps & reports


# A lender's demand for an item after the due date (the BL's `*FINAL DEMAND`, an ISO 18626
# Overdue): once the hub's clock has made the loan Overdue it is news for the borrower, not
# a step out of turn; after the borrower's return it means the item has not reached the
# lender, which staff must settle (and the clock does not close the loan over it).
_DEMANDS: list[Row] = [
    (State.OVERDUE, Event.OVERDUE, None, State.OVERDUE, FORWARD),
    (State.RETURNED, Event.OVERDUE, None, State.RETURNED, (Effect.FORWARD, Effect.ATTENTION)),
    # A lender that refuses a renewal nobody asked for (the BL's NO RENEW after its
    # "DUE*AUTOMATIC RENEWAL PENDING"): the due date stands, which is news for the borrower.
    *[
        (s, Event.RENEW_ANSWER, False, s, FORWARD)
        for s in (State.LOANED, State.RECEIVED, State.OVERDUE)
    ],
]

_HUB_SILENT: list[Row] = [
    (s, Hub.UNREPORTED_END, None, State.LOAN_COMPLETED, ()) for s in sorted(SILENT_END_STATES)
]

# The whole table, and the part keyed by partners' events.
TABLE = _table(_PARTNERS + _HUB + _DEMANDS + _HUB_SILENT + _STAFF)
TRANSITIONS: dict[tuple[State, Event, bool | None], Transition] = {
    (state, given, answer): rule
    for (state, given, answer), rule in TABLE.items()
    if isinstance(given, Event)
}


class OutOfTurn(StrEnum):
    """What the engine does with a hub input in a state that has no row for it."""

    REFUSE = "refuse"  # staff asked: they hear why (a verdict and a dead letter)
    IGNORE = "ignore"  # a result that came too late: nothing changes, nothing is written


# Partners' events with no row are refused (IllegalTransition, a dead letter, the verdict).
# The hub's own inputs: only those listed may come out of turn; any other without a row is a
# bug in the engine (the exhaustiveness test proves none is produced).
OUT_OF_TURN: dict[Hub, OutOfTurn] = {
    Hub.LOCATED: OutOfTurn.IGNORE,
    Hub.ROUTE_LENDER: OutOfTurn.REFUSE,
    Hub.ROUTE_SKIP: OutOfTurn.REFUSE,
    Hub.ROUTE_RESTART: OutOfTurn.REFUSE,
    Hub.ROUTE_NEXT: OutOfTurn.REFUSE,
    Hub.STAFF_CANCEL: OutOfTurn.REFUSE,
    Hub.STAFF_CLOSE: OutOfTurn.REFUSE,
    Hub.STAFF_MESSAGE: OutOfTurn.REFUSE,
}

# Inputs whose table key includes the yes/no answer.
ANSWERED = frozenset({Event.CANCEL_REPLY, Event.RENEW_ANSWER})


# Why an event is refused, beside the state, when the partner can do something about it.
RETRY_ENDED = (
    "a Retry changes a request that is still looking for a lender "
    f"({', '.join(sorted(s.value for s in ROUTABLE))}); for this one send a New request"
)
HINTS: dict[Input, str] = {Event.RETRY: RETRY_ENDED}


class IllegalTransition(Exception):
    """An input that the current state does not accept; names input, sender side and state."""

    def __init__(self, event: Input, side: str, state: State, detail: str = "") -> None:
        self.event, self.side, self.state = event, side, state
        text = f"{event.value} from the {side} is not allowed in state {state.value}"
        super().__init__(f"{text}: {detail}" if detail else text)


def transition(
    state: State,
    event: Input,
    answer: bool | None,
    side: str,
    unreported: frozenset[Event] = frozenset(),
) -> Transition:
    """The row for `event` in `state`. `unreported`: the steps the other party's channel
    cannot report (its silent-partner rows apply)."""
    if isinstance(event, Event) and (state, event) in SILENT:
        owed, rule = SILENT[(state, event)]
        if owed in unreported:
            return rule
    key_answer = (bool(answer) if answer is not None else False) if event in ANSWERED else None
    try:
        return TABLE[(state, event, key_answer)]
    except KeyError:
        raise IllegalTransition(event, side, state, HINTS.get(event, "")) from None


def accepts(state: State, given: Input) -> bool:
    return any((state, given, answer) in TABLE for answer in (None, True, False))


def accepted_events(state: State) -> list[Event]:
    return sorted({event for (s, event, _a) in TRANSITIONS if s is state})
