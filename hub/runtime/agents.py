"""The faust application: the hub's services wired to faust's agents, tables and timer.

Each service is a class of its own, knowing Kafka only through `hub.kafka.steplog` and the
helpers of `hub.kafka.faust_app`: the transaction agent (`transaction_agent.py`), one outbound
agent per protocol (`outbound_agent.py`), the timer (`timer.py`), the partner-back agent
(`partner_back.py`), the locate agent (below) and the relay agent (`relay.py`). Here they are
given their faust agents; the agents' and tables' names are those faust recovers by.
"""

from __future__ import annotations

import os
from typing import Any

import faust
import structlog

from connectors.core.contract import Registry
from connectors.core.directory import Directory
from connectors.core.holdings import Client
from connectors.core.model import now
from connectors.core.records import Locate, Located, PartnerBack
from connectors.core.topics import Topic
from hub.domain.transaction import as_output
from hub.kafka import consumer_guard, fetching, internals
from hub.kafka.faust_app import (
    RAW,
    DurableTable,
    FaustStepLog,
    Producing,
    Records,
    active_items,
    to_every_partition,
    transactions_table,
)
from hub.kafka.partitioning import PARTITIONER
from hub.kafka.producer import KafkaIO
from hub.runtime import patron_notices, relay
from hub.runtime.locate import Locator
from hub.runtime.outbound_agent import OutboundAgent
from hub.runtime.partner_back import PartnerBackAgent
from hub.runtime.partner_queues import PartnerQueues
from hub.runtime.relay import RelayAnswers
from hub.runtime.settings import Settings
from hub.runtime.timer import Timer
from hub.runtime.transaction_agent import TransactionAgent
from hub.runtime.webhooks import Webhooks
from hub.runtime.writing import Writer

log = structlog.get_logger(__name__)


def faust_app(
    settings: Settings, bootstrap_servers: str, fetch_wait_ms: int | None
) -> fetching.App:
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
        producer_partitioner=PARTITIONER,  # Kafka's default, its hashes kept
        # Said, not defaulted: faust reads PROCESSING_GUARANTEE from the environment, and
        # `Producing` writes to the producer itself, past faust's transaction manager.
        processing_guarantee="at_least_once",
        web_enabled=True,
        table_cleanup_interval=3600.0,
        TableManager=internals.TableManager,
    )
    app.fetch_wait_ms = (
        fetch_wait_ms
        if fetch_wait_ms is not None
        else fetching.detect(bootstrap_servers, settings.fetch_wait_ms)
    )
    app.idle_fetch_wait_ms = settings.idle_fetch_wait_ms
    return app


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
    app = faust_app(settings, bootstrap_servers, fetch_wait_ms)
    transactions = transactions_table(app)
    delivered = app.Table("delivered", default=list, partitions=4)

    def transaction_state(key: str) -> str | None:
        row = transactions.get(key)
        return str(row["state"]) if row else None

    app.transaction_state = transaction_state
    hub_io = io or KafkaIO(bootstrap_servers)
    producing = Producing(app)  # one for every service: each write's records in order
    writer = Writer(producing, settings.max_record_bytes)
    steps = FaustStepLog(app, transactions, producing)
    agent = TransactionAgent(steps, directory, hub_io, settings.max_record_bytes)

    @app.agent(app.topic(Topic.INBOUND, Topic.DELIVERY, Topic.CONTROL, **RAW))
    async def transaction_agent(stream: faust.StreamT) -> None:
        steps.attach(stream)
        await agent.run()

    consumer_guard.install(app)

    def owned() -> list[tuple[str, Any]]:
        return active_items(app, transactions)

    partner_back = PartnerBackAgent(owned, writer)

    @app.agent(app.topic(Topic.PARTNERS, **RAW))
    async def partner_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await partner_back.handle(PartnerBack.model_validate_json(event.value))

    _outbound_agents(
        app,
        settings,
        directory,
        connectors,
        connector_settings,
        delivering,
        writer,
        DurableTable(delivered, list, producing),
    )
    _relay_agent(app, settings, directory, connectors, connector_settings, hub_io, relay_answers)

    locator = Locator(directory, catalogue_clients or {}, settings.holdings_cache_s)

    @app.agent(app.topic(Topic.LOCATE, **RAW), concurrency=settings.locate_concurrency)
    async def locate_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            command = Locate.model_validate_json(event.value)
            results = await locator.locate(command.lenders, command.terms)
            located = Located(
                locate_id=command.locate_id, transaction_id=command.transaction_id, results=results
            )
            await writer.write([as_output(Topic.CONTROL, command.transaction_id, located)])

    timer = Timer(owned, writer)

    @app.timer(settings.timer_interval_s)
    async def clock() -> None:
        await timer.tick()

    app.add_dependency(Webhooks(settings, directory, bootstrap_servers))  # docs/api.md
    app.add_dependency(
        patron_notices.service(
            app,
            transactions,
            settings,
            directory,
            bootstrap_servers,
            connectors,
            connector_settings,
        )
    )
    return app


def _outbound_agents(
    app: faust.App,
    settings: Settings,
    directory: Directory,
    connectors: Registry,
    connector_settings: dict[str, Any] | None,
    delivering: set[str] | None,
    writer: Writer,
    table: DurableTable,
) -> None:
    """One faust agent reading ill.outbound.<protocol> per connector with a sender (of those
    this worker delivers for), all sharing the partners' queues."""
    queues = PartnerQueues(settings.delivery_per_partner, settings.delivery_total)
    shared = settings.limits()
    partners_topic = app.topic(Topic.PARTNERS, **RAW)

    async def announce(symbol: str) -> None:
        # Every partition: each worker looks after the transactions it holds.
        back = PartnerBack(partner=symbol, at=now())
        await to_every_partition(partners_topic, symbol, back.model_dump_json().encode())

    for connector in connectors:
        if connector.sender is None:
            continue
        if delivering is not None and connector.name not in delivering:
            continue
        own = (connector_settings or {}).get(connector.name) or connector.settings()
        sender = connector.sender(shared, own, connector.codec)
        agent = OutboundAgent(
            connector, sender, directory, settings, writer, table, queues, announce
        )
        app.agent(app.topic(connector.outbound_topic, **RAW), name=f"outbound_{connector.name}")(
            _outbound_body(agent)
        )


def _outbound_body(agent: OutboundAgent) -> Any:
    async def outbound_agent(stream: faust.StreamT) -> None:
        await agent.run(Records(stream))

    return outbound_agent


def _relay_agent(
    app: faust.App,
    settings: Settings,
    directory: Directory,
    connectors: Registry,
    connector_settings: dict[str, Any] | None,
    hub_io: KafkaIO,
    relay_answers: RelayAnswers | None,
) -> None:
    relaying = relay.relay_senders(connectors, settings.limits(), os.environ)
    if not relaying:
        return
    # Relay connectors (NCIP brokers) declare the relay topic; their settings say how many
    # calls run at once and how long a repeated call gets the first answer again.
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
