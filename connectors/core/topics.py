"""The hub's topic names, written once for every layer: the pure domain names the topics its
outputs go to, the Kafka layer creates and reads them, the connectors name their own
(hub/kafka/topics.py loads topics.yaml, which declares each with its settings)."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """The hub's topic names, each written once (topics.yaml declares them). A connector's
    outbound topic is `OUTBOUND_PREFIX` and its name (`Connector.outbound_topic`). Never
    rename one: faust recovers tables from changelogs by name, and readers outside the hub
    follow ill.events."""

    INBOUND = "ill.inbound"
    DELIVERY = "ill.delivery"
    TRANSACTIONS = "ill.transactions"  # the transactions table's changelog
    ROUTING = "ill.routing"
    EVENTS = "ill.events"
    REPLIES = "ill.replies"
    AUDIT = "ill.audit"
    DEADLETTER = "ill.deadletter"
    ITEMS = "ill.items"
    LOCATE = "ill.locate"
    CONTROL = "ill.control"
    LOAD = "ill.load"
    RELAY = "ill.relay"
    RELAY_RESULTS = "ill.relay.results"
    CHECKPOINTS = "ill.checkpoints"
    PARTNERS = "ill.partners"


OUTBOUND_PREFIX = "ill.outbound."
