"""The transaction agent's pipeline, on a step log in memory (no broker): steps of one
transaction in order, an input acknowledged only once its step's records are durable (in
input order, whatever order the broker answers in), at most REPLAY_LIMIT steps of one
transaction in flight, a step too large for the broker dead-lettered with nothing else
written, and records the broker refuses fatal. The end-to-end tests stay the proof on Kafka."""

from __future__ import annotations

import asyncio
import json
from typing import NoReturn

import pytest

from connectors.core.model import Bibliographic, Event, Message, lender_request_id, transaction_id
from hub.domain.transaction import REPLAY_LIMIT
from hub.runtime.transaction_agent import TransactionAgent
from tests.steplog_memory import Followers, MemoryStepLog
from tests.test_lifecycle import DIRECTORY

LIMIT = 1_000_000  # about the broker's default largest record
SMALL_LIMIT = 10_000  # RSHUB_MAX_RECORD_BYTES's smallest value
A, B = transaction_id("B", "REQ-A"), transaction_id("B", "REQ-B")


class Exited(Exception):
    """What the stand-in for `fatal` raises instead of ending the process."""


def request(request_id: str, **fields: object) -> tuple[str, bytes]:
    txn = transaction_id("B", request_id)
    message = Message(
        event=Event.REQUEST, sender="B", request_id=request_id, transaction_id=txn, **fields
    )
    return txn, message.model_dump_json().encode()


def note(txn: str, text: str) -> bytes:
    message = Message(
        event=Event.LENDER_NOTE,
        sender="L1",
        request_id=lender_request_id(txn, 1),
        transaction_id=txn,
        note=text,
    )
    return message.model_dump_json().encode()


class Running:
    """A TransactionAgent running on a MemoryStepLog; `fatal` records instead of exiting."""

    def __init__(self, log: MemoryStepLog, limit: int = LIMIT) -> None:
        self.log = log
        self.followers = Followers()
        self.fatal: list[tuple[str, BaseException]] = []
        self.agent = TransactionAgent(log, DIRECTORY, self.followers, limit, fatal=self._fatal)

    def _fatal(self, what: str, error: BaseException) -> NoReturn:
        self.fatal.append((what, error))
        self.log._changed.set()
        raise Exited(what)


@pytest.fixture
def running() -> Running:
    return Running(MemoryStepLog())


@pytest.fixture
def held() -> Running:
    """The broker answers each write only when the test says so."""
    return Running(MemoryStepLog(hold=True))


async def run(it: Running) -> asyncio.Task[None]:
    return asyncio.create_task(it.agent.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def notes_in(it: Running) -> list[str]:
    """The lender's notes as passed on to the borrower, in the order they were written."""
    found = []
    for write in it.log.writes:
        for record in write.records:
            if record.topic == "ill.outbound.ncip" and record.value:
                value = json.loads(record.value)
                if value.get("message", {}).get("note"):
                    found.append(value["message"]["note"])
    return found


async def test_the_steps_of_a_transaction_are_applied_and_written_in_order(
    running: Running,
) -> None:
    log = running.log
    txn, body = request("REQ-A")
    log.feed("ill.inbound", txn, body)
    for n in range(5):
        log.feed("ill.inbound", txn, note(txn, f"note {n}"))
    task = await run(running)
    async with asyncio.timeout(5):
        await log.until(lambda: len(log.acked) == 6)
    await stop(task)

    assert log.acked == [0, 1, 2, 3, 4, 5]
    assert notes_in(running) == [f"note {n}" for n in range(5)]
    # Every step's row is written with its records, after them, and the table holds the last.
    assert all(w.row is not None and w.row.key == txn for w in log.writes)
    assert len(log.table[txn]["seen"]) >= 6
    assert running.followers.load.started and running.followers.load.stopped


async def test_an_input_is_acknowledged_only_once_its_records_are_durable_in_input_order(
    held: Running,
) -> None:
    log = held.log
    for request_id in ("REQ-A", "REQ-B"):
        log.feed("ill.inbound", *request(request_id))
    task = await run(held)
    async with asyncio.timeout(5):
        # Both steps applied and written while neither is durable: the pipeline.
        await log.until(lambda: len(log.writes) == 2)
        assert [w.records[0].key for w in log.writes] == [A, B]
        log.acknowledge(1)  # the broker answers the later step first
        await log.until(lambda: log.writes[1].durable.done())
        assert log.acked == []
        log.acknowledge(0)
        await log.until(lambda: len(log.acked) == 2)
    await stop(task)
    assert log.acked == [0, 1]


async def test_one_transaction_has_at_most_replay_limit_steps_in_flight(held: Running) -> None:
    log = held.log
    txn, body = request("REQ-A")
    log.feed("ill.inbound", txn, body)
    for n in range(REPLAY_LIMIT):
        log.feed("ill.inbound", txn, note(txn, f"note {n}"))
    other, other_body = request("REQ-B")
    log.feed("ill.inbound", other, other_body)
    task = await run(held)
    async with asyncio.timeout(5):
        await log.until(lambda: len(log.writes) == REPLAY_LIMIT)
        # The next step of the same transaction has been read and waits; nothing after it
        # is read (inputs stay in order), so the other transaction waits too.
        assert log.pulled == REPLAY_LIMIT + 1
        assert {w.records[0].key for w in log.writes} == {txn}
        log.acknowledge(0)
        await log.until(lambda: len(log.writes) == REPLAY_LIMIT + 2)
        assert log.writes[REPLAY_LIMIT].records[0].key == txn
        assert log.writes[REPLAY_LIMIT + 1].records[0].key == other
        for index in range(1, len(log.writes)):
            log.acknowledge(index)
        await log.until(lambda: len(log.acked) == REPLAY_LIMIT + 2)
    await stop(task)
    assert log.acked == list(range(REPLAY_LIMIT + 2))
    assert notes_in(held) == [f"note {n}" for n in range(REPLAY_LIMIT)]


async def test_a_step_too_large_for_the_broker_is_dead_lettered_and_nothing_else_written() -> None:
    running = Running(MemoryStepLog(), limit=SMALL_LIMIT)
    log = running.log
    # Each field within the model's limits; the row keeps the request and the step's outputs.
    big = Bibliographic(
        title="T" * 2000,
        author="A" * 1000,
        publisher="P" * 1000,
        place_of_publication="L" * 1000,
        edition="E" * 900,
    )
    txn, body = request("BIG-1", bibliographic=big)
    small, small_body = request("SMALL-1")
    log.feed("ill.inbound", txn, body, local=True)
    log.feed("ill.inbound", small, small_body, local=True)
    task = await run(running)
    async with asyncio.timeout(5):
        await log.until(lambda: len(log.acked) == 2)
    await stop(task)

    first, second = log.writes
    assert first.topics() == ["ill.deadletter"] and first.row is None
    letter = json.loads(first.records[0].value or b"")
    assert letter["stage"] == "apply" and letter["partner"] == "B"
    assert "would be" in letter["error"] and "(the limit is" in letter["error"]
    # Nothing of the refused step was set or counted: no row, no load, no item.
    assert txn not in log.table
    assert not any(txn in key for key in running.followers.load.book.open.get("L1", {}))
    # The waiting partner is told at once; the worker went on with the next request.
    refused = running.followers.verdicts.resolved[0]
    assert refused.transaction_id == txn and refused.outcome == "refused"
    assert second.row is not None and second.row.key == small
    assert "ill.outbound.ncip" in second.topics()
    assert log.acked == [0, 1]


async def test_a_record_that_is_not_a_message_is_dead_lettered_and_the_agent_goes_on(
    running: Running,
) -> None:
    log = running.log
    log.feed("ill.inbound", "garbage", b"{not json")
    log.feed("ill.inbound", *request("REQ-A"))
    task = await run(running)
    async with asyncio.timeout(5):
        await log.until(lambda: len(log.acked) == 2)
    await stop(task)
    assert log.writes[0].topics() == ["ill.deadletter"]
    assert log.writes[1].row is not None and log.writes[1].row.key == A
    assert running.followers.verdicts.resolved == []  # nobody waits for an unreadable record


async def test_records_the_broker_refuses_are_fatal_and_nothing_after_is_acknowledged(
    held: Running,
) -> None:
    log = held.log
    for request_id in ("REQ-A", "REQ-B"):
        log.feed("ill.inbound", *request(request_id))
    task = await run(held)
    async with asyncio.timeout(5):
        await log.until(lambda: len(log.writes) == 2)
        log.acknowledge(1)
        log.refuse(0, TimeoutError("KafkaTimeoutError"))
        await log.until(lambda: bool(held.fatal))
    await stop(task)
    ((what, error),) = held.fatal
    assert what == "ill.inbound/0@0" and isinstance(error, TimeoutError)
    assert log.acked == []
