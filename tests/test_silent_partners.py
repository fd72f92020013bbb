"""Partners that cannot report some steps still finish their loans.

Each connector's `events_in` is the table of what its partners can report; the directory
hands it to the engine (`Directory.reports`), and the lifecycle's silent-partner rows
(`hub.domain.lifecycle.SILENT`) let the other party's next step stand in for one that can
never come. Here every pair of a borrower protocol and a lender protocol of this build walks
a loan that goes well, each party saying only what its channel can say, through `apply()`,
then lets the hub's clock run (a Tick at each deadline the loan waits for), and must end
LoanCompleted. Where neither party can report the loan's end, the clock closes it
(`SILENT_ENDS`), after listing it for staff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.core.directory import Directory
from connectors.core.model import Bibliographic, Event, Message, Role, transaction_id
from connectors.core.records import Tick, VerdictOutcome
from connectors.registry import CONNECTORS
from hub.domain.deadlines import CLOSING
from hub.domain.engine import apply
from hub.domain.lifecycle import SILENT, SILENT_ENDS, TERMINAL, State
from hub.domain.transaction import Transaction

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
REPORTS = CONNECTORS.reports
BORROWERS = sorted(name for name, said in REPORTS.items() if Event.REQUEST in said)
LENDERS = sorted(c.name for c in CONNECTORS if Event.REQUEST in c.codec.events_out)
# A loan that goes well, in order: who would say each step.
LOAN = [
    (Role.LENDER, Event.LOANED),
    (Role.BORROWER, Event.RECEIVED),
    (Role.BORROWER, Event.SHIPPED_RETURN),
    (Role.LENDER, Event.LOAN_COMPLETED),
]


def directory(borrower: str, lender: str, reports: dict[str, frozenset[Event]]) -> Directory:
    def partner(symbol: str, protocol: str, lends: bool) -> dict[str, object]:
        return {
            "symbol": symbol,
            "name": symbol,
            "protocol": protocol,
            "lends": lends,
            "endpoint": "http://127.0.0.1:1/x" if lends else None,
            "addresses": ["127.0.0.1"],
        }

    return Directory.model_validate(
        {
            "consortium": "T",
            "partners": [partner("B", borrower, False), partner("L", lender, True)],
            "rotas": [{"name": "r", "members": ["L"]}],
            "default_rota": "r",
            "reports": reports,
        }
    )


class Walk:
    def __init__(self, found: Directory) -> None:
        self.directory, self.txn, self.n = found, None, 0
        self.txn_id = transaction_id("B", "R-1")

    def says(self, event: Event, sender: str) -> VerdictOutcome:
        self.n += 1
        fields: dict[str, object] = {}
        if event is Event.REQUEST:
            fields["bibliographic"] = Bibliographic(title="T", isbn="9780262033848")
        if event is Event.LOANED:
            fields.update(item_id="I-1", due_date=T0 + timedelta(days=30))
        attempt = self.txn.attempt if isinstance(self.txn, Transaction) else None
        message = Message.model_validate(
            {
                "event": event,
                "sender": sender,
                "message_id": f"m-{self.n}",
                "request_id": attempt.request_id if sender == "L" and attempt else "R-1",
                "transaction_id": self.txn_id,
                "timestamp": T0,
                **fields,
            }
        )
        result = apply(self.txn, message, T0, directory=self.directory)
        assert result.verdict is not None
        self.txn = result.transaction
        return result.verdict.outcome

    @property
    def state(self) -> State:
        assert isinstance(self.txn, Transaction)
        return self.txn.state

    def clock(self) -> list[Transaction]:
        """The hub's clock runs on: a Tick at each deadline the loan waits for, in turn,
        until it waits for none. Returns the row after each Tick."""
        rows = []
        for _ in range(10):
            assert isinstance(self.txn, Transaction)
            deadline = self.txn.next_deadline
            if deadline is None or self.txn.state in TERMINAL:
                break
            tick = Tick(transaction_id=self.txn_id, at=deadline)
            self.txn = apply(self.txn, tick, deadline, directory=self.directory).transaction
            assert isinstance(self.txn, Transaction)
            rows.append(self.txn)
        return rows


def walk_loan(borrower: str, lender: str, reports: dict[str, frozenset[Event]]) -> Walk:
    walk = Walk(directory(borrower, lender, reports))
    assert walk.says(Event.REQUEST, "B") is VerdictOutcome.APPLIED
    assert walk.state is State.REQUESTED
    for role, event in LOAN:
        protocol = borrower if role is Role.BORROWER else lender
        if event in reports[protocol]:
            outcome = walk.says(event, "B" if role is Role.BORROWER else "L")
            assert outcome is VerdictOutcome.APPLIED, (event, walk.state)
    return walk


def _nobody_ends(borrower: str, lender: str) -> bool:
    """Neither party can report an end of the loan: the borrower neither receipt nor return,
    the lender not its check-in. Only the clock (SILENT_ENDS) or staff close such a loan."""
    said_b, said_l = REPORTS[borrower], REPORTS[lender]
    return not ({Event.RECEIVED, Event.SHIPPED_RETURN} & said_b) and (
        Event.LOAN_COMPLETED not in said_l
    )


PAIRS = [
    pytest.param(borrower, lender, id=f"{borrower}-{lender}")
    for borrower in BORROWERS
    for lender in LENDERS
]
NOBODY_ENDS = [p for p in PAIRS if _nobody_ends(*p.values)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("borrower", "lender"), PAIRS)
def test_a_loan_that_goes_well_ends_completed_with_every_pair(borrower: str, lender: str) -> None:
    walk = walk_loan(borrower, lender, REPORTS)
    walk.clock()
    assert walk.state is State.LOAN_COMPLETED, (borrower, lender)


def test_the_pairs_nobody_can_end_are_the_ones_the_issue_named() -> None:
    """An OpenURL or BL borrower with an OpenURL, ILLiad e-mail or BL lender (issue 26)."""
    assert sorted(p.id for p in NOBODY_ENDS) == [  # type: ignore[attr-defined]
        f"{b}-{lender}"
        for b in ("artemail", "openurl")
        for lender in ("artemail", "illiad-email", "openurl")
    ]


@pytest.mark.parametrize(("borrower", "lender"), NOBODY_ENDS)
def test_nobody_can_end_it_so_the_clock_closes_it_after_staff_were_told(
    borrower: str, lender: str
) -> None:
    """What staff rely on: until it closes, the loan is listed as needing attention with the
    date it will close and why; the close is on its timeline with the reason; nobody is told
    the item was checked in; the lender's answer time never sends the request to another
    lender (the silent one may have shipped)."""
    walk = walk_loan(borrower, lender, REPORTS)
    assert isinstance(walk.txn, Transaction)
    waiting = walk.txn
    note = waiting.needs_attention or ""
    assert note.startswith(CLOSING) and "L (" in note and "B (" in note, note
    closes_on = note.removeprefix(CLOSING)[:10]
    rows = walk.clock()
    closed = rows[-1]
    assert closed.state is State.LOAN_COMPLETED and closed.needs_attention is None
    assert closed.next_deadline is None and len(closed.attempts) == 1
    assert closed.open_with is None  # no longer counted in the lender's load
    # Closed on the day staff were told, not before.
    assert all(r.state is not State.LOAN_COMPLETED for r in rows[:-1])
    assert rows[-1] is closed and closed_at(walk, closed).date().isoformat() == closes_on
    for row in rows[:-1]:
        assert (row.needs_attention or "").startswith(CLOSING)


def closed_at(walk: Walk, closed: Transaction) -> datetime:
    """The time of the Tick that closed the loan (its last remembered input)."""
    ref = closed.seen[-1]
    assert ref.startswith("tick:")
    return datetime.fromisoformat(ref.removeprefix("tick:"))


def test_the_close_is_on_the_timeline_with_its_reason_and_tells_nobody() -> None:
    walk = walk_loan("openurl", "artemail", REPORTS)
    assert walk.state is State.LOANED
    due = T0 + timedelta(days=30)
    result = None
    for _ in range(5):
        assert isinstance(walk.txn, Transaction)
        at = walk.txn.next_deadline
        assert at is not None
        result = apply(
            walk.txn, Tick(transaction_id=walk.txn_id, at=at), at, directory=walk.directory
        )
        walk.txn = result.transaction
        if walk.state is State.LOAN_COMPLETED:
            break
    assert result is not None and at == due + timedelta(days=28)
    [line] = [o.value for o in result.outputs if o.topic == "ill.events" and o.value]
    assert (line["from_state"], line["to_state"]) == ("Overdue", "LoanCompleted")
    assert (
        "closed by the hub: neither B (openurl) can report its return nor L (artemail) its "
        "check-in; 28 days after the due date (2026-06-03)" in line["detail"]
    )
    assert not [o for o in result.outputs if o.topic.startswith("ill.outbound.")]


def test_a_lender_that_cannot_report_its_check_in_is_closed_after_the_return() -> None:
    """The BL: the borrower's return leads to Returned (the item is in the post; a final
    demand must find the loan open) and the lender's close_unreported_after_days later the
    hub closes it. A BL's renewal moves the due date, never the close after a return."""
    walk = walk_loan("iso18626", "artemail", REPORTS)
    assert walk.state is State.RETURNED
    assert isinstance(walk.txn, Transaction)
    assert walk.txn.next_deadline == T0 + timedelta(days=28)
    assert (
        "28 days after the borrower's return (2026-05-04): L (artemail) cannot report its "
        "check-in" in (walk.txn.needs_attention or "")
    )
    walk.clock()
    assert walk.state is State.LOAN_COMPLETED


def test_the_days_are_the_lenders_setting() -> None:
    found = directory("openurl", "openurl", REPORTS)
    lender = found.partner("L")
    assert lender is not None
    lender.close_unreported_after_days = 3
    walk = Walk(found)
    walk.says(Event.REQUEST, "B")
    assert isinstance(walk.txn, Transaction)
    # The lender's answer time (5 days) does not move the request on: the close comes first.
    assert walk.txn.next_deadline == T0 + timedelta(days=3)
    walk.clock()
    assert walk.state is State.LOAN_COMPLETED and len(walk.txn.attempts) == 1


def test_a_pair_that_can_report_the_end_is_never_closed_by_the_clock() -> None:
    walk = walk_loan("iso18626", "iso18626", REPORTS)
    assert walk.state is State.LOAN_COMPLETED
    told = Walk(directory("iso18626", "iso18626", REPORTS))
    told.says(Event.REQUEST, "B")
    told.says(Event.LOANED, "L")
    rows = told.clock()  # the due date passes: Overdue, and nothing closes it
    assert [r.state for r in rows] == [State.OVERDUE]
    assert told.state is State.OVERDUE and told.txn.needs_attention is None  # type: ignore[union-attr]


def test_a_loan_with_another_note_for_staff_waits_for_staff() -> None:
    """A lost item (or a lender's demand after the return) is for staff to settle: the clock
    neither replaces the note nor closes the loan over it (a closed loan leaves the lists)."""
    walk = walk_loan("openurl", "artemail", REPORTS)
    walk.says(Event.LOST, "L")
    assert isinstance(walk.txn, Transaction)
    assert (walk.txn.needs_attention or "").startswith("Lost reported by L")
    walk.clock()
    assert walk.state is State.OVERDUE
    assert walk.txn.next_deadline is None
    assert (walk.txn.needs_attention or "").startswith("Lost reported by L")


def test_every_silent_end_names_states_its_close_has_a_row_for() -> None:
    from hub.domain.lifecycle import Hub, accepts

    for rule in SILENT_ENDS:
        assert rule.states and not rule.states & TERMINAL
        assert all(accepts(s, Hub.UNREPORTED_END) for s in rule.states)


def test_an_openurl_borrower_reports_only_its_request() -> None:
    assert REPORTS["openurl"] == frozenset({Event.REQUEST})


def test_the_lenders_check_in_closes_a_loan_whose_borrower_cannot_report_receipt() -> None:
    """The reported bug: an OpenURL patron's loan was refused its check-in after Loaned."""
    walk = walk_loan("openurl", "ncip", REPORTS)
    assert walk.state is State.LOAN_COMPLETED
    # A borrower whose channel can report receipt must report it first.
    told = Walk(directory("iso18626", "ncip", REPORTS))
    told.says(Event.REQUEST, "B")
    told.says(Event.LOANED, "L")
    assert told.says(Event.LOAN_COMPLETED, "L") is VerdictOutcome.REFUSED
    assert told.state is State.LOANED


def test_a_directory_that_names_no_reports_keeps_the_plain_table() -> None:
    """Unit tests and tools that load a directory without the connectors' tables: every
    partner is taken to report every step, so no silent row applies."""
    walk = Walk(directory("openurl", "ncip", {}))
    walk.says(Event.REQUEST, "B")
    walk.says(Event.LOANED, "L")
    assert walk.says(Event.LOAN_COMPLETED, "L") is VerdictOutcome.REFUSED


@pytest.mark.parametrize(("state", "event"), sorted(SILENT, key=str))
def test_every_silent_row_applies_only_when_its_step_cannot_be_reported(
    state: State, event: Event
) -> None:
    owed, rule = SILENT[(state, event)]
    assert rule.target is not state
    sender = "B" if event in (Event.RECEIVED, Event.SHIPPED_RETURN) else "L"
    for reports, applies in (
        ({"iso18626": frozenset(Event) - {owed}}, True),
        ({"iso18626": frozenset(Event)}, False),
    ):
        walk = Walk(directory("iso18626", "iso18626", reports))
        walk.says(Event.REQUEST, "B")
        _into(walk, state)
        outcome = walk.says(event, sender)
        if applies:
            assert (outcome, walk.state) == (VerdictOutcome.APPLIED, rule.target)
        else:
            assert walk.state is not rule.target


INTO: dict[State, list[tuple[Event, str]]] = {
    State.REQUESTED: [],
    State.WILL_SUPPLY: [(Event.WILL_SUPPLY, "L")],
    State.LOANED: [(Event.LOANED, "L")],
    State.RECEIVED: [(Event.LOANED, "L"), (Event.RECEIVED, "B")],
    State.RENEW_PENDING: [(Event.LOANED, "L"), (Event.RECEIVED, "B"), (Event.RENEW, "B")],
    State.OVERDUE: [(Event.LOANED, "L"), (Event.OVERDUE, "L")],
    State.RECALLED: [(Event.LOANED, "L"), (Event.RECALLED, "L")],
}


def _into(walk: Walk, state: State) -> None:
    for event, sender in INTO[state]:
        assert walk.says(event, sender) is VerdictOutcome.APPLIED
    assert walk.state is state


INTO[State.RETURNED] = [*INTO[State.RECEIVED], (Event.SHIPPED_RETURN, "B")]


def _silent_end_cases() -> list[object]:
    return [
        pytest.param(state, rule, id=f"{state.value}-{rule.since.name}")
        for rule in SILENT_ENDS
        for state in sorted(rule.states)
    ]


@pytest.mark.parametrize(("state", "rule"), _silent_end_cases())
def test_every_silent_end_closes_its_states_only_when_nobody_can_report(
    state: State, rule: object
) -> None:
    """Each row of the clock's close (`Hub.UNREPORTED_END`), reached by real inputs with
    partners that cannot report what the rule names; with partners that can, no close."""
    assert isinstance(rule, type(SILENT_ENDS[0]))
    far = T0 + timedelta(days=400)
    for lender_lacks, borrower_lacks, closes in (
        (rule.lender_cannot, rule.borrower_cannot, True),
        (frozenset(), frozenset(), False),
    ):
        reports = {
            "iso18626": frozenset(Event) - borrower_lacks,
            "ncip": frozenset(Event) - lender_lacks,
        }
        walk = Walk(directory("iso18626", "ncip", reports))
        walk.says(Event.REQUEST, "B")
        _into(walk, state)
        result = apply(
            walk.txn, Tick(transaction_id=walk.txn_id, at=far), far, directory=walk.directory
        )
        assert result.transaction is not None
        assert (result.transaction.state is State.LOAN_COMPLETED) is closes, state


def test_the_bls_final_demand_after_the_return_is_for_staff_and_holds_the_close() -> None:
    """The BL demands an item the borrower says it sent back: the loan stays open, the
    borrower hears the demand, staff are told, and the clock does not close it."""
    walk = walk_loan("iso18626", "artemail", REPORTS)
    assert walk.state is State.RETURNED
    assert walk.says(Event.OVERDUE, "L") is VerdictOutcome.APPLIED
    assert walk.state is State.RETURNED
    assert isinstance(walk.txn, Transaction)
    assert (walk.txn.needs_attention or "").startswith("Overdue reported by L")
    assert walk.clock() == [] and walk.state is State.RETURNED


def test_a_demand_after_the_hubs_own_overdue_is_news_not_an_error() -> None:
    walk = Walk(directory("openurl", "artemail", REPORTS))
    walk.says(Event.REQUEST, "B")
    walk.says(Event.LOANED, "L")
    due = T0 + timedelta(days=30)
    walk.txn = apply(
        walk.txn, Tick(transaction_id=walk.txn_id, at=due), due, directory=walk.directory
    ).transaction
    assert walk.state is State.OVERDUE
    assert walk.says(Event.OVERDUE, "L") is VerdictOutcome.APPLIED  # *FINAL DEMAND
    assert walk.state is State.OVERDUE


def test_a_borrower_gone_from_the_directory_does_not_keep_a_bl_loan_open() -> None:
    """The close after the return asks nothing of the borrower's channel."""
    walk = walk_loan("iso18626", "artemail", REPORTS)
    assert walk.state is State.RETURNED
    walk.directory.partners = [p for p in walk.directory.partners if p.symbol != "B"]
    walk.clock()
    assert walk.state is State.LOAN_COMPLETED
