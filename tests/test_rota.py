"""Rota selection, load counting, timers and staff routing in the engine, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.directory import Directory, Rota
from connectors.core.holdings import Holding, HoldingsResult
from connectors.core.model import Bibliographic, Event, Message, Reason, ServiceType, transaction_id
from connectors.core.records import Located, RouteAction, RouteCommand, Tick, VerdictOutcome
from hub.domain.lifecycle import State
from hub.domain.load import LoadBook, LoadFigures
from hub.domain.rota import rank
from hub.domain.transaction import Result, Transaction
from tests.engine_steps import feed, records

LENDERS = ["L1", "L2", "L3", "L4"]
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def directory(**thresholds: dict[str, int]) -> Directory:
    partners = [
        {
            "symbol": s,
            "name": s,
            "protocol": "ncip",
            "endpoint": f"http://127.0.0.1:1/{s}",
            "thresholds": thresholds.get(s, {}),
            "delivery_time_offset_days": 3 if s == "B" else 0,
            **(
                {"catalogue": {"kind": "z3950", "address": "127.0.0.1:1"}}
                if s in ("L1", "L2", "L3")
                else {}
            ),
        }
        for s in ["B", *LENDERS]
    ]
    return Directory.model_validate(
        {
            "consortium": "T",
            "partners": partners,
            "rotas": [{"name": "r", "members": ["B", *LENDERS]}],
            "default_rota": "r",
        }
    )


class Book(LoadBook):
    """A load book filled by hand: `open` lender -> number of requests from borrower X."""

    def __init__(self, counts: dict[str, int] | None = None, borrower: str = "X") -> None:
        super().__init__()
        for lender, count in (counts or {}).items():
            for i in range(count):
                self.apply(f"{lender}|t{i}", {"borrower": borrower})


def request(request_id: str = "R1", **fields: object) -> Message:
    fields.setdefault("bibliographic", Bibliographic(title="T", isbn="9780262033848"))
    return Message(
        event=Event.REQUEST,
        sender="B",
        request_id=request_id,
        transaction_id=transaction_id("B", request_id),
        **fields,
    )


def held(*status: Holding) -> list[HoldingsResult]:
    return [
        HoldingsResult(lender=lender, status=s)
        for lender, s in zip(["L1", "L2", "L3"], status, strict=False)
    ]


def outbound(result: Result) -> list[tuple[str, str]]:
    return [(v["recipient"], v["message"]["event"]) for v in records(result, "ill.outbound.")]


def located(
    txn: Transaction | None,
    results: list[HoldingsResult],
    d: Directory,
    book: LoadBook | None = None,
) -> Result:
    assert txn is not None
    assert txn.locate_id is not None
    control = Located(locate_id=txn.locate_id, transaction_id=txn.id, results=results)
    return feed(txn, control, d, book, at=T0)


# -- ranking -------------------------------------------------------------------------------


def test_request_with_catalogues_waits_for_the_holdings_check() -> None:
    d = directory()
    result = feed(None, request(), d)
    txn = result.transaction
    assert txn and txn.state is State.LOCATING and not outbound(result)
    locate = records(result, "ill.locate")
    assert locate[0]["lenders"] == ["L1", "L2", "L3"]  # L4 has no catalogue; never B
    assert locate[0]["terms"] == [["isbn", "9780262033848"]]


def test_lender_without_holdings_is_skipped_and_reason_recorded() -> None:
    d = directory()
    txn = feed(None, request(), d).transaction
    result = located(txn, held(Holding.NOT_HELD, Holding.HELD, Holding.UNKNOWN), d)
    assert outbound(result) == [("L2", "Request")]
    decision = records(result, "ill.routing")[0]
    assert decision["chosen"] == "L2"
    # held first, then the failed catalogue and the unchecked one, in rota order
    assert [c["lender"] for c in decision["candidates"] if c["rank"]] == ["L2", "L3", "L4"]
    assert {"lender": "L1", "reason": "catalogue: not held ()"} in decision["skipped"]


def test_stale_or_repeated_locate_results_change_nothing() -> None:
    d = directory()
    txn = feed(None, request(), d).transaction
    assert txn is not None
    first = located(txn, held(Holding.HELD, Holding.HELD, Holding.HELD), d)
    again = feed(
        first.transaction,
        Located(locate_id=txn.locate_id or "", transaction_id=txn.id, results=[]),
        d,
        at=T0,
    )
    assert again.transaction == first.transaction
    assert outbound(again) == outbound(first)  # a replay, not a second request


def test_overloaded_lender_ranked_last_and_lender_at_limit_rejected_on_its_behalf() -> None:
    d = directory(L1={"overload": 2}, L2={"max_open_incoming": 1})
    book = Book({"L1": 2, "L2": 1})
    txn = feed(None, request(), d).transaction
    result = located(txn, held(Holding.HELD, Holding.HELD, Holding.NOT_HELD), d, book)
    after = result.transaction
    assert after is not None
    # L2 ranks first (L1 overloaded) but is at its limit: rejected for it, L4 asked
    assert after.attempts[0].lender == "L2" and after.attempts[0].automatic
    assert after.attempts[0].reason and after.attempts[0].reason.code == 20
    assert outbound(result) == [("L4", "Request")]
    assert after.rota == ["L2", "L4", "L1"]
    events = records(result, "ill.events")
    assert any(e["kind"] == "automatic" and e["sender"] == "L2" for e in events)
    decision = records(result, "ill.routing")[0]
    by = {c["lender"]: c for c in decision["candidates"]}
    assert by["L1"]["overloaded"] == "2 open, threshold 2"
    assert by["L2"]["load"] == {"total": 1, "from_borrower": 0}


def test_overload_from_this_borrower_counts_only_its_requests() -> None:
    d = directory(L1={"overload_from_borrower": 1})
    assert rank(d.rotas[0], LENDERS, "B", None, {}, Book({"L1": 3}, "X"), d)[0].lender == "L1"
    ranked = rank(d.rotas[0], LENDERS, "B", None, {}, Book({"L1": 1}, "B"), d)
    assert [c.lender for c in ranked] == ["L2", "L3", "L4", "L1"]


def test_unordered_rota_ranks_by_load_and_shelf() -> None:
    d = directory(L1={"overload": 10}, L2={"overload": 10}, L3={"overload": 10})
    rota = Rota(name="u", ordered=False, members=LENDERS, last_resort=["L1"])
    ranked = rank(rota, LENDERS, "B", None, {}, Book({"L2": 5, "L3": 1, "L4": 2}), d)
    # load ratio: L3 1/10, L2 5/10, L4 (no threshold) 2 open; L1 is the last resort
    assert [c.lender for c in ranked] == ["L3", "L2", "L4", "L1"]


def test_service_not_offered_is_skipped() -> None:
    d = directory()
    d.partners[1].services = ["loan"]
    ranked = rank(d.rotas[0], LENDERS, "B", ServiceType.COPY, {}, Book(), d)
    assert ranked[-1].lender == "L1" and ranked[-1].skip == "does not offer copy"


figures = st.dictionaries(st.sampled_from(LENDERS), st.integers(0, 6))
statuses = st.dictionaries(st.sampled_from(LENDERS), st.sampled_from(list(Holding)))


@given(
    counts=figures, found=statuses, ordered=st.booleans(), last=st.sets(st.sampled_from(LENDERS))
)
@settings(max_examples=200, deadline=None)
def test_rota_order_properties(counts, found, ordered, last) -> None:
    d = directory(L1={"overload": 3}, L2={"overload_from_borrower": 2}, L3={"overload": 1})
    rota = Rota(name="p", ordered=ordered, members=["B", *LENDERS], last_resort=sorted(last))
    holdings = {x: HoldingsResult(lender=x, status=s) for x, s in found.items()}
    book = Book(counts, borrower="B")
    first = rank(rota, ["B", *LENDERS], "B", None, holdings, book, d)
    again = rank(rota, ["B", *LENDERS], "B", None, holdings, book, d)
    assert first == again  # same inputs, same order
    assert "B" not in [c.lender for c in first]  # never lends to itself
    ranked = [c for c in first if c.rank]
    assert all(c.holdings is not Holding.NOT_HELD for c in ranked)
    assert all(c.skip for c in first if c.holdings is Holding.NOT_HELD)
    keys = [
        (c.last_resort, c.overloaded is not None, c.holdings is not Holding.HELD) for c in ranked
    ]
    assert keys == sorted(keys)  # members, then not overloaded, then confirmed holdings first


# -- load counting -------------------------------------------------------------------------


ops = st.lists(
    st.tuples(st.sampled_from(LENDERS), st.integers(0, 5), st.booleans(), st.sampled_from("BX")),
    max_size=60,
)


@given(ops)
def test_load_book_counts_open_sets(operations) -> None:
    book, model = LoadBook(), {}
    for lender, txn, is_open, borrower in operations:
        key = f"{lender}|t{txn}"
        value = {"borrower": borrower} if is_open else None
        book.apply(key, value)
        book.apply(key, value)  # a record read twice counts once
        if is_open:
            model[key] = borrower
        else:
            model.pop(key, None)
    for lender in LENDERS:
        mine = {k: b for k, b in model.items() if k.startswith(lender + "|")}
        assert book.figures(lender, "B") == LoadFigures(
            total=len(mine), from_borrower=sum(1 for b in mine.values() if b == "B")
        )


steps = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["unfilled", "ship", "close", "cancel"])),
    max_size=25,
)


@given(steps)
@settings(max_examples=150, deadline=None)
def test_engine_load_records_match_open_requests(actions) -> None:
    """Whatever happens to a handful of requests, the ill.load records the engine writes
    leave exactly the open requests counted: never negative, never a closed one."""
    d = directory()
    book = LoadBook()
    txns: dict[int, Transaction] = {}

    def run(result: Result) -> None:
        for output in result.outputs:
            if output.topic == "ill.load":
                book.apply(output.key, output.value)
        if result.transaction is not None:
            txns[n] = result.transaction

    for n, action in actions:
        txn = txns.get(n)
        if txn is None:
            result = feed(None, request(f"R{n}", bibliographic=None), d, book, at=T0)
            run(result)
            continue
        lender = txn.attempt.lender if txn.attempt else ""
        rid = txn.attempt.request_id if txn.attempt else ""
        if action == "unfilled":
            m = Message(
                event=Event.UNFILLED,
                sender=lender,
                request_id=rid,
                transaction_id=txn.id,
                reason=Reason.from_code(1),
            )
        elif action == "ship":
            m = Message(
                event=Event.LOANED,
                sender=lender,
                request_id=rid,
                transaction_id=txn.id,
                item_id=f"i{n}",
            )
        elif action == "close":
            m = Message(
                event=Event.LOAN_COMPLETED, sender=lender, request_id=rid, transaction_id=txn.id
            )
        else:
            m = Message(event=Event.CANCEL, sender="B", request_id=f"R{n}", transaction_id=txn.id)
        run(feed(txn, m, d, book, at=T0))
    for lender in LENDERS:
        expected = sum(1 for t in txns.values() if t.open_with == lender)
        assert book.figures(lender, "B").total == expected >= 0


# -- timers and staff routing ---------------------------------------------------------------


def asked(d: Directory, **fields: Any) -> Transaction:
    txn = feed(None, request(bibliographic=None, **fields), d, at=T0).transaction
    assert txn and txn.state is State.REQUESTED and txn.attempt and txn.attempt.lender == "L1"
    return txn


def shipment(txn: Transaction, **fields: object) -> Message:
    """L1, the first lender asked, ships item I1."""
    first = txn.attempts[0].request_id
    return Message(
        event=Event.LOANED,
        sender="L1",
        request_id=first,
        transaction_id=txn.id,
        item_id="I1",
        **fields,
    )


def test_lender_that_does_not_answer_in_time_is_replaced() -> None:
    d = directory()
    txn = asked(d)
    assert txn.next_deadline == T0 + timedelta(days=5)
    early = feed(txn, Tick(transaction_id=txn.id, at=T0 + timedelta(days=4)), d)
    assert early.outputs == [] and early.transaction == txn
    late = feed(txn, Tick(transaction_id=txn.id, at=T0 + timedelta(days=5, hours=1)), d)
    assert outbound(late) == [("L1", "Cancel"), ("L2", "Request"), ("B", "LenderNotification")]
    after = late.transaction
    assert after and after.attempts[0].outcome and after.attempts[0].outcome.startswith("Expired")
    load = [(o.key, o.value) for o in late.outputs if o.topic == "ill.load"]
    assert load == [
        (f"L1|{txn.id}", None),
        (f"L2|{txn.id}", {"borrower": "B", "lender": "L2", "transaction_id": txn.id}),
    ]


def test_need_before_date_expires_the_request_and_tells_the_borrower() -> None:
    d = directory()
    txn = asked(d, need_before=T0 + timedelta(days=2))
    assert txn.next_deadline == T0 + timedelta(days=2)
    result = feed(txn, Tick(transaction_id=txn.id, at=T0 + timedelta(days=3)), d)
    assert outbound(result) == [("L1", "Cancel"), ("B", "Expired")]
    assert result.transaction and result.transaction.state is State.EXPIRED
    assert result.transaction.next_deadline is None


def test_due_date_reaches_borrower_minus_offset_and_overdue_is_sent() -> None:
    d = directory()
    txn = asked(d)
    due = T0 + timedelta(days=30)
    shipped = feed(txn, shipment(txn, due_date=due), d)
    to_borrower = records(shipped, "ill.outbound.ncip")[0]
    assert to_borrower["message"]["due_date"].startswith(
        (due - timedelta(days=3)).date().isoformat()
    )
    loaned = shipped.transaction
    assert loaned and loaned.due_date == due and loaned.next_deadline == due
    overdue = feed(loaned, Tick(transaction_id=txn.id, at=due + timedelta(hours=1)), d)
    assert outbound(overdue) == [("B", "Overdue")]
    assert overdue.transaction and overdue.transaction.state is State.OVERDUE


def command(txn: Transaction, action: RouteAction, lender: str | None = None) -> RouteCommand:
    return RouteCommand(
        command_id=f"c-{action}-{lender}", transaction_id=txn.id, action=action, lender=lender
    )


def test_staff_sends_the_request_to_a_named_lender() -> None:
    d = directory()
    txn = asked(d)
    result = feed(txn, command(txn, RouteAction.LENDER, "L3"), d, at=T0)
    assert result.verdict and result.verdict.outcome is VerdictOutcome.APPLIED
    assert outbound(result) == [("L1", "Cancel"), ("L3", "Request"), ("B", "LenderNotification")]
    decision = records(result, "ill.routing")[0]
    assert decision["chosen"] == "L3" and decision["reason"].startswith("chosen by staff")


def test_staff_skip_and_restart() -> None:
    d = directory()
    txn = asked(d)
    skipped = feed(txn, command(txn, RouteAction.SKIP, "L1"), d, at=T0).transaction
    assert skipped and skipped.attempt and skipped.attempt.lender == "L2"
    restarted = feed(skipped, command(skipped, RouteAction.RESTART), d, at=T0).transaction
    # a new round: L1 stays skipped by staff, L2 is asked again under a new attempt
    assert restarted and restarted.attempt and restarted.attempt.lender == "L2"
    assert restarted.attempt.number == 3


def test_staff_routing_refused_once_shipped_and_for_unknown_lenders() -> None:
    d = directory()
    txn = asked(d)
    bad = feed(txn, command(txn, RouteAction.LENDER, "NOPE"), d, at=T0)
    assert bad.verdict and bad.verdict.outcome is VerdictOutcome.REFUSED
    assert "unknown partner NOPE" in (bad.verdict.error or "")
    shipped = feed(txn, shipment(txn), d).transaction
    refused = feed(shipped, command(txn, RouteAction.SKIP, "L1"), d, at=T0)
    assert refused.verdict and refused.verdict.outcome is VerdictOutcome.REFUSED
    assert "not possible in state Loaned" in (refused.verdict.error or "")
    assert refused.transaction == shipped
    assert not any(o.topic == "ill.deadletter" for o in [*bad.outputs, *refused.outputs])
