"""Deliveries that fail: retried on the partner's schedule, parked, redelivered, in order, once.

The engine's part runs without Kafka on a controlled clock; the partner queues run on asyncio
with jobs that hang until released; nothing here waits on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.core.directory import Directory
from connectors.core.model import Event, Message, lender_request_id, transaction_id
from connectors.core.records import DeliveryOutcome, DeliveryResult, Redeliver, Tick, VerdictOutcome
from hub.domain.transaction import Result, Sending, Transaction
from hub.runtime.partner_queues import PartnerQueues
from tests.engine_steps import feed, records, row

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TXN = transaction_id("B", "REQ-1")


def directory(**extra: dict[str, object]) -> Directory:
    return Directory.model_validate(
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
                    **extra.get(s, {}),
                }
                for s in ("B", "L1", "L2")
            ],
            "rotas": [{"name": "r", "members": ["B", "L1", "L2"]}],
            "default_rota": "r",
        }
    )


D = directory()


def msg(event: Event, sender: str, request_id: str, **fields: object) -> Message:
    return Message(event=event, sender=sender, request_id=request_id, transaction_id=TXN, **fields)


def sent(result: Result) -> list[tuple[str, str, int]]:
    return [
        (v["recipient"], v["message"]["event"], v["try_number"])
        for v in records(result, "ill.outbound.")
    ]


def report(
    txn: Transaction, recipient: str, outcome: DeliveryOutcome, at: datetime, **kw: Any
) -> DeliveryResult:
    """The outbound connector's result for the step to `recipient` now in flight."""
    pending = next(
        p for p in txn.pending if p.recipient == recipient and p.status is Sending.IN_FLIGHT
    )
    return DeliveryResult(
        command_id=pending.command.command_id,
        transaction_id=TXN,
        recipient=recipient,
        event=pending.command.message.event,
        attempt=pending.command.attempt,
        try_number=pending.failures + 1,
        outcome=outcome,
        detail=str(kw.pop("detail", "connection refused")),
        at=at,
        **kw,
    )


def shipped() -> Transaction:
    """Requested from L1, delivered, L1 shipped; the Loaned step to B is in flight."""
    txn = feed(None, msg(Event.REQUEST, "B", "REQ-1"), D).transaction
    assert txn is not None
    txn = feed(txn, report(txn, "L1", DeliveryOutcome.SENT, T0), D).transaction
    assert txn is not None
    lid = lender_request_id(TXN, 1)
    txn = feed(txn, msg(Event.LOANED, "L1", lid, item_id="I-1"), D).transaction
    assert txn is not None
    return txn


def test_a_failed_step_is_retried_on_schedule_and_later_steps_wait_behind_it() -> None:
    txn = shipped()
    failed = feed(txn, report(txn, "B", DeliveryOutcome.FAILED, T0), D)
    txn = row(failed)
    assert txn is not None and txn.pending[-1].status is Sending.RETRY
    assert txn.next_deadline == T0 + timedelta(minutes=5)
    # The lender's next word for the borrower waits: B must not get it before Loaned.
    note = feed(txn, msg(Event.LENDER_NOTE, "L1", lender_request_id(TXN, 1), note="n"), D)
    assert sent(note) == []
    txn = row(note)
    assert txn is not None
    early = feed(txn, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=4)), D)
    assert sent(early) == []
    due = feed(txn, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=5)), D)
    assert sent(due) == [("B", "Loaned", 2)]
    txn = row(due)
    assert txn is not None
    ok = feed(txn, report(txn, "B", DeliveryOutcome.SENT, T0 + timedelta(minutes=5)), D)
    assert sent(ok) == [("B", "LenderNotification", 1)]
    assert ok.transaction is not None and [p.status for p in ok.transaction.pending] == [
        Sending.IN_FLIGHT
    ]


def test_a_step_waiting_for_a_partner_that_changed_protocol_goes_in_the_new_one() -> None:
    txn = shipped()
    failed = row(feed(txn, report(txn, "B", DeliveryOutcome.FAILED, T0), D))
    assert failed is not None and failed.pending[-1].command.protocol == "ncip"
    # B moved to ISO 18626 (and the hub was restarted with the new directory) meanwhile: an
    # outbound agent runs only for protocols a partner speaks, so the retry must follow B.
    moved = directory(B={"protocol": "iso18626"})
    due = feed(failed, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=5)), moved)
    assert [(v["recipient"], v["try_number"]) for v in records(due, "ill.outbound.iso18626")] == [
        ("B", 2)
    ]
    assert records(due, "ill.outbound.ncip") == []


def test_after_the_schedule_a_step_is_parked_then_redelivered_on_demand_once() -> None:
    txn = shipped()
    at = T0
    for minutes in (5, 10):
        txn = row(feed(txn, report(txn, "B", DeliveryOutcome.FAILED, at), D))
        assert txn is not None
        at += timedelta(minutes=minutes)
        txn = row(feed(txn, Tick(transaction_id=TXN, at=at), D))
        assert txn is not None
    parked = feed(txn, report(txn, "B", DeliveryOutcome.FAILED, at), D).transaction
    assert parked is not None
    assert parked.pending[-1].status is Sending.PARKED
    assert "parked after 3 failed tries" in (parked.needs_attention or "")
    order = Redeliver(command_id="r-1", transaction_id=TXN, partner="B")
    again = feed(parked, order, D, at=at)
    assert sent(again) == [("B", "Loaned", 4)]
    assert again.verdict is not None and again.verdict.outcome is VerdictOutcome.APPLIED
    # The same command re-read (a replay) sends nothing new: the same command, same id.
    replayed = feed(again.transaction, order, D, at=at)
    ids = [[v["command_id"] for v in records(r, "ill.outbound.")] for r in (again, replayed)]
    assert ids[0] == ids[1] != []
    assert again.transaction is not None
    done = feed(again.transaction, report(again.transaction, "B", DeliveryOutcome.SENT, at), D)
    assert done.transaction is not None and done.transaction.pending == []
    assert done.transaction.needs_attention is None


def test_a_parked_step_is_tried_again_on_its_own_every_parked_interval() -> None:
    txn = shipped()
    quick = directory(B={"retry_minutes": []})
    parked = feed(txn, report(txn, "B", DeliveryOutcome.FAILED, T0), quick).transaction
    assert parked is not None and parked.pending[-1].status is Sending.PARKED
    probe = feed(parked, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=60)), quick)
    assert sent(probe) == [("B", "Loaned", 2)]


def test_a_request_its_lender_cannot_take_within_unreachable_after_goes_to_the_next() -> None:
    txn = feed(None, msg(Event.REQUEST, "B", "REQ-1"), D).transaction
    assert txn is not None
    txn = feed(txn, report(txn, "L1", DeliveryOutcome.FAILED, T0), D).transaction
    assert txn is not None and txn.state.value == "Requested"
    txn = feed(txn, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=5)), D).transaction
    assert txn is not None
    # The retry hangs; by the next tick the lender has had its 30 minutes.
    later = feed(txn, Tick(transaction_id=TXN, at=T0 + timedelta(minutes=31)), D)
    assert ("L2", "Request", 1) in sent(later)
    assert later.transaction is not None
    assert "Unreachable" in (later.transaction.attempts[0].outcome or "")


def test_a_request_that_cannot_be_rendered_goes_to_the_next_lender_at_once() -> None:
    txn = feed(None, msg(Event.REQUEST, "B", "REQ-1"), D).transaction
    assert txn is not None
    refused = report(txn, "L1", DeliveryOutcome.FAILED, T0, detail="cannot be written")
    refused.retryable = False
    result = feed(txn, refused, D)
    assert ("L2", "Request", 1) in sent(result)


def test_a_step_to_another_partner_is_not_held_by_a_failing_one() -> None:
    txn = shipped()
    txn = row(feed(txn, report(txn, "B", DeliveryOutcome.FAILED, T0), D))
    assert txn is not None
    # B is failing; the borrower's "received" still goes to L1 at once.
    received = feed(txn, msg(Event.RECEIVED, "B", "REQ-1"), D)
    assert sent(received) == [("L1", "Received", 1)]


async def test_a_hung_partner_delays_no_other_partner_and_one_transaction_stays_in_order() -> None:
    queues = PartnerQueues(per_partner=2, total=10)
    hang = asyncio.Event()
    order: list[str] = []

    def job(
        name: str, gate: asyncio.Event | None = None, accepted: bool = True
    ) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            if gate is not None:
                await gate.wait()
            order.append(name)
            return accepted

        return run

    second = asyncio.Event()
    await queues.submit("t1", "SLOW", job("t1-slow-1", hang))
    await queues.submit("t1", "FAST", job("t1-fast-after-slow", None))
    await queues.submit("t2", "FAST", job("t2-fast", None))
    await queues.submit("t3", "SLOW", job("t3-slow", hang))
    await queues.submit("t4", "SLOW", job("t4-slow-waits-for-a-place", second))
    # t2 needs nothing from the hung partner: done while SLOW still hangs.
    while "t2-fast" not in order:
        await asyncio.sleep(0)
    assert order == ["t2-fast"]
    hang.set()
    second.set()
    await queues.drain()
    assert order.index("t1-slow-1") < order.index("t1-fast-after-slow")
    assert sorted(order) == sorted(
        ["t1-slow-1", "t1-fast-after-slow", "t2-fast", "t3-slow", "t4-slow-waits-for-a-place"]
    )


async def test_a_failed_step_holds_back_the_next_to_that_partner_until_its_retry() -> None:
    queues = PartnerQueues(per_partner=4, total=10)

    async def fails() -> bool:
        return False

    await queues.submit("t1", "B", fails)
    await queues.drain()
    assert queues.is_held("t1", "B") and not queues.is_held("t1", "L1")
    queues.release("t1", "B")
    assert not queues.is_held("t1", "B")


async def test_a_job_holding_its_own_place_frees_it_after_the_call_not_after_its_writes() -> None:
    queues = PartnerQueues(per_partner=1, total=10)
    written = asyncio.Event()  # the first job's records after its call: held up
    calls: list[str] = []

    def job(name: str, after: asyncio.Event | None) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            async with queues.place("B"):
                calls.append(name)
            if after is not None:
                await after.wait()
            return True

        return run

    await queues.submit("t1", "B", job("t1", written), own_place=True)
    await queues.submit("t2", "B", job("t2", None), own_place=True)
    await queues.submit("t1", "B", job("t1-next", None), own_place=True)
    while "t2" not in calls:  # its call is made while t1's writes are still under way
        await asyncio.sleep(0)
    assert calls == ["t1", "t2"]  # t1's next step waits for all of t1's first one
    written.set()
    await queues.drain()
    assert calls == ["t1", "t2", "t1-next"]
