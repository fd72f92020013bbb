"""The transaction agent: each input applied by the engine, its outputs written, in order.

It does I/O only through a `hub.kafka.steplog.StepLog`, to write what `hub.domain.engine.apply`
returns. A step's row is set in the table at once (the next step, applied while this one's
records are on their way, reads it) and written with the step's outputs; the input is
acknowledged, in order, only once all of them are acknowledged by the broker. A crash in
between re-applies the input: the engine's deduplication and deterministic record ids make
that harmless. One record it cannot read or apply, or whose outputs would not fit in the
broker, is dead-lettered before anything of it is set or sent; the agent goes on. Records the
broker finally refuses are fatal: the worker exits without acknowledging (`fatal`) and its
successor starts again from the last commit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, NoReturn, Protocol

import structlog

from connectors.core.directory import Directory
from connectors.core.model import Message, now
from connectors.core.records import (
    CONTROL,
    DeadLetter,
    DeliveryResult,
    PartnerBack,
    Tick,
    Verdict,
)
from connectors.core.topics import Topic
from hub.domain.engine import apply
from hub.domain.load import LoadBook
from hub.domain.transaction import REPLAY_LIMIT, Output, Result, Transaction, as_output
from hub.kafka.producer import REPLY_TO
from hub.kafka.steplog import Consumed, Encoded, Row, StepLog
from hub.runtime import metrics
from hub.runtime.writing import counted, encode, sized

log = structlog.get_logger(__name__)
PIPELINE = 64  # transaction steps applied while earlier ones wait for their acknowledgements
ROW_CACHE = 1024  # validated transaction rows kept (a step's next input comes soon after)
Fatal = Callable[[str, BaseException], NoReturn]


class Resolves(Protocol):
    def resolve(self, verdict: Verdict) -> None: ...


class Handles(Protocol):
    def handle(self, key: str, value: Any) -> None: ...


class Load(Protocol):
    """The load counts the rota reads, rebuilt from ill.load before the first step."""

    book: LoadBook
    ready: asyncio.Event

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Followers(Protocol):
    """The gateway side of this worker (`hub.kafka.producer.KafkaIO`): its views are updated
    here at once, not read back from the topics."""

    @property
    def instance(self) -> str: ...
    @property
    def verdicts(self) -> Resolves: ...
    @property
    def items(self) -> Handles: ...
    @property
    def load(self) -> Load: ...


class Step(NamedTuple):
    """A transaction step ready to be written."""

    key: str
    result: Result
    local: bool  # the partner waits at this worker's gateway
    outputs: list[Output]
    encoded: list[Encoded]
    row: Row | None  # when it changed


def fatal(what: str, error: BaseException) -> NoReturn:
    """The broker refused a step's records (faust's producer gives up only after
    `producer_request_timeout`, 20 minutes by default) or acknowledging failed: this worker's
    table may be ahead of what is durable. It exits at once, committing nothing, as a SIGKILL
    would (which the hub is built to survive: the restarted worker recovers its rows from
    the changelog and reads again from the last commit). Carrying on could commit past a
    step whose records never landed."""
    log.critical("agent.fatal", step=what, error=f"{type(error).__name__}: {error}"[:1000])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(70)  # EX_SOFTWARE


class TransactionAgent:
    """Reads the step log's inputs and applies them, PIPELINE at a time, at most
    REPLAY_LIMIT of one transaction (a row that landed while an earlier step's outputs did
    not must still remember those outputs for the replay)."""

    def __init__(
        self,
        steps: StepLog,
        directory: Directory,
        followers: Followers,
        limit: int,
        fatal: Fatal = fatal,
    ) -> None:
        self.log = steps
        self.directory = directory
        self.followers = followers
        self.load = followers.load
        self.limit = limit
        self.fatal = fatal
        # The validated row of recently changed transactions, with the table value it was
        # read from or written as: a step reads it back instead of validating the row again.
        # Valid only while the table holds that very value (recovery and rebalancing put new
        # ones there); the engine never changes the row it is given (it works on a copy).
        # An OrderedDict: evicting the oldest of a plain dict that keeps having entries
        # removed and added scans the removed slots first (`next(iter(...))`), measurably.
        self.rows: OrderedDict[str, tuple[Any, Transaction]] = OrderedDict()

    async def start(self) -> None:
        # The rota reads the load counts: rebuild them from ill.load before the first request.
        await self.load.start()
        await self.load.ready.wait()

    async def stop(self) -> None:
        await self.load.stop()

    async def run(self) -> None:
        """Until the inputs end or the agent is cancelled. Steps are applied one after the
        other, in order, but a step's records need not be acknowledged before the next is
        applied: each step runs as a task (it applies at once, then waits for its
        acknowledgements), and its input is acknowledged, in order, only once the step is
        done."""
        await self.start()
        queue: asyncio.Queue[tuple[Consumed, asyncio.Task[None]]] = asyncio.Queue(PIPELINE)
        inflight: dict[str, list[asyncio.Task[None]]] = {}
        acker = asyncio.create_task(self._acknowledge(queue))
        try:
            async for record in self.log.records():
                key = record.key
                while len(inflight.get(key, ())) >= REPLAY_LIMIT:
                    await asyncio.wait(list(inflight[key]), return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self.step(record))
                inflight.setdefault(key, []).append(task)
                task.add_done_callback(functools.partial(_finished, inflight, key))
                await queue.put((record, task))
        finally:
            acker.cancel()
            await self.stop()

    async def _acknowledge(self, queue: asyncio.Queue[tuple[Consumed, asyncio.Task[None]]]) -> None:
        record: Consumed | None = None
        try:
            while True:
                record, task = await queue.get()
                await task  # raises only what is fatal (`step` dead-letters the rest)
                await self.log.ack(record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fatal(record.where() if record is not None else "acknowledging", exc)

    async def step(self, record: Consumed) -> None:
        """One step. What the engine cannot apply, and outputs too large for the broker, are
        dead-lettered before anything is set or sent; a failure after that (the broker
        refused the step's records, or the dead letter) is raised, and is fatal."""
        key, topic = record.key, record.topic
        reply_to = record.headers.get(REPLY_TO)
        try:
            result = self.apply(key, topic, record.value, _written_at(record.timestamp))
            step = None if result is None else self.prepare(key, result, reply_to, record.partition)
        except Exception as exc:
            # One record must never stop the agent: it is recorded and the next one is read.
            log.error("agent.record_failed", topic=topic, key=key, error=str(exc)[:500])
            message = _message_in(record.value) if topic == Topic.INBOUND else None
            await self.dead(
                "apply",
                f"record on {topic} not applied: {exc}",
                key,
                {"offset": record.offset, "partition": record.partition},
                message,
            )
            if message is not None:
                await self._refused_verdict(key, message, reply_to)
            return
        if step is not None:
            await self.commit(step)
            metrics.applied(topic, record.timestamp)

    def apply(self, key: str, topic: str, value: bytes, written: datetime) -> Result | None:
        """The engine reads no clock: a message counts from its receipt at the gateway, a
        delivery result and a tick from their own time, other control records from when
        they were written to the topic."""
        row = self.log.row(key)
        cached = self.rows.get(key)
        if not row:
            txn = None
        elif cached is not None and cached[0] is row:
            txn = cached[1]
        else:
            txn = Transaction.model_validate(row)
            self._remember(key, row, txn)
        book = self.load.book
        if topic == Topic.INBOUND:
            message = Message.model_validate_json(value)
            return apply(txn, message, message.timestamp, directory=self.directory, load=book)
        if topic == Topic.DELIVERY:
            report = DeliveryResult.model_validate_json(value)
            return apply(txn, report, report.at, directory=self.directory, load=book)
        control = CONTROL.validate_json(value)
        if isinstance(control, PartnerBack):
            return None  # handled by hub.runtime.partner_back, which needs the whole table
        at = control.at if isinstance(control, Tick) else written
        return apply(txn, control, at, directory=self.directory, load=book)

    def prepare(self, key: str, result: Result, reply_to: bytes | None, partition: int) -> Step:
        """What a step writes, encoded (TooLarge before anything is set or sent)."""
        local = reply_to is not None and reply_to.decode() == self.followers.instance
        outputs = [o for o in result.outputs if not (local and o.topic == Topic.REPLIES)]
        txn, cached = result.transaction, self.rows.get(key)
        # The engine answers a replayed or ignored input with the row it was given: nothing to
        # write back. A new row is produced with the outputs, not after them, and acknowledged
        # with them before the input is: a worker killed after the row landed but before an
        # output did re-reads the input, and the engine, finding it in the row's `seen`,
        # writes the outputs it remembered for it (`Transaction.replay`). A worker killed
        # before the row landed applies the input again. Either way nothing is lost, and no
        # worker comes back (or hands its partition over) with a row older than its outputs.
        changed = txn is not None and not (cached is not None and cached[1] is txn)
        value = txn.model_dump(mode="json") if txn is not None and changed else None
        row = None
        if value is not None:
            # A row the broker would refuse must not get as far as the producer: that failure
            # is fatal, and the replayed input would fail again after every restart.
            data = sized(f"transaction {key}'s row", value, self.limit)
            row = Row(partition, key, value, data)
        return Step(key, result, local, outputs, encode(outputs, self.limit), row)

    async def commit(self, step: Step) -> None:
        """Set the row, count the load, send the records and wait for them; then answer the
        waiting partner. Raises only when the broker refused the records: fatal."""
        key, result, outputs, row = step.key, step.result, step.outputs, step.row
        if row is not None and result.transaction is not None:
            self._remember(key, row.value, result.transaction)
        for output in outputs:
            if output.topic == Topic.LOAD:
                # Counted now, not when the follower reads it back: the next request
                # this worker routes must see it.
                self.load.book.apply(output.key, output.value)
            elif output.topic == Topic.ITEMS:
                self.followers.items.handle(output.key, output.value)
        await self.log.write(step.encoded, row)
        counted(outputs)
        if result.verdict is not None:
            if step.local:
                self.followers.verdicts.resolve(result.verdict)
            log.info(
                "transaction.applied",
                transaction_id=key,
                outcome=result.verdict.outcome.value,
                state=result.verdict.state,
            )

    async def dead(
        self,
        stage: str,
        error: str,
        key: str,
        detail: dict[str, Any],
        message: Message | None = None,
    ) -> None:
        """`message`: the partner's message that failed, so the letter names the partner and
        the raw message on ill.audit (listed per partner, replayable by `rshub deadletters`)."""
        letter = DeadLetter(
            stage=stage,
            error=error[:2000],
            transaction_id=key,
            detail=detail,
            partner=message.sender or None if message else None,
            protocol=message.source_protocol or None if message else None,
            audit_ref=message.audit_ref if message else None,
        )
        await self._write([as_output(Topic.DEADLETTER, key, letter)])

    async def _refused_verdict(self, key: str, message: Message, reply_to: bytes | None) -> None:
        """The partner is waiting for a word on a message the agent could not apply (under
        the message's content digest)."""
        verdict = Verdict(
            message_id=message.message_id,
            transaction_id=key,
            outcome="refused",
            state="unchanged",
            error="the hub could not apply this message; it was recorded for the operators",
        )
        if reply_to is not None and reply_to.decode() == self.followers.instance:
            self.followers.verdicts.resolve(verdict)
        else:
            await self._write([as_output(Topic.REPLIES, key, verdict)])

    async def _write(self, outputs: list[Output]) -> None:
        await self.log.write(encode(outputs, self.limit))
        counted(outputs)

    def _remember(self, key: str, value: Any, txn: Transaction) -> None:
        rows = self.rows
        rows[key] = (value, txn)
        rows.move_to_end(key)
        if len(rows) > ROW_CACHE:
            rows.popitem(last=False)


def _finished(
    inflight: dict[str, list[asyncio.Task[None]]], key: str, task: asyncio.Task[None]
) -> None:
    mine = inflight.get(key, [])
    if task in mine:
        mine.remove(task)
    if not mine:
        inflight.pop(key, None)


def _message_in(value: bytes) -> Message | None:
    try:
        return Message.model_validate_json(value)
    except ValueError:
        return None  # not a message at all: nobody waits for an answer to it


def _written_at(stamp: float | None) -> datetime:
    """When the record was written to its topic (the broker's timestamp; now, if it has
    none)."""
    return datetime.fromtimestamp(stamp, UTC) if stamp and stamp > 0 else now()
