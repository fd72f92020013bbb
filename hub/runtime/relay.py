"""Synchronous relays through the hub: a caller's call (an NCIP broker's circulation call) is
written to `ill.relay` (acknowledged), carried out by the relay agent with the target's
connector sender, and the target's answer is written to `ill.relay.results` and handed back to
the endpoint waiting for it. Every call and answer is durable and audited, and each outcome is
an event on `ill.events` (`rshub tail` shows them).

The hand-back mirrors the verdicts of the transaction agent (hub.kafka.producer and
hub.kafka.followers): the call carries the waiting gateway's instance in the
`rshub-reply-to` header; the agent in the same process resolves the waiting future directly;
an agent in another worker writes the result only, and the gateway's `RelayAnswers` follower
reads it back.

State-changing calls repeated with the same content (a broker's retry) within the replay window
are answered with the first answer, without a second call to the target: the agent keeps the
first answer in a changelog-backed table, keyed by the caller's replay key; calls go to the
topic keyed by target, so every copy of a call reaches the same worker. Only an answer the
connector judged a success (`Attempt.ok`) is kept: after a protocol error (NCIP Temporary
Processing Failure) the retry is what the caller sends to get through, so it must reach the
target.

What a call means is the connector's business (codec and front); nothing here reads NCIP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, cast

import faust
import structlog
from pydantic import BaseModel, Field

from connectors.core.contract import Attempt, Connector, Limits, Sender
from connectors.core.directory import Directory
from connectors.core.model import now
from connectors.core.records import (
    AuditRecord,
    DeadLetter,
    RawEncoding,
    StateChange,
    pack,
    unpack,
)
from connectors.core.topics import Topic
from hub.kafka.faust_app import DurableTable, Records
from hub.kafka.followers import _Follower
from hub.kafka.producer import REPLY_TO, KafkaIO
from hub.kafka.steplog import Consumed, Inputs
from hub.runtime import metrics

log = structlog.get_logger(__name__)

RELAY_TOPIC = Topic.RELAY
RESULTS_TOPIC = Topic.RELAY_RESULTS
# The longest a gateway keeps a caller's call open, whatever the connector's own time-out
# (which is shorter and answers the caller itself): a safety net against leaked waiters.
CEILING_S = 300.0
RAW: dict[str, Any] = {"key_type": str, "value_type": bytes, "value_serializer": "raw"}
ReplayKey = Callable[[bytes], str | None]


class RelayCall(BaseModel):
    """One call to relay (on ill.relay, keyed by target)."""

    call_id: str
    protocol: str
    caller: str
    target: str
    content_type: str
    body: str = Field(description="the bytes for the target as text (see `encoding`)")
    encoding: RawEncoding = "latin-1"
    replay_key: str | None = Field(
        None, description="state-changing call: retries with this key get the first answer"
    )
    at: datetime = Field(default_factory=now)

    def raw(self) -> bytes:
        return unpack(self.body, self.encoding)


class RelayOutcome(StrEnum):
    ANSWERED = "answered"  # the target answered (its answer may be a protocol error: `ok`)
    FAILED = "failed"  # no answer: unreachable, timed out, unreadable
    REPLAYED = "replayed"  # a retry answered with the first answer, the target not called


class RelayResult(BaseModel):
    """What came of one call (on ill.relay.results, keyed by call id)."""

    call_id: str
    protocol: str
    caller: str
    target: str
    outcome: RelayOutcome
    retryable: bool = False
    detail: str = ""
    answer: str | None = Field(None, description="the target's answer as text (`answer_encoding`)")
    answer_encoding: RawEncoding = "latin-1"
    replayed_from: str | None = Field(None, description="the call whose answer was replayed")
    ok: bool = Field(
        False,
        description="the target did what was asked (its answer is no protocol error): only "
        "such an answer is replayed to a retry",
    )
    elapsed_ms: float = 0.0
    at: datetime = Field(default_factory=now)

    def attempt(self) -> Attempt:
        return Attempt(
            self.ok,
            self.retryable,
            self.detail,
            unpack(self.answer, self.answer_encoding) if self.answer is not None else None,
        )


class RelayAnswers(_Follower):
    """The gateway's waiting calls, resolved by the agent in this process or read back from
    ill.relay.results (a result an agent in another worker wrote)."""

    topic = RESULTS_TOPIC
    from_beginning = False

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.waiting: dict[str, asyncio.Future[RelayResult]] = {}

    def expect(self, call_id: str) -> asyncio.Future[RelayResult]:
        future = self.waiting.get(call_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self.waiting[call_id] = future
        return future

    def forget(self, call_id: str) -> None:
        self.waiting.pop(call_id, None)

    def handle(self, key: str, value: bytes | None) -> None:
        if value is not None:
            self.resolve(RelayResult.model_validate_json(value))

    def resolve(self, result: RelayResult) -> None:
        future = self.waiting.pop(result.call_id, None)
        if future is not None and not future.done():
            future.set_result(result)


class RelayDesk:
    """The gateway's side: `relay` is what `Intake.relay` calls."""

    def __init__(self, io: KafkaIO, replay_keys: Mapping[str, ReplayKey] | None = None) -> None:
        self.io = io
        self.answers = RelayAnswers(io.bootstrap_servers)
        self.replay_keys = dict(replay_keys or {})

    async def start(self) -> None:
        await self.answers.start()

    async def stop(self) -> None:
        await self.answers.stop()

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        return await relay(
            self.io,
            self.answers,
            protocol,
            caller,
            target,
            body,
            content_type,
            replay_key=self.replay_keys.get(protocol),
        )


def connectors_replay_keys(connectors: Iterable[Connector[Any, Any]]) -> dict[str, ReplayKey]:
    """The replay key function of each connector whose codec has one (`replay_key`)."""
    keys: dict[str, ReplayKey] = {}
    for connector in connectors:
        key = getattr(connector.codec, "replay_key", None)
        if callable(key):
            keys[connector.name] = key
    return keys


async def relay(
    io: KafkaIO,
    answers: RelayAnswers,
    protocol: str,
    caller: str,
    target: str,
    body: bytes,
    content_type: str,
    *,
    replay_key: ReplayKey | None = None,
    ceiling_s: float = CEILING_S,
) -> Attempt:
    """Write the call (acknowledged) and wait for its result. The caller's own time-out
    cancels this wait; the call is still carried out and its result recorded."""
    key = replay_key(body) if replay_key else None
    text, encoding = pack(body)
    call = RelayCall(
        call_id=f"r{uuid.uuid4().hex}",
        protocol=protocol,
        caller=caller,
        target=target,
        content_type=content_type,
        body=text,
        encoding=encoding,
        replay_key=f"{protocol}|{caller}|{target}|{key}" if key else None,
    )
    waiting = answers.expect(call.call_id)
    try:
        await io.send(RELAY_TOPIC, target, call.model_dump_json().encode(), wait_verdict=True)
        result = await asyncio.wait_for(asyncio.shield(waiting), ceiling_s)
    except TimeoutError:
        return Attempt(False, True, f"no result within {ceiling_s:g} s")
    finally:
        answers.forget(call.call_id)
    return result.attempt()


# -- the agent -----------------------------------------------------------------------------


def replayable(stored: Any, window: timedelta, at: datetime | None = None) -> RelayResult | None:
    """The kept first answer a retry gets, if there is one: a success within the window.
    A row kept before results said whether they were a success (`ok` absent) or one that is
    not (a Problem kept by an older hub, the table surviving the restart) is not replayed."""
    if stored is None:
        return None
    first = RelayResult.model_validate(stored)
    if not first.ok or first.outcome is not RelayOutcome.ANSWERED:
        return None
    return first if (at or now()) - first.at <= window else None


def relay_senders(
    connectors: Iterable[Connector[Any, Any]], limits: Limits, environ: Mapping[str, str]
) -> dict[str, Sender]:
    """A sender of its own for each connector that relays (declares the relay topic): the
    relay agent starts and stops them."""
    senders: dict[str, Sender] = {}
    for connector in connectors:
        if RELAY_TOPIC in connector.topics and connector.sender is not None:
            settings = connector.load_settings(environ)
            senders[connector.name] = connector.sender(limits, settings, connector.codec)
    return senders


class Produce(Protocol):
    async def __call__(self, topic: str, key: str, record: BaseModel) -> Awaitable[Any]:
        """Hand a record to the producer; the returned future is its acknowledgement."""
        ...


class Replays(Protocol):
    """The first answers kept per replay key (the `relay_replays` table)."""

    def get(self, key: str) -> Any: ...

    async def set(self, partition: int, key: str, value: Any) -> None:
        """Returns once the row is durable."""
        ...


class RelayAgent:
    """Carries out the calls on ill.relay, side by side up to `concurrency`; each call is
    acknowledged once its result, its audits and its event are durable (or it failed)."""

    def __init__(
        self,
        directory: Directory,
        senders: Mapping[str, Sender],
        produce: Produce,
        replays: Replays,
        *,
        io: KafkaIO | None = None,
        answers: RelayAnswers | None = None,
        concurrency: int = 64,
        replay_window_s: float = 900.0,
    ) -> None:
        """`io`/`answers`: the gateway's, when it runs in this worker (results for its
        waiting callers are then handed over at once)."""
        self.directory = directory
        self.senders = senders
        self.produce = produce
        self.replays = replays
        self.io = io
        self.answers = answers
        self.concurrency = concurrency
        self.replay_window_s = replay_window_s
        self.window = timedelta(seconds=replay_window_s)
        self.inflight: dict[str, asyncio.Future[RelayResult]] = {}
        # a call's audit of the member's answer, acknowledged beside its result
        self.unacknowledged: dict[str, Awaitable[Any]] = {}

    async def start(self) -> None:
        for sender in self.senders.values():
            await sender.start()

    async def stop(self) -> None:
        for sender in self.senders.values():
            await sender.stop()

    async def run(self, inputs: Inputs) -> None:
        await self.start()
        gate = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            async for record in inputs.records():
                # calls run side by side (a hung member delays nobody else), up to the gate
                await gate.acquire()
                task = asyncio.create_task(self.one(record, inputs, gate))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            await self.stop()

    async def write(self, topic: str, key: str, record: BaseModel) -> None:
        await (await self.produce(topic, key, record))  # acknowledged by the broker

    async def call_target(self, call: RelayCall) -> RelayResult:
        started = time.monotonic()
        partner = self.directory.partner(call.target)
        sender = self.senders.get(partner.protocol) if partner else None
        result = RelayResult(
            call_id=call.call_id,
            protocol=call.protocol,
            caller=call.caller,
            target=call.target,
            outcome=RelayOutcome.FAILED,
        )
        if partner is None or sender is None:
            result.detail = f"no {call.protocol} target {call.target!r} in this consortium"
            return result
        body = call.raw()
        # Acknowledged while the member works: the relay adds one round trip, not two.
        audited = await self.produce(
            Topic.AUDIT,
            call.call_id,
            AuditRecord.of(
                "out", call.protocol, call.target, body, call.content_type, call.call_id
            ),
        )
        try:
            attempt = await sender.send(partner, body)
        except Exception as error:  # a sender's defect is a failed call, not a dead agent
            attempt = Attempt(False, True, f"{type(error).__name__}: {error}"[:500])
        await audited
        if attempt.answer is not None:
            # acknowledged beside the result (`one` waits for both before answering)
            self.unacknowledged[call.call_id] = await self.produce(
                Topic.AUDIT,
                call.call_id,
                AuditRecord.of(
                    "in", call.protocol, call.target, attempt.answer, None, call.call_id
                ),
            )
        # An answer is relayed whatever it says; whether it was a success decides replays.
        answered = attempt.ok or attempt.answer is not None
        result.outcome = RelayOutcome.ANSWERED if answered else RelayOutcome.FAILED
        result.ok = attempt.ok
        result.retryable, result.detail = attempt.retryable, attempt.detail[:1000]
        if attempt.answer is not None:
            result.answer, result.answer_encoding = pack(attempt.answer)
        result.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        result.at = now()
        return result

    async def carry_out(self, call: RelayCall, partition: int) -> RelayResult:
        key = call.replay_key
        if key is None:
            return await self.call_target(call)
        first = replayable(self.replays.get(key), self.window)
        if first is not None:
            return _replayed(first, call)
        if key in self.inflight:  # the same call is under way: its answer is this one's too
            return _replayed(await asyncio.shield(self.inflight[key]), call)
        future: asyncio.Future[RelayResult] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            result = await self.call_target(call)
            if result.ok and self.replay_window_s > 0:
                # durable before the call is acknowledged: a re-read call is answered from it
                await self.replays.set(partition, key, result.model_dump(mode="json"))
            future.set_result(result)
            return result
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a lone waiter-less failure is not logged twice
            raise
        finally:
            self.inflight.pop(key, None)

    async def one(self, record: Consumed, inputs: Inputs, gate: asyncio.Semaphore) -> None:
        try:
            try:
                call = RelayCall.model_validate_json(record.value)
            except ValueError as error:
                await self.write(
                    Topic.DEADLETTER,
                    "relay",
                    DeadLetter(stage="relay", error=f"unreadable relay call: {error}"[:2000]),
                )
                return
            result = await self.carry_out(call, record.partition)
            metrics.relayed(
                call.caller,
                call.target,
                result.outcome.value,
                result.ok,
                result.elapsed_ms / 1000,
            )
            stored = await self.produce(RESULTS_TOPIC, call.call_id, result)
            noted = await self.produce(
                Topic.EVENTS,
                call.call_id,
                StateChange(
                    event_id=f"{call.call_id}:{result.outcome.value}",
                    transaction_id=call.call_id,
                    kind="relay",
                    event=result.outcome.value,
                    sender=call.caller,
                    from_state=call.caller,
                    to_state=call.target,
                    detail=f"{call.caller} -> {call.target}: {result.detail} "
                    f"({result.elapsed_ms:g} ms)",
                ),
            )
            await stored  # the answer is durable before the caller gets it
            audit = self.unacknowledged.pop(call.call_id, None)
            if audit is not None:
                await audit
            io, answers = self.io, self.answers
            reply_to = record.headers.get(REPLY_TO)
            if answers is not None and io is not None and reply_to == io.instance.encode():
                answers.resolve(result)
            await noted
            log.info(
                "relay.result",
                call_id=call.call_id,
                caller=call.caller,
                target=call.target,
                outcome=result.outcome.value,
                detail=result.detail,
                ms=result.elapsed_ms,
            )
        except Exception as error:
            log.error("relay.call_failed", error=repr(error)[:500])
        finally:
            await inputs.ack(record)
            gate.release()


def _replayed(first: RelayResult, call: RelayCall) -> RelayResult:
    return first.model_copy(
        update={
            "call_id": call.call_id,
            "outcome": RelayOutcome.REPLAYED,
            "replayed_from": first.call_id,
            "detail": f"a retry of {first.call_id}: its answer again ({first.detail})",
            "elapsed_ms": 0.0,
            "at": now(),
        }
    )


def install(
    app: faust.App,
    directory: Directory,
    senders: Mapping[str, Sender],
    *,
    io: KafkaIO | None = None,
    answers: RelayAnswers | None = None,
    concurrency: int = 64,
    replay_window_s: float = 900.0,
) -> RelayAgent:
    """The relay agent on the hub's faust app: its faust agent (`relay_agent`) reading
    ill.relay, its table of first answers (`relay_replays`: faust recovers it by that name)."""
    calls = app.topic(RELAY_TOPIC, **RAW)
    topics: dict[str, Any] = {}

    async def produce(topic: str, key: str, record: BaseModel) -> Awaitable[Any]:
        channel = topics.setdefault(topic, app.topic(topic, **RAW))
        return cast(
            Awaitable[Any], await channel.send(key=key, value=record.model_dump_json().encode())
        )

    replays = DurableTable(app.Table("relay_replays", default=None, partitions=4))
    agent = RelayAgent(
        directory,
        senders,
        produce,
        replays,
        io=io,
        answers=answers,
        concurrency=concurrency,
        replay_window_s=replay_window_s,
    )

    async def relay_agent(stream: faust.StreamT) -> None:
        await agent.run(Records(stream))

    app.agent(calls, name="relay_agent")(relay_agent)
    return agent
