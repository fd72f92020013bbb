"""The faust application: the transaction agent and one outbound agent per protocol.

The transaction agent owns the `transactions` table (changelog-backed, so a restarted worker
recovers it) and does I/O only to write what `hub.transactions` returns. It writes every output
and waits for the broker's acknowledgement before updating the row; faust commits the input
offset only after that. A crash in between re-applies the message: the engine's deduplication
and deterministic record ids make that harmless.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import faust
import structlog

from hub.directory import Directory
from hub.followers import LoadIndex
from hub.locate import Client, Locator
from hub.model import Message, NotApplicable, now
from hub.outbound import Outbound
from hub.records import (
    CONTROL,
    AuditRecord,
    DeadLetter,
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    Locate,
    Located,
    Tick,
)
from hub.settings import Settings
from hub.transactions import (
    Output,
    Transaction,
    apply,
    apply_control,
    apply_delivery,
    as_output,
)

log = structlog.get_logger(__name__)
DELIVERED_MEMORY = 100
HUB_AGENCY = "RSHUB"


def create_app(
    settings: Settings,
    directory: Directory,
    bootstrap_servers: str,
    outbounds: list[Outbound],
    catalogue_clients: dict[str, Client] | None = None,
) -> faust.App:
    app = faust.App(
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
        web_enabled=True,
        table_cleanup_interval=3600.0,
    )
    raw = {"key_type": str, "value_type": bytes, "value_serializer": "raw"}
    inputs = app.topic("ill.inbound", "ill.delivery", "ill.control", **raw)
    transactions = app.Table("transactions", default=None, partitions=4)
    delivered = app.Table("delivered", default=list, partitions=4)
    topics: dict[str, faust.types.TopicT] = {}
    load = LoadIndex(bootstrap_servers)

    async def write(outputs: list[Output]) -> None:
        futures = []
        for output in outputs:
            topic = topics.setdefault(output.topic, app.topic(output.topic, **raw))
            value = None if output.value is None else json.dumps(output.value).encode()
            futures.append(await topic.send(key=output.key, value=value))
        for future in futures:
            await future  # acknowledged by the broker

    async def dead(stage: str, error: str, key: str, detail: dict[str, Any]) -> None:
        letter = DeadLetter(stage=stage, error=error, transaction_id=key, detail=detail)
        await write([as_output("ill.deadletter", key, letter)])

    @app.agent(inputs)
    async def transaction_agent(stream: faust.StreamT) -> None:
        # The rota reads the load counts: rebuild them from ill.load before the first request.
        await load.start()
        await load.ready.wait()
        try:
            await _transactions(stream)
        finally:
            await load.stop()

    async def _transactions(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
            topic = event.message.topic
            try:
                row = transactions.get(key)
                txn = Transaction.model_validate(row) if row else None
                if topic == "ill.inbound":
                    message = Message.model_validate_json(event.value)
                    result = apply(txn, message, directory, load.book)
                elif topic == "ill.delivery":
                    report = DeliveryResult.model_validate_json(event.value)
                    result = apply_delivery(txn, report, directory, load.book)
                else:
                    control = CONTROL.validate_json(event.value)
                    result = apply_control(txn, control, directory, load.book)
            except ValueError as exc:
                log.error("agent.unreadable", topic=topic, key=key, error=str(exc))
                await dead(
                    "apply",
                    f"unreadable record on {topic}: {exc}",
                    key,
                    {"offset": event.message.offset},
                )
                continue
            await write(result.outputs)
            for output in result.outputs:
                if output.topic == "ill.load":
                    # Counted now, not when the follower reads it back: the next request
                    # this worker routes must see it.
                    load.book.apply(output.key, output.value)
            if result.transaction is not None:
                transactions[key] = result.transaction.model_dump(mode="json")
            if result.verdict is not None:
                log.info(
                    "transaction.applied",
                    transaction_id=key,
                    outcome=result.verdict.outcome.value,
                    state=result.verdict.state,
                )

    for outbound in outbounds:
        _outbound_agent(app, settings, directory, outbound, write, delivered, raw)

    locator = Locator(directory, catalogue_clients or {}, settings.holdings_cache_s)

    @app.agent(app.topic("ill.locate", **raw), concurrency=settings.locate_concurrency)
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
        for key, row in list(transactions.items()):
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


def _outbound_agent(
    app: faust.App,
    settings: Settings,
    directory: Directory,
    outbound: Outbound,
    write: Any,
    delivered: Any,
    raw: dict[str, Any],
) -> None:
    """The agent delivering ill.outbound.<protocol>. A command already delivered (re-read
    after a restart) is skipped; the result of every delivery goes to ill.delivery."""
    delivery = outbound.delivery(settings)

    async def deliver(command: Delivery) -> None:
        done = delivered[command.transaction_id]
        if command.command_id in done:
            log.info("delivery.already_done", command_id=command.command_id)
            return
        partner = directory.partner(command.recipient)
        sender = directory.partner(command.message.sender)
        result = DeliveryResult(
            command_id=command.command_id,
            transaction_id=command.transaction_id,
            recipient=command.recipient,
            event=command.message.event,
            attempt=command.attempt,
            outcome=DeliveryOutcome.SENT,
        )
        if partner is None or not partner.endpoint:
            result.outcome, result.detail = DeliveryOutcome.FAILED, "partner has no endpoint"
        else:
            try:
                body = outbound.render(
                    command.message, sender.agency_id if sender else HUB_AGENCY, partner
                )
            except NotApplicable as exc:
                result.outcome, result.detail = DeliveryOutcome.NOT_APPLICABLE, str(exc)
            else:
                audit = AuditRecord(
                    direction="out",
                    protocol=outbound.protocol,
                    partner=partner.symbol,
                    body=body.decode("latin-1"),
                    content_type=outbound.content_type,
                    transaction_id=command.transaction_id,
                )
                await write([as_output("ill.audit", command.transaction_id, audit)])
                attempted, tries = await delivery.deliver(partner, body)
                result.tries, result.detail = tries, attempted.detail
                if not attempted.ok:
                    result.outcome = DeliveryOutcome.FAILED
        log.info(
            "delivery.result",
            protocol=outbound.protocol,
            recipient=command.recipient,
            step=command.message.event.value,
            outcome=result.outcome.value,
            detail=result.detail,
        )
        await write([as_output("ill.delivery", command.transaction_id, result)])
        delivered[command.transaction_id] = [*done, command.command_id][-DELIVERED_MEMORY:]

    async def outbound_agent(stream: faust.StreamT) -> None:
        await delivery.start()
        try:
            async for event in stream.events():
                await deliver(Delivery.model_validate_json(event.value))
        finally:
            await delivery.stop()

    topic = app.topic(f"ill.outbound.{outbound.protocol}", **raw)
    app.agent(topic, name=f"outbound_{outbound.protocol}")(outbound_agent)
