"""The faust application: the transaction agent and one outbound agent per protocol.

The transaction agent owns the `transactions` table (changelog-backed, so a restarted worker
recovers it) and does I/O only to write what `hub.domain.engine.apply` returns. A step's row is set
in the table at once (the next step, applied while this one's records are on their way, reads
it) and produced with the step's outputs; the input is acknowledged, in order, only once all
of them are acknowledged by the broker, and faust commits no further. A crash in between
re-applies the message: the engine's deduplication and deterministic record ids make that
harmless. One record it cannot read or apply, or whose outputs would not fit in the broker, is
dead-lettered before anything of it is set or sent; the agent goes on. Records the broker
finally refuses (faust's producer gives up only after `producer_request_timeout`, 20 minutes
by default) are fatal: the worker exits without committing (`fatal`) and its successor starts
again from the last commit.

The outbound agents deliver through `hub.runtime.partner_queues.PartnerQueues` (one queue per
partner) and acknowledge a command only once its result and the "delivered" mark are durable,
so a crash re-sends at most the calls that were in flight.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from datetime import UTC, datetime
from typing import Any, NamedTuple, NoReturn, cast

import faust
import structlog
from aiokafka.partitioner import murmur2
from faust.serializers import codecs

from connectors.core.contract import Attempt, Connector, Outgoing, Registry, Sender
from connectors.core.directory import Directory, Partner
from connectors.core.holdings import Client
from connectors.core.model import Message, NotApplicable, now
from connectors.core.records import (
    CONTROL,
    AuditRecord,
    DeadLetter,
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    Locate,
    Located,
    PartnerBack,
    Redeliver,
    Tick,
    Verdict,
)
from hub.domain.engine import apply
from hub.domain.transaction import REPLAY_LIMIT, Output, Result, Sending, Transaction, as_output
from hub.kafka import codec as jsonbytes
from hub.kafka import consumer_guard, fetching
from hub.kafka.producer import REPLY_TO, KafkaIO
from hub.runtime import metrics, relay
from hub.runtime.locate import Locator
from hub.runtime.partner_queues import PartnerQueues
from hub.runtime.relay import RelayAnswers
from hub.runtime.settings import Settings

log = structlog.get_logger(__name__)
DELIVERED_MEMORY = 100
PIPELINE = 64  # transaction steps applied while earlier ones wait for their acknowledgements
ROW_CACHE = 1024  # validated transaction rows kept (a step's next input comes soon after)
HUB_AGENCY = "RSHUB"
HELD = "held back: an earlier step to this partner has not been delivered"
RAW: dict[str, Any] = {"key_type": str, "value_type": bytes, "value_serializer": "raw"}
ROW_CODEC = "rshub-json"  # the transactions table's values: see hub.kafka.codec
TRANSACTIONS_TOPIC = "ill.transactions"  # the transactions table's changelog


class _RowCodec(codecs.Codec):
    def _dumps(self, value: Any) -> bytes:
        return jsonbytes.dumps(value)

    def _loads(self, data: bytes) -> Any:
        return jsonbytes.loads(data)


codecs.register(ROW_CODEC, _RowCodec())


class TooLarge(ValueError):
    """An output, or the transaction's row, would exceed the largest record the broker takes."""


def create_app(
    settings: Settings,
    directory: Directory,
    bootstrap_servers: str,
    connectors: Registry,
    connector_settings: dict[str, Any] | None = None,
    catalogue_clients: dict[str, Client] | None = None,
    io: KafkaIO | None = None,
    fetch_wait_ms: int | None = None,
    relay_answers: RelayAnswers | None = None,
    delivering: set[str] | None = None,
) -> fetching.App:
    """`io`: the gateway's Kafka side when it runs in this worker: verdicts for its waiting
    partners and the item and load views are then updated here at once, not read back;
    `relay_answers`: its relay desk's, for the same reason; `delivering`: the connectors
    to run an outbound agent for (`hub.runtime.app.delivering`; None: every one with a
    sender)."""
    app = fetching.App(
        settings.app_id,
        broker=f"kafka://{bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=4,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        # Said, not defaulted: faust reads PROCESSING_GUARANTEE from the environment, and
        # `produce` writes to the producer itself, past faust's transaction manager.
        processing_guarantee="at_least_once",
        web_enabled=True,
        table_cleanup_interval=3600.0,
    )
    app.fetch_wait_ms = (
        fetch_wait_ms
        if fetch_wait_ms is not None
        else fetching.detect(bootstrap_servers, settings.fetch_wait_ms)
    )
    app.idle_fetch_wait_ms = settings.idle_fetch_wait_ms
    inputs = app.topic("ill.inbound", "ill.delivery", "ill.control", **RAW)
    # The table's changelog is ill.transactions, the row of every transaction that `rshub
    # deliveries`, the operators' index and any monitoring read: one record per step, not a
    # changelog record and a snapshot of the same row. Given at construction (faust's recovery
    # knows a table's changelog by the name it had then). Keys are the plain transaction ids
    # every other topic has (faust would write them as JSON strings), read back as str.
    changelog = app.topic(
        TRANSACTIONS_TOPIC,
        key_type=str,
        key_serializer="raw",
        value_serializer=ROW_CODEC,
        partitions=4,
        compacting=True,
        acks=False,
        internal=True,
    )
    transactions = app.Table(
        "transactions", default=None, partitions=4, key_type=str, changelog_topic=changelog
    )
    # What the store (created on first use) reads keys and values back with at recovery
    # (`produce` writes the rows in these); faust's Table takes neither as an argument.
    cast(Any, transactions).key_serializer = "raw"
    cast(Any, transactions).value_serializer = ROW_CODEC
    delivered = app.Table("delivered", default=list, partitions=4)

    def transaction_state(key: str) -> str | None:
        row = transactions.get(key)
        return str(row["state"]) if row else None

    app.transaction_state = transaction_state
    hub_io = io or KafkaIO(bootstrap_servers)
    load = hub_io.load
    limit = settings.max_record_bytes

    # The validated row of recently changed transactions, with the table value it was read
    # from or written as: a step reads it back instead of validating the row again. Valid only
    # while the table holds that very value (recovery and rebalancing put new ones there);
    # the engine never changes the row it is given (it works on a copy).
    rows: dict[str, tuple[Any, Transaction]] = {}
    sending = asyncio.Lock()

    def remember(key: str, value: Any, txn: Transaction) -> None:
        rows.pop(key, None)
        rows[key] = (value, txn)
        if len(rows) > ROW_CACHE:
            del rows[next(iter(rows))]

    def sized(what: str, value: Any) -> bytes:
        """`value` as the bytes of a record; TooLarge if the broker would not take them."""
        data = jsonbytes.dumps(value)
        if len(data) > limit:
            raise TooLarge(f"{what} would be {len(data)} bytes (the limit is {limit})")
        return data

    def encode(outputs: list[Output]) -> list[tuple[Output, bytes | None]]:
        """The records' bytes; TooLarge (before anything is produced) if one would not fit."""
        return [
            (o, None if o.value is None else sized(f"a record for {o.topic}", o.value))
            for o in outputs
        ]

    async def produce(encoded: list[tuple[Output, bytes | None]], row: Row | None = None) -> None:
        """Produce encoded records and wait for their acknowledgements. `row`: a transaction
        row produced with them, set in the table at once (before anything is awaited: the
        transaction agent's next step, already started, see `transaction_agent`, reads it)."""
        if row is not None:
            transactions.data[row.key] = row.value
        futures = []
        # Straight to faust's producer, not through Topic.send: each Topic.send asks
        # app.maybe_start_producer(), whose stampede guard yields to the event loop up to three
        # times (with `sending` held). Same producer, same bytes, same partitioner (key only).
        producer = app.producer
        async with sending:  # one step's records in order, before the next step's
            for output, value in encoded:
                futures.append(
                    await producer.send(output.topic, output.key.encode(), value, None, None, None)
                )
            if row is not None:
                # The table's changelog record, as Table.send_changelog would write it (raw
                # key, the row codec's bytes, the row's partition), without faust's buffer
                # and its stampede guard; its callback only records offsets for persistent
                # stores, and this table's is in memory.
                futures.append(
                    await producer.send(
                        TRANSACTIONS_TOPIC, row.key.encode(), row.data, row.partition, None, None
                    )
                )
        for future in futures:
            await future  # acknowledged by the broker
        for output, _ in encoded:
            metrics.written(output.topic, output.value)

    async def write(outputs: list[Output]) -> None:
        """Write outputs, all or none: sizes are checked before anything is produced."""
        await produce(encode(outputs))

    async def dead(
        stage: str, error: str, key: str, detail: dict[str, Any], message: Message | None = None
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
        await write([as_output("ill.deadletter", key, letter)])

    @app.agent(inputs)
    async def transaction_agent(stream: faust.StreamT) -> None:
        # The rota reads the load counts: rebuild them from ill.load before the first request.
        await load.start()
        await load.ready.wait()
        # Steps are applied one after the other, in order, but the agent does not wait for a
        # step's records to be acknowledged before it applies the next: each step runs as a
        # task (it applies at once, then waits for its acknowledgements), and its input is
        # acknowledged, in order, only once the step is done. Up to PIPELINE steps at once.
        # One transaction has at most REPLAY_LIMIT steps in flight: a row that landed while an
        # earlier step's outputs did not must still remember those outputs for the replay.
        manual = stream.noack()  # type: ignore[attr-defined]  # StreamT omits noack
        steps: asyncio.Queue[tuple[Any, asyncio.Task[None]]] = asyncio.Queue(PIPELINE)
        inflight: dict[str, list[asyncio.Task[None]]] = {}

        def finished(key: str, task: asyncio.Task[None]) -> None:
            mine = inflight.get(key, [])
            if task in mine:
                mine.remove(task)
            if not mine:
                inflight.pop(key, None)

        async def acknowledge() -> None:
            event: Any = None
            try:
                while True:
                    event, step = await steps.get()
                    await step  # raises only what is fatal (_one dead-letters the rest)
                    await manual.ack(event)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                at = event.message if event is not None else None
                fatal(f"{at.topic}/{at.partition}@{at.offset}" if at else "acknowledging", exc)

        acker = asyncio.create_task(acknowledge())
        try:
            async for event in manual.events():
                key = _key(event)
                while len(inflight.get(key, ())) >= REPLAY_LIMIT:
                    await asyncio.wait(list(inflight[key]), return_when=asyncio.FIRST_COMPLETED)
                step = asyncio.create_task(_one(event, key))
                inflight.setdefault(key, []).append(step)
                step.add_done_callback(functools.partial(finished, key))
                await steps.put((event, step))
        finally:
            acker.cancel()
            await load.stop()

    async def _one(event: Any, key: str) -> None:
        """One step. What the engine cannot apply, and outputs too large for the broker, are
        dead-lettered before anything is set or sent; a failure after that (the broker
        refused the step's records, or the dead letter) is raised, and is fatal."""
        topic = event.message.topic
        headers = dict(event.headers or {})
        try:
            result = _apply(key, topic, event.value, _written_at(event))
            step = (
                None
                if result is None
                else _prepare(key, result, headers.get(REPLY_TO), event.message.partition)
            )
        except Exception as exc:
            # One record must never stop the agent: it is recorded and the next one is read.
            log.error("agent.record_failed", topic=topic, key=key, error=str(exc)[:500])
            message = _message_in(event.value) if topic == "ill.inbound" else None
            await dead(
                "apply",
                f"record on {topic} not applied: {exc}",
                key,
                {
                    "offset": event.message.offset,
                    "partition": event.message.partition,
                },
                message,
            )
            if message is not None:
                await _refused_verdict(key, message, headers.get(REPLY_TO))
            return
        if step is not None:
            await _commit(step)
            metrics.applied(topic, event.message.timestamp)

    def _apply(key: str, topic: str, value: bytes, written: datetime) -> Result | None:
        """The engine reads no clock: a message counts from its receipt at the gateway, a
        delivery result and a tick from their own time, other control records from when
        they were written to the topic."""
        row = transactions.get(key)
        cached = rows.get(key)
        if not row:
            txn = None
        elif cached is not None and cached[0] is row:
            txn = cached[1]
        else:
            txn = Transaction.model_validate(row)
            remember(key, row, txn)
        if topic == "ill.inbound":
            message = Message.model_validate_json(value)
            return apply(txn, message, message.timestamp, directory=directory, load=load.book)
        if topic == "ill.delivery":
            report = DeliveryResult.model_validate_json(value)
            return apply(txn, report, report.at, directory=directory, load=load.book)
        control = CONTROL.validate_json(value)
        if isinstance(control, PartnerBack):
            return None  # handled in _partner_back, which needs the whole table
        at = control.at if isinstance(control, Tick) else written
        return apply(txn, control, at, directory=directory, load=load.book)

    def _prepare(key: str, result: Result, reply_to: bytes | None, partition: int) -> _Step:
        """What a step writes, encoded (TooLarge before anything is set or sent)."""
        local = reply_to is not None and reply_to.decode() == hub_io.instance
        outputs = [o for o in result.outputs if not (local and o.topic == "ill.replies")]
        txn, cached = result.transaction, rows.get(key)
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
            row = Row(partition, key, value, sized(f"transaction {key}'s row", value))
        return _Step(key, result, local, outputs, encode(outputs), row)

    async def _commit(step: _Step) -> None:
        """Set the row, count the load, send the records and wait for them; then answer the
        waiting partner. Raises only when the broker refused the records: fatal."""
        key, result, outputs, row = step.key, step.result, step.outputs, step.row
        if row is not None and result.transaction is not None:
            remember(key, row.value, result.transaction)
        for output in outputs:
            if output.topic == "ill.load":
                # Counted now, not when the follower reads it back: the next request
                # this worker routes must see it.
                load.book.apply(output.key, output.value)
            elif output.topic == "ill.items":
                hub_io.items.handle(output.key, output.value)
        await produce(step.encoded, row)
        if result.verdict is not None:
            if step.local:
                hub_io.verdicts.resolve(result.verdict)
            log.info(
                "transaction.applied",
                transaction_id=key,
                outcome=result.verdict.outcome.value,
                state=result.verdict.state,
            )

    async def _refused_verdict(key: str, message: Message, reply_to: bytes | None) -> None:
        """The partner is waiting for a word on a message the agent could not apply (under
        the message's content digest)."""
        message_id = message.message_id
        verdict = Verdict(
            message_id=message_id,
            transaction_id=key,
            outcome="refused",
            state="unchanged",
            error="the hub could not apply this message; it was recorded for the operators",
        )
        if reply_to is not None and reply_to.decode() == hub_io.instance:
            hub_io.verdicts.resolve(verdict)
        else:
            await write([as_output("ill.replies", key, verdict)])

    control_topic = app.topic("ill.control", **RAW)
    consumer_guard.install(app)

    @app.agent(app.topic("ill.partners", **RAW))
    async def partner_agent(stream: faust.StreamT) -> None:
        """A partner answers again: every transaction of this worker with deliveries waiting
        for it sends them now (each through the engine, as a Redeliver)."""
        handled: set[str] = set()
        async for event in stream.events():
            back = PartnerBack.model_validate_json(event.value)
            if back.ref in handled:
                continue  # one copy per partition; this worker's table answers for all of them
            handled.add(back.ref)
            waiting = [
                key
                for key, row in active_items(app, transactions)
                if row
                and any(
                    p["command"]["recipient"] == back.partner
                    and p["status"] in (Sending.RETRY.value, Sending.PARKED.value)
                    for p in row.get("pending", [])
                )
            ]
            for key in waiting:
                command = Redeliver(
                    command_id=f"{back.ref}:{key}",
                    transaction_id=key,
                    partner=back.partner,
                    by="rshub (partner answered again)",
                )
                await control_topic.send(key=key, value=command.model_dump_json().encode())
            if waiting:
                log.info("partner.back", partner=back.partner, transactions=len(waiting))

    queues = PartnerQueues(settings.delivery_per_partner, settings.delivery_total)
    shared = settings.limits()
    for connector in connectors:
        if connector.sender is None:
            continue
        if delivering is not None and connector.name not in delivering:
            continue
        own = (connector_settings or {}).get(connector.name) or connector.settings()
        sender = connector.sender(shared, own, connector.codec)
        _outbound_agent(app, settings, directory, connector, sender, write, delivered, queues)

    relaying = relay.relay_senders(connectors, shared, os.environ)
    if relaying:
        # Relay connectors (NCIP brokers) declare the relay topic; their settings say how
        # many calls run at once and how long a repeated call gets the first answer again.
        own = (connector_settings or {}).get(next(iter(relaying)))
        relay.install(
            app,
            directory,
            relaying,
            io=hub_io,
            answers=relay_answers,
            concurrency=int(getattr(own, "concurrency", 64)),
            replay_window_s=float(getattr(own, "replay_window_s", 900.0)),
        )

    locator = Locator(directory, catalogue_clients or {}, settings.holdings_cache_s)

    @app.agent(app.topic("ill.locate", **RAW), concurrency=settings.locate_concurrency)
    async def locate_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            command = Locate.model_validate_json(event.value)
            results = await locator.locate(command.lenders, command.terms)
            located = Located(
                locate_id=command.locate_id, transaction_id=command.transaction_id, results=results
            )
            await write([as_output("ill.control", command.transaction_id, located)])

    ticked: dict[str, str] = {}

    @app.timer(settings.timer_interval_s)
    async def clock() -> None:
        """Send a Tick to each transaction whose next deadline has passed (once per deadline:
        the engine clears or moves the deadline when it acts)."""
        at = now()
        due = []
        for key, row in active_items(app, transactions):
            deadline = row.get("next_deadline") if row else None
            if not deadline or ticked.get(key) == deadline:
                continue
            if datetime.fromisoformat(deadline) <= at:
                ticked[key] = deadline
                due.append(as_output("ill.control", key, Tick(transaction_id=key, at=at)))
        if due:
            log.info("clock.ticks", count=len(due))
            await write(due)

    return app


class _Step(NamedTuple):
    """A transaction step ready to be written."""

    key: str
    result: Result
    local: bool  # the partner waits at this worker's gateway
    outputs: list[Output]
    encoded: list[tuple[Output, bytes | None]]
    row: Row | None  # when it changed


class Row(NamedTuple):
    """A transaction's new row: set in the table, written to its changelog."""

    partition: int
    key: str
    value: dict[str, Any]
    data: bytes  # the value in the table's codec (ROW_CODEC)


def _message_in(value: bytes) -> Message | None:
    try:
        return Message.model_validate_json(value)
    except ValueError:
        return None  # not a message at all: nobody waits for an answer to it


def _key(event: Any) -> str:
    return event.key.decode() if isinstance(event.key, bytes) else str(event.key)


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


def _written_at(event: Any) -> datetime:
    """When the record was written to its topic (the broker's timestamp; now, if it has
    none)."""
    stamp = getattr(event.message, "timestamp", None)
    return datetime.fromtimestamp(stamp, UTC) if stamp and stamp > 0 else now()


async def _send(
    settings: Settings, sender: Sender, partner: Partner, body: bytes
) -> tuple[Attempt, int]:
    """One delivery with quick retries (doubling back-off) for failures another try may
    cure within seconds; the engine's schedule takes over after `outbound_retries`. The last
    attempt and the number of tries."""
    delay, tries = settings.outbound_backoff_s, 0
    while True:
        tries += 1
        attempted = await sender.send(partner, body)
        if attempted.ok or not attempted.retryable or tries >= settings.outbound_retries:
            return attempted, tries
        log.info("delivery.retry", partner=partner.symbol, tries=tries, detail=attempted.detail)
        await asyncio.sleep(delay)
        delay *= 2


def _outbound_agent(
    app: faust.App,
    settings: Settings,
    directory: Directory,
    connector: Connector[Any, Any],
    delivery: Sender,
    write: Any,
    delivered: Any,
    queues: PartnerQueues,
) -> None:
    """The agent reading ill.outbound.<protocol>. Each command becomes a job on its partner's
    queue; the input is acknowledged once the job's result is durable. A command already
    delivered (re-read after a restart) is acknowledged without a second delivery."""
    codec = connector.codec
    failing: set[str] = set()  # partners whose last delivery from this worker failed
    partners_topic = app.topic("ill.partners", **RAW)

    async def partner_back(symbol: str) -> None:
        back = PartnerBack(partner=symbol, at=now())
        value = back.model_dump_json().encode()
        # Every partition: each worker looks after the transactions it holds.
        for partition in range(partners_topic.partitions or 4):
            await partners_topic.send(key=symbol, value=value, partition=partition)

    async def attempt(command: Delivery) -> DeliveryResult:
        partner = directory.partner(command.recipient)
        sender = directory.partner(command.message.sender)
        result = DeliveryResult(
            command_id=command.command_id,
            transaction_id=command.transaction_id,
            recipient=command.recipient,
            event=command.message.event,
            attempt=command.attempt,
            try_number=command.try_number,
            outcome=DeliveryOutcome.SENT,
        )
        if command.try_number > 1:
            queues.release(command.transaction_id, command.recipient)
        elif queues.is_held(command.transaction_id, command.recipient):
            result.outcome, result.detail = DeliveryOutcome.FAILED, HELD
            return result
        if command.message.event in codec.not_applicable:
            # Checked first: a partner without an endpoint (an OpenURL borrower) is never
            # sent the steps its protocol has no form for.
            result.outcome = DeliveryOutcome.NOT_APPLICABLE
            result.detail = f"{connector.name} has no form for {command.message.event.value}"
            return result
        if partner is None or not partner.endpoint:
            result.outcome, result.retryable = DeliveryOutcome.FAILED, False
            result.detail = "partner has no endpoint"
            return result
        outgoing = Outgoing(
            message=command.message,
            sender_agency=sender.agency_id if sender else HUB_AGENCY,
            recipient=partner,
            correlation=command.correlation,
            state=command.state,
            to_borrower=command.attempt == 0,
        )
        try:
            body = codec.render(outgoing)
        except NotApplicable as exc:
            result.outcome, result.detail = DeliveryOutcome.NOT_APPLICABLE, str(exc)
            return result
        except Exception as exc:  # RenderError, and any defect of a writer
            # Rendering is total: a step that cannot be written in the partner's protocol is
            # a failed delivery the engine handles (next lender, or parked for staff).
            result.outcome, result.retryable = DeliveryOutcome.FAILED, False
            result.detail = f"cannot be written in {connector.name}: {exc}"[:1000]
            return result
        audit = AuditRecord.of(
            "out", connector.name, partner.symbol, body, codec.content_type, command.transaction_id
        )
        await write([as_output("ill.audit", command.transaction_id, audit)])
        attempted, tries = await _send(settings, delivery, partner, body)
        result.tries, result.detail = tries, attempted.detail[:1000]
        if not attempted.ok:
            result.outcome, result.retryable = DeliveryOutcome.FAILED, attempted.retryable
        result.at = now()
        return result

    def job(command: Delivery, event: Any, stream: faust.StreamT) -> Any:
        async def run() -> bool:
            if command.command_id in delivered.get(command.transaction_id, []):
                # The same command twice in the queue (a replayed engine output): the first
                # delivered it while this one waited behind it.
                log.info("delivery.already_done", command_id=command.command_id)
                await stream.ack(event)
                return True
            try:
                result = await attempt(command)
            except Exception as exc:
                result = DeliveryResult(
                    command_id=command.command_id,
                    transaction_id=command.transaction_id,
                    recipient=command.recipient,
                    event=command.message.event,
                    attempt=command.attempt,
                    try_number=command.try_number,
                    outcome=DeliveryOutcome.FAILED,
                    detail=f"{type(exc).__name__}: {exc}"[:1000],
                )
            log.info(
                "delivery.result",
                protocol=connector.name,
                recipient=command.recipient,
                step=command.message.event.value,
                outcome=result.outcome.value,
                try_number=command.try_number,
                detail=result.detail,
            )
            held = result.detail == HELD
            metrics.delivered(connector.name, result, held, event.message.timestamp)
            await write([as_output("ill.delivery", command.transaction_id, result)])
            accepted = result.outcome is not DeliveryOutcome.FAILED
            if accepted:
                # Durable before the input is acknowledged: replayed after a crash, this
                # command is recognised and not sent twice.
                done = [*delivered.get(command.transaction_id, []), command.command_id]
                await _durable_set(
                    delivered, event, command.transaction_id, done[-DELIVERED_MEMORY:]
                )
                if command.recipient in failing:
                    failing.discard(command.recipient)
                    await partner_back(command.recipient)
            elif result.retryable and result.detail != HELD:
                failing.add(command.recipient)
            await stream.ack(event)
            return accepted

        return run

    async def outbound_agent(stream: faust.StreamT) -> None:
        await delivery.start()
        manual = stream.noack()  # type: ignore[attr-defined]  # StreamT omits noack
        try:
            async for event in manual.events():
                try:
                    command = Delivery.model_validate_json(event.value)
                except ValueError as exc:
                    log.error("delivery.unreadable", topic=event.message.topic, error=str(exc))
                    await manual.ack(event)
                    continue
                if command.command_id in delivered.get(command.transaction_id, []):
                    log.info("delivery.already_done", command_id=command.command_id)
                    await manual.ack(event)
                    continue
                await queues.submit(
                    command.transaction_id, command.recipient, job(command, event, manual)
                )
        finally:
            queues.cancel()
            await delivery.stop()

    topic = app.topic(connector.outbound_topic, **RAW)
    app.agent(topic, name=f"outbound_{connector.name}")(outbound_agent)


def active_items(app: Any, table: Any) -> list[tuple[str, Any]]:
    """The table's rows in this worker's active partitions. With several workers each also
    holds standby copies of the others' partitions (faust's table_standby_replicas): the
    clock, the partner agent and the gauges act on the rows this worker owns only."""
    owned = {table.changelog_topic.get_topic_name(), "ill.inbound"}  # co-partitioned
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in owned}
    count = table.partitions or app.conf.topic_partitions
    # A row's partition is its key's, as the producers' default partitioner placed it.
    return [
        (key, row)
        for key, row in list(table.items())
        if (murmur2(str(key).encode()) & 0x7FFFFFFF) % count in active
    ]


async def _durable_set(table: Any, event: Any, key: str, value: Any) -> None:
    """table[key] = value, returning once the changelog record is acknowledged (faust's own
    assignment only schedules it)."""
    future = table.send_changelog(event.message.partition, key, value)
    table.data[key] = value
    await future
