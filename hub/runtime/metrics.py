"""What the hub counts for Prometheus (`GET /metrics`), and whether it is ready (`GET /ready`).

Counters and histograms are kept by this worker as things happen: the gateway calls
`message_in`, `refused` and `dead_letter`; the transaction agent `written` (every record it
writes) and `applied`; the outbound agents `delivered`. Gauges (open requests per state and
per lender, deliveries waiting, consumer lag) are read at scrape time from this worker's
table, load view and consumer, so they are never out of step with them. Each worker exposes
its own figures; Prometheus adds the counters of several workers up.

Metric names follow Prometheus conventions: `rshub_` prefix, `_total` counters, `_seconds`
histograms. Labels hold directory symbols, protocol names, message kinds and states only
(bounded sets), never request ids, and one vocabulary: `partner` (a directory symbol: the
library a figure is about; for the relay the calling broker, with `member` the library called),
`protocol`, `role` (borrower, lender, either, or hub for the hub's own inputs). docs/monitoring.md's
metric table is checked against `documented()` by a test.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from connectors.core.model import EITHER_SIDE, SENDER, Event
from connectors.core.records import DeliveryOutcome, DeliveryResult
from connectors.core.topics import Topic
from hub.domain.lifecycle import TERMINAL

# No `_created` series: a timestamp per label set doubles what is scraped and nobody graphs it.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
# The process's CPU, memory, open files and start time; the Python runtime's version.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
BUILD = Info("rshub_build", "The running rshub: version and Python", registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latencies from milliseconds (an in-process hop) to minutes (a slow partner, retries).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_CLOSED = {str(state) for state in TERMINAL}

MESSAGES_IN = PromCounter(
    "rshub_messages_in",
    "Messages partners sent that the hub decoded, per partner, protocol and kind",
    ["partner", "protocol", "kind"],
    registry=REGISTRY,
)
MESSAGES_OUT = PromCounter(
    "rshub_messages_out",
    "Messages delivered to (accepted by) partners, per partner, protocol and kind",
    ["partner", "protocol", "kind"],
    registry=REGISTRY,
)
REFUSALS = PromCounter(
    "rshub_refusals",
    "Messages refused to a partner, per protocol and reason (the stage that refused: parse, "
    "authenticate, address, state, apply, unavailable ...)",
    ["protocol", "reason"],
    registry=REGISTRY,
)
REFUSED_UNAUDITED = PromCounter(
    "rshub_refused_unaudited",
    "Inputs refused before authentication and not kept on ill.audit (over the per-source "
    "budget, RSHUB_REFUSED_AUDITS_PER_MINUTE), per protocol",
    ["protocol"],
    registry=REGISTRY,
)
DEAD_LETTERS = PromCounter(
    "rshub_dead_letters",
    "Records written to ill.deadletter by this worker, per stage",
    ["stage"],
    registry=REGISTRY,
)
TRANSITIONS = PromCounter(
    "rshub_state_changes",
    "State changes of transactions, per state reached, partner whose message caused it (hub "
    "for the hub's own inputs) and that partner's role",
    ["state", "partner", "role"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = PromCounter(
    "rshub_delivery_attempts",
    "Calls made to deliver a step (quick retries count each), per partner and protocol",
    ["partner", "protocol"],
    registry=REGISTRY,
)
DELIVERY_FAILURES = PromCounter(
    "rshub_delivery_failures",
    "Deliveries that failed (after their quick retries), per partner, protocol and whether "
    "another try may cure it",
    ["partner", "protocol", "retryable"],
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "rshub_step_seconds",
    "Latency of the hub's steps: inbound (written to ill.inbound) to state change applied; "
    "state change (delivery command written) to delivery accepted by the partner",
    ["step"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)

# The relay (hub.runtime.relay): calls a caller (an NCIP broker) made to a target (a member
# library's responder), by what came of them, and how long the target took to answer.
RELAY_CALLS = PromCounter(
    "rshub_relay_calls",
    "Calls relayed, per partner (the calling broker), member and outcome: ok (answered, a "
    "success), problem (answered with a protocol error, e.g. NCIP Temporary Processing "
    "Failure), failed (no answer: unreachable, timed out, unreadable), replayed (a retry "
    "answered with the first success, the target not called)",
    ["partner", "member", "outcome"],
    registry=REGISTRY,
)
RELAY_SECONDS = Histogram(
    "rshub_relay_target_seconds",
    "How long a relay member's responder took to answer or fail, per partner (the calling "
    "broker) and member (replayed calls are not timed: the member was not called)",
    ["partner", "member"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)


def relayed(caller: str, target: str, outcome: str, ok: bool, elapsed_s: float) -> None:
    """One relayed call's result (`outcome`: answered / failed / replayed)."""
    label = "problem" if outcome == "answered" and not ok else outcome
    RELAY_CALLS.labels(caller, target, "ok" if label == "answered" else label).inc()
    if outcome != "replayed":
        RELAY_SECONDS.labels(caller, target).observe(max(0.0, elapsed_s))


def message_in(partner: str, protocol: str, kind: str) -> None:
    MESSAGES_IN.labels(partner, protocol, kind).inc()


def refused(protocol: str, reason: str) -> None:
    REFUSALS.labels(protocol, reason or "unknown").inc()


def refused_unaudited(protocol: str) -> None:
    REFUSED_UNAUDITED.labels(protocol).inc()


def dead_letter(stage: str) -> None:
    DEAD_LETTERS.labels(stage or "unknown").inc()


def written(topic: str, value: Any) -> None:
    """A record the transaction agent wrote (its JSON-ready value)."""
    if not isinstance(value, dict):
        return
    if topic == Topic.DEADLETTER:
        dead_letter(str(value.get("stage", "")))
    elif topic == Topic.EVENTS:
        kind = value.get("kind")
        if kind == "transition":
            sender = value.get("sender")
            TRANSITIONS.labels(
                str(value.get("to_state", "")), str(sender or "hub"), _role(value.get("event"))
            ).inc()


def _role(event: Any) -> str:
    """Whose side the event that caused a state change is on (the partner's role in it)."""
    try:
        known = Event(event)
    except ValueError:
        return "hub"  # the hub's own inputs: clock ticks, deliveries, staff
    if known in EITHER_SIDE:
        return "either"
    role = SENDER.get(known)
    return role.value if role is not None else "hub"


def applied(topic: str, written_at: float | None) -> None:
    """A record of `topic` (Kafka timestamp `written_at`, seconds) has been applied and its
    outputs acknowledged."""
    if topic == Topic.INBOUND and written_at:
        STEP_SECONDS.labels("inbound_to_state_change").observe(max(0.0, time.time() - written_at))


def delivered(
    protocol: str, result: DeliveryResult, held: bool, commanded_at: float | None
) -> None:
    """The result of one delivery job. `held`: not tried at all (an earlier step to the
    partner waits); `commanded_at`: the command's Kafka timestamp (seconds)."""
    if held or result.outcome is DeliveryOutcome.NOT_APPLICABLE:
        return
    DELIVERY_ATTEMPTS.labels(result.recipient, protocol).inc(max(result.tries, 1))
    if result.outcome is DeliveryOutcome.FAILED:
        retryable = str(result.retryable).lower()
        DELIVERY_FAILURES.labels(result.recipient, protocol, retryable).inc()
        return
    MESSAGES_OUT.labels(result.recipient, protocol, result.event.value).inc()
    if commanded_at:
        STEP_SECONDS.labels("state_change_to_delivery").observe(
            max(0.0, time.time() - commanded_at)
        )


class Views(Collector):
    """Gauges read when scraped: open requests per state and per lender, deliveries waiting
    per partner and status, consumer lag per topic."""

    def __init__(
        self,
        rows: Callable[[], Iterable[Any]],
        lenders: Callable[[], dict[str, int]],
        lag: Callable[[], dict[str, int]],
        attention: Callable[[], int] | None = None,
    ) -> None:
        """`attention`: how many need staff by the operators' definition (the index's: also
        dead letters and requests stuck past RSHUB_STUCK_AFTER_HOURS); without it, the rows
        the engine marked."""
        self.rows, self.lenders, self.lag, self.attention = rows, lenders, lag, attention

    def collect(self) -> Iterator[Metric]:
        states: Counter[str] = Counter()
        waiting: Counter[tuple[str, str]] = Counter()
        attention = 0
        for row in self.rows():
            if not isinstance(row, dict) or row.get("state") in _CLOSED:
                continue
            states[str(row.get("state"))] += 1
            attention += bool(row.get("needs_attention"))
            for pending in row.get("pending") or []:
                recipient = str(pending.get("command", {}).get("recipient", ""))
                waiting[recipient, str(pending.get("status", ""))] += 1
        by_state = GaugeMetricFamily(
            "rshub_open_requests", "Open transactions in this worker, per state", labels=["state"]
        )
        for state, count in sorted(states.items()):
            by_state.add_metric([state], count)
        yield by_state
        stuck = GaugeMetricFamily(
            "rshub_open_requests_needing_attention",
            "Open transactions that need staff, as `rshub find --needs-attention` and the "
            "console count them (parked or failing delivery, dead letter, stuck)",
        )
        if self.attention is not None:
            # The index unreadable for a moment: this worker's own marks instead.
            with contextlib.suppress(Exception):
                attention = self.attention()
        stuck.add_metric([], attention)
        yield stuck
        by_lender = GaugeMetricFamily(
            "rshub_open_requests_by_lender",
            "Open requests each lender holds (the rota's load view), per partner (the lender)",
            labels=["partner"],
        )
        for lender, count in sorted(self.lenders().items()):
            by_lender.add_metric([lender], count)
        yield by_lender
        pending = GaugeMetricFamily(
            "rshub_deliveries_waiting",
            "Steps not yet accepted by their recipient, per partner and status "
            "(in_flight, queued, retry, parked)",
            labels=["partner", "status"],
        )
        for (partner, status), count in sorted(waiting.items()):
            pending.add_metric([partner, status], count)
        yield pending
        lag = GaugeMetricFamily(
            "rshub_consumer_lag",
            "Records on this worker's assigned partitions not yet processed, per topic",
            labels=["topic"],
        )
        for topic, count in sorted(self.lag().items()):
            lag.add_metric([topic], count)
        yield lag


_views: Views | None = None


def watch(views: Views) -> None:
    """Registers the scrape-time gauges (once per process; a second call replaces them)."""
    global _views
    if _views is not None:
        REGISTRY.unregister(_views)
    REGISTRY.register(views)
    _views = views


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def consumer_lag(app: Any) -> dict[str, int]:
    """Per topic: end offset minus the next offset to read, over this worker's assigned
    partitions (faust's consumer keeps both; nothing is asked of the broker)."""
    lag: Counter[str] = Counter()
    consumer = getattr(app, "_consumer", None)  # not created: nothing to say (no start yet)
    if consumer is None:
        return {}
    try:
        assigned = consumer.assignment()
    except Exception:  # not started yet
        return {}
    read = getattr(consumer, "_read_offset", {})
    # A table's changelog is assigned for recovery and standby but never read afterwards:
    # what the worker itself writes there is no backlog (it kept the lag above 0 when idle).
    changelogs = {
        table.changelog_topic.get_topic_name()
        for table in (getattr(app, "tables", None) or {}).values()
        if getattr(table, "changelog_topic", None) is not None
    }
    for tp in assigned:
        if tp.topic in changelogs:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:
            continue
        if end is None:
            continue
        last = read.get(tp)
        lag[tp.topic] += max(0, end - (last + 1 if last is not None else 0))
    return dict(lag)


def table_rows(app: Any, name: str = "transactions") -> Iterable[Any]:
    table = app.tables.get(name) if getattr(app, "tables", None) is not None else None
    return list(table.values()) if table is not None else []


def readiness(app: Any) -> tuple[bool, dict[str, Any]]:
    """Whether this worker is ready for traffic beyond the broker (which the gateway checks):
    not rebalancing, its tables recovered, partitions assigned; and what it found."""
    consumer = getattr(app, "_consumer", None)
    try:
        assigned = len(consumer.assignment()) if consumer is not None else 0
    except Exception:
        assigned = 0
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    recovered = bool(recovery is not None and recovery.completed.is_set())
    rebalancing = bool(getattr(app, "rebalancing", False))
    body = {
        "partitions_assigned": assigned,
        "tables_recovered": recovered,
        "rebalancing": rebalancing,
        "lag": consumer_lag(app),
    }
    return assigned > 0 and recovered and not rebalancing, body
