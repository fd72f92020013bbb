"""The operators' index: an embedded SQLite file kept from the hub's topics.

`rshub find`, `rshub show`, `rshub route show` and `rshub deadletters` read this file instead of
scanning topics on each call. `rshub serve` follows the topics into it as they are written
(`follow`); the commands first read what was written since (`catch_up`), so they are exact
even when no hub runs. Applying is idempotent, so the hub and a command may both apply:

- every timeline entry is keyed by (topic, partition, offset) and inserted once;
- a transaction's row is replaced only by a later snapshot (offset) of its partition;
- the next offset to read per partition is kept in the same SQLite transaction as the rows.

The index keeps what it has read after the topics' retention has deleted it, so a loan open
for months keeps its whole story (docs/production.md: Retention).

What comes from where:

    ill.transactions    the row of each transaction (state, borrower, patron, title, lenders,
                        what needs attention, deliveries waiting): the transaction
                        table's changelog
    ill.inbound         messages in (with the ref of their raw bytes on ill.audit)
    ill.audit           raw bytes in and out
    ill.events          state changes, refusals, what the engine made of a delivery
    ill.routing         routing decisions
    ill.outbound.*      delivery commands (messages out)
    ill.delivery        delivery attempts and their outcome
    ill.deadletter      refused messages and records, with the reason
    ill.control         staff commands (routing, redelivery) and holdings found
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from connectors.core.contract import FOR_STAFF
from connectors.core.records import audit_bytes
from connectors.core.topics import OUTBOUND_PREFIX, Topic
from hub.kafka import codec as jsonbytes
from hub.kafka import incarnation, partition_ends

log = structlog.get_logger(__name__)

INDEX_FILE_ENV = "RSHUB_INDEX_FILE"
STUCK_AFTER_ENV = "RSHUB_STUCK_AFTER_HOURS"
STUCK_AFTER_HOURS = 72.0
BATCH_RECORDS = 2000
FOLLOW_WAIT_MS = 200  # how long a fetch of the following consumer waits at the broker
# Once caught up, the following consumer rests with its partitions paused (no fetch at all)
# before it reads again: FOLLOW_INTERVAL_S, or REST_PER_ROUND times as long as the round took,
# whichever is longer. On the embedded broker every fetch that returns records lists every
# batch of each partition it reads from, so a round costs the broker in proportion to all it
# holds: following as fast as records came took half the hub's throughput by 10,000 requests,
# and with a fixed rest the index's rounds alone held the broker by 30,000 (bench.longrun).
# A round therefore also reads one partition at a time (a fetch lists one partition, and
# never runs out of time listing all of them, which returned nothing, ever). The console's
# views lag by a round and a rest; `rshub find`/`show` are exact anyway (they read what was
# written since first).
FOLLOW_INTERVAL_S = 2.0
REST_PER_ROUND = 4.0
MAX_REST_S = 60.0  # a long first round (a new index, a backlog) must not leave it stale long
# A round's records are applied together, up to this many at a time (one SQLite transaction:
# a page shows a round's records together, not one topic's news without another's older
# records, unless a round brings more than this).
ROUND_RECORDS = 10_000
# The index's fetch wait may grow to INDEX_MAX_WAIT_MS while the broker answers with nothing
# (see hub.kafka.fetching.Pacer); a read waits longer than that, so an empty read is an empty
# answer, and a round moves on after EMPTY_READS of them in a row (the partition is too
# large for the embedded broker to list within a fetch's wait): it rests rather than never.
INDEX_MAX_WAIT_MS = 2000
READ_TIMEOUT_MS = INDEX_MAX_WAIT_MS + 1000
EMPTY_READS = 5

TOPICS = (
    Topic.TRANSACTIONS,
    Topic.INBOUND,
    Topic.AUDIT,
    Topic.EVENTS,
    Topic.ROUTING,
    Topic.DELIVERY,
    Topic.DEADLETTER,
    Topic.CONTROL,
)

# States in which the hub waits for a partner's next step within days; a transaction that
# stays in one of them past the threshold is "stuck". Loaned and Received last until the
# due date (the hub's own timers send Overdue), so they are not on the list.
WAITING_STATES = {
    "New": "not started",
    "Locating": "catalogue search not finished",
    "Requested": "the lender has not answered",
    "WillSupply": "the lender has not shipped",
    "CancelPending": "the lender has not answered the cancel",
    "RenewPending": "the lender has not answered the renewal",
    "Returned": "the lender has not confirmed the return",
}
# States in which a lender holds the request unanswered: a step handed to staff as a link
# is still theirs to submit only then (as `rshub deliveries` lists them).
LINK_STATES = frozenset({"Requested", "WillSupply"})
CLOSED_STATES = frozenset({"LoanCompleted", "CopyCompleted", "Cancelled", "Unfilled", "Expired"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lost (transaction_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    state TEXT, borrower TEXT, borrower_request_id TEXT, patron TEXT, title TEXT, author TEXT,
    lender TEXT, lenders TEXT NOT NULL DEFAULT '', needs_attention TEXT,
    waiting INTEGER NOT NULL DEFAULT 0, parked INTEGER NOT NULL DEFAULT 0,
    created TEXT, progressed TEXT, updated TEXT,
    snapshot_partition INTEGER, snapshot_offset INTEGER NOT NULL DEFAULT -1);
CREATE INDEX IF NOT EXISTS transactions_request ON transactions (borrower, borrower_request_id);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state);
-- A borrower's later ids for a request (an ISO 18626 Retry gives it one), which find it as its
-- first id does.
CREATE TABLE IF NOT EXISTS request_ids (
    request_id TEXT NOT NULL, borrower TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (request_id, borrower, id));
CREATE TABLE IF NOT EXISTS entries (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    transaction_id TEXT, at TEXT NOT NULL, kind TEXT NOT NULL, summary TEXT NOT NULL,
    ref TEXT, body TEXT,
    PRIMARY KEY (topic, partition, offset));
CREATE INDEX IF NOT EXISTS entries_transaction ON entries (transaction_id, at);
CREATE TABLE IF NOT EXISTS audit (
    ref TEXT PRIMARY KEY, transaction_id TEXT, at TEXT NOT NULL, direction TEXT,
    protocol TEXT, partner TEXT, content_type TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_transaction ON audit (transaction_id, at);
CREATE TABLE IF NOT EXISTS deadletters (
    ref TEXT PRIMARY KEY, at TEXT NOT NULL, stage TEXT, error TEXT, partner TEXT,
    protocol TEXT, transaction_id TEXT, audit_ref TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS deadletters_at ON deadletters (at);
CREATE TABLE IF NOT EXISTS milestones (
    id TEXT PRIMARY KEY, borrower TEXT, lender TEXT, service TEXT,
    requested INTEGER, shipped INTEGER, received INTEGER, returned INTEGER, closed INTEGER,
    outcome TEXT, overdue INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS milestones_requested ON milestones (requested);
CREATE TABLE IF NOT EXISTS asks (
    id TEXT NOT NULL, attempt INTEGER NOT NULL, lender TEXT NOT NULL, asked INTEGER NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0, borrower TEXT, outcome TEXT,
    shipped INTEGER, received INTEGER, returned INTEGER, closed INTEGER,
    overdue INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, attempt));
CREATE INDEX IF NOT EXISTS asks_asked ON asks (asked);
-- The statistics per lender and per pair read every ask in this order, from this index
-- alone (hub.ops.statistics): grouped as they come, no sort, no table look-ups.
CREATE INDEX IF NOT EXISTS asks_pair ON asks (
    lender, borrower, asked, superseded, outcome, shipped, received, returned, closed, overdue,
    lost);
CREATE INDEX IF NOT EXISTS milestones_borrower ON milestones (
    borrower, requested, outcome, shipped, received, returned, closed, overdue, lost);
"""
# An ask carries its request's milestones where its lender is the one that shipped, so the
# statistics per lender read one table (a join over every ask cost most of their time). Kept
# in step from both sides: the topics of requests, routing and state changes are read in no
# particular order relative to each other.
SYNC_ASKS = """
UPDATE asks SET borrower = m.borrower, outcome = m.outcome,
    shipped = CASE WHEN m.lender = asks.lender THEN m.shipped END,
    received = CASE WHEN m.lender = asks.lender THEN m.received END,
    returned = CASE WHEN m.lender = asks.lender THEN m.returned END,
    closed = CASE WHEN m.lender = asks.lender THEN m.closed END,
    overdue = coalesce(m.overdue AND m.lender = asks.lender, 0),
    lost = coalesce(m.lost AND m.lender = asks.lender, 0)
FROM milestones m WHERE m.id = asks.id AND asks.id = ?"""
# When a transaction reached each stage, for the statistics (hub.ops.statistics): the first
# transition into one of these states marks the stage. Times there are Unix seconds (the
# statistics subtract and group them over every request; ISO text would be parsed each time).
MILESTONE_OF_STATE = {
    "Loaned": "shipped",
    "CopyCompleted": "shipped",
    "Received": "received",
    "Returned": "returned",
}
OUTCOME_OF_STATE = {
    "LoanCompleted": "filled",
    "CopyCompleted": "filled",
    "Cancelled": "cancelled",
    "Unfilled": "unfilled",
    "Expired": "expired",
}


def index_path(data_dir: Path, environ: dict[str, str] | None = None) -> Path:
    """RSHUB_INDEX_FILE, else <RSHUB_DATA_DIR>/index.sqlite3."""
    env = os.environ if environ is None else environ
    return Path(env.get(INDEX_FILE_ENV) or data_dir / "index.sqlite3")


def stuck_after(environ: dict[str, str] | None = None) -> timedelta:
    env = os.environ if environ is None else environ
    raw = env.get(STUCK_AFTER_ENV) or str(STUCK_AFTER_HOURS)
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(f"{STUCK_AFTER_ENV}={raw!r}: not a number of hours") from None
    if hours <= 0:
        raise ValueError(f"{STUCK_AFTER_ENV}={raw!r}: must be more than 0")
    return timedelta(hours=hours)


@dataclass
class Record:
    """What the index needs of a Kafka record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str
    value: bytes | None

    @property
    def at(self) -> str:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat()

    @property
    def ref(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass
class Criteria:
    borrower: str | None = None
    request_id: str | None = None
    patron: str | None = None
    lender: str | None = None
    title: str | None = None
    states: list[str] = field(default_factory=list)
    older_than: timedelta | None = None
    open_only: bool = False
    needs_attention: bool = False
    limit: int = 50
    # Created at or after `created_from`, before `created_to` (ISO times, UTC).
    created_from: str | None = None
    created_to: str | None = None
    # The order (a key of SORTS) and the page: `offset` rows skipped.
    sort: str = "created"
    descending: bool = True
    offset: int = 0


# The orders a list of transactions can be read in, by name; the id breaks ties, so paging
# through equal values neither skips nor repeats a row.
SORTS: dict[str, str] = {
    "created": "created",
    "progressed": "coalesce(progressed, created)",
    "state": "state",
    "borrower": "borrower",
    "request_id": "borrower_request_id",
    "patron": "patron",
    "lender": "lender",
    "title": "lower(title)",
    "id": "id",
}


class Index:
    def __init__(
        self, path: Path, redact: dict[str, Callable[[bytes], bytes]] | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Per protocol: a body's credentials replaced before the index keeps it, so no page,
        # command or export built on the index can show one (the ARTEmail customer code).
        self.redact = redact or {}
        # One connection, used by one task at a time (possibly from a worker thread).
        self.db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the follower
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # Added after the first release: an index made before gets the column here.
        for table, column in (
            ("audit", "size INTEGER"),
            ("deadletters", "acknowledged TEXT"),
            ("deadletters", "replayed TEXT"),
            ("transactions", "failing TEXT"),
            ("transactions", "deadlines TEXT"),
            ("transactions", "patron_name TEXT"),
        ):
            with contextlib.suppress(sqlite3.OperationalError):  # "duplicate column name"
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        self.handlers: dict[str, Callable[[Record, Any], None]] = {
            Topic.TRANSACTIONS: self._snapshot,
            Topic.INBOUND: self._inbound,
            Topic.AUDIT: self._audit,
            Topic.EVENTS: self._event,
            Topic.ROUTING: self._routing,
            Topic.DELIVERY: self._delivery,
            Topic.DEADLETTER: self._deadletter,
            Topic.CONTROL: self._control,
        }

    def close(self) -> None:
        self.db.close()

    # -- keeping it ------------------------------------------------------------------------

    def incarnation(self) -> str | None:
        """The broker life (hub.incarnation) the kept offsets belong to, if one was seen."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'incarnation'").fetchone()
        return None if row is None else str(row["value"])

    def read_again(self, starts: dict[tuple[str, int], int], life: str | None, label: str) -> None:
        """The broker was replaced: each partition in `starts` is read again from its offset
        there. What the index read at those offsets before is kept under the topic name with
        `label` appended (a story stays whole; the offsets are free for the new records), and
        a transaction's row taken from there may be replaced by an older offset's. The
        transactions with a step there are marked: the broker no longer holds it."""
        now = datetime.now(UTC).isoformat()
        with self.db:
            for (topic, partition), start in starts.items():
                self.db.execute(
                    "INSERT OR IGNORE INTO lost (transaction_id, at) SELECT DISTINCT "
                    "transaction_id, ? FROM entries WHERE topic = ? AND partition = ? "
                    "AND offset >= ? AND transaction_id IS NOT NULL",
                    (now, topic, partition, start),
                )
                if topic == Topic.TRANSACTIONS:
                    self.db.execute(
                        "INSERT OR IGNORE INTO lost (transaction_id, at) SELECT id, ? "
                        "FROM transactions WHERE snapshot_partition = ? AND snapshot_offset >= ?",
                        (now, partition, start),
                    )
                self.db.execute(
                    "UPDATE entries SET topic = topic || ? "
                    "WHERE topic = ? AND partition = ? AND offset >= ?",
                    (label, topic, partition, start),
                )
                if topic == Topic.TRANSACTIONS:
                    self.db.execute(
                        "UPDATE transactions SET snapshot_offset = -1 "
                        "WHERE snapshot_partition = ? AND snapshot_offset >= ?",
                        (partition, start),
                    )
                self.db.execute(
                    "INSERT OR REPLACE INTO offsets (topic, partition, next) VALUES (?, ?, ?)",
                    (topic, partition, start),
                )
            if life is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('incarnation', ?)",
                    (life,),
                )

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, partition, next FROM offsets")
        return {(r["topic"], r["partition"]): r["next"] for r in rows}

    def apply(self, records: Iterable[Record]) -> int:
        """Applies records (one SQLite transaction); the number applied."""
        done: dict[tuple[str, int], int] = {}
        count = 0
        with self.db:
            for record in records:
                handler = self.handlers.get(record.topic)
                if handler is None and record.topic.startswith(OUTBOUND_PREFIX):
                    handler = self._outbound
                # No value: a tombstone, or a filler a broker restore put in a dropped
                # record's place (hub.snapshots); only its offset counts.
                if handler is not None and record.value is not None:
                    try:
                        handler(record, jsonbytes.loads(record.value))
                    except (ValueError, KeyError, TypeError, AttributeError) as error:
                        # A record the index cannot read is skipped, not a stopped index.
                        log.warning("index.unreadable", ref=record.ref, error=str(error)[:200])
                done[record.topic, record.partition] = record.offset + 1
                count += 1
            self.db.executemany(
                "INSERT INTO offsets (topic, partition, next) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next = max(next, excluded.next)",
                [(t, p, n) for (t, p), n in done.items()],
            )
        return count

    def _entry(
        self,
        record: Record,
        kind: str,
        summary: str,
        transaction_id: str | None = None,
        ref: str | None = None,
        body: Any = None,
    ) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.topic,
                record.partition,
                record.offset,
                transaction_id or record.key,
                record.at,
                kind,
                summary,
                ref,
                None if body is None else jsonbytes.dumps(body).decode(),
            ),
        )

    def _touch(self, transaction_id: str, at: str) -> None:
        self.db.execute(
            "INSERT INTO transactions (id, created, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET created = min(coalesce(created, excluded.created), "
            "excluded.created), updated = max(coalesce(updated, ''), excluded.updated)",
            (transaction_id, at, at),
        )

    def _snapshot(self, record: Record, row: dict[str, Any]) -> None:
        txn = str(row.get("id") or record.key)
        self._touch(txn, record.at)
        request = row.get("request") or {}
        bibliographic = request.get("bibliographic") or {}
        attempts = [a.get("lender") for a in row.get("attempts") or [] if a.get("lender")]
        pending = row.get("pending") or []
        self.db.execute(
            "UPDATE transactions SET state = ?, borrower = ?, borrower_request_id = ?, "
            "patron = ?, title = ?, author = ?, lender = ?, lenders = ?, needs_attention = ?, "
            "waiting = ?, parked = ?, failing = ?, deadlines = ?, snapshot_partition = ?, "
            "snapshot_offset = ? WHERE id = ? AND snapshot_offset < ?",
            (
                row.get("state"),
                row.get("borrower"),
                row.get("borrower_request_id"),
                request.get("patron_id"),
                bibliographic.get("title"),
                bibliographic.get("author"),
                attempts[-1] if attempts else None,
                "," + ",".join(attempts) + "," if attempts else "",
                row.get("needs_attention"),
                sum(1 for p in pending if p.get("status") in ("retry", "parked")),
                sum(1 for p in pending if p.get("status") == "parked"),
                _failing(pending),
                json.dumps(
                    {
                        "lender": row.get("lender_deadline"),
                        "due": row.get("due_date"),
                        "lender_symbol": attempts[-1] if attempts else None,
                    }
                ),
                record.partition,
                record.offset,
                txn,
                record.offset,
            ),
        )

    def _inbound(self, record: Record, message: dict[str, Any]) -> None:
        txn = str(message.get("transaction_id") or record.key)
        self._touch(txn, record.at)
        event, sender = message.get("event"), message.get("sender") or "?"
        protocol = message.get("source_protocol") or ""
        summary = f"{event} from {sender}" + (f" ({protocol})" if protocol else "")
        if message.get("request_id"):
            summary += f", request id {message['request_id']}"
        self._entry(record, "in", summary, txn, message.get("audit_ref"), message)
        if event == "Retry" and message.get("previous_request_id"):
            # The codec keeps a Retry's new id as previous_request_id (hub.domain.effects).
            self.db.execute(
                "INSERT OR IGNORE INTO request_ids (request_id, borrower, id) VALUES (?, ?, ?)",
                (message["previous_request_id"], sender, txn),
            )
        if event == "Request":  # until the first snapshot says more
            copy = message.get("service_type") == "Copy" or message.get("request_format") in (
                "Digital",
                "NonReturnable",
            )
            self.db.execute(
                "INSERT INTO milestones (id, borrower, service, requested) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET borrower = excluded.borrower, "
                "service = excluded.service, "
                "requested = min(coalesce(requested, excluded.requested), excluded.requested)",
                (txn, sender, "copy" if copy else "loan", record.timestamp_ms // 1000),
            )
            self.db.execute(SYNC_ASKS, (txn,))
            bibliographic = message.get("bibliographic") or {}
            self.db.execute(
                "UPDATE transactions SET borrower = coalesce(borrower, ?), "
                "borrower_request_id = coalesce(borrower_request_id, ?), "
                "patron = coalesce(patron, ?), patron_name = coalesce(patron_name, ?), "
                "title = coalesce(title, ?), author = coalesce(author, ?) WHERE id = ?",
                (
                    sender,
                    message.get("request_id"),
                    message.get("patron_id"),
                    _patron_name(message),
                    bibliographic.get("title"),
                    bibliographic.get("author"),
                    txn,
                ),
            )

    def _audit(self, record: Record, audit: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO audit (ref, transaction_id, at, direction, protocol, partner,"
            " content_type, body, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.ref,
                audit.get("transaction_id"),
                record.at,
                audit.get("direction"),
                audit.get("protocol"),
                audit.get("partner"),
                audit.get("content_type"),
                self._shown(audit).decode("latin-1"),
                audit.get("size") if audit.get("truncated") else None,  # only a prefix kept
            ),
        )

    def _shown(self, audit: dict[str, Any]) -> bytes:
        body = audit_bytes(audit)
        redact = self.redact.get(str(audit.get("protocol")))
        return redact(body) if redact else body

    def _event(self, record: Record, change: dict[str, Any]) -> None:
        txn = str(change.get("transaction_id") or record.key)
        self._touch(txn, record.at)
        kind, detail = change.get("kind", ""), change.get("detail") or ""
        before, after = change.get("from_state"), change.get("to_state")
        who = f" from {change['sender']}" if change.get("sender") else ""
        if kind == "transition":
            self._milestone(txn, record.timestamp_ms // 1000, change)
            summary = f"{before} -> {after} ({change.get('event')}{who})"
            self.db.execute(
                "UPDATE transactions SET progressed = max(coalesce(progressed, ''), ?), "
                "state = CASE WHEN snapshot_offset < 0 THEN ? ELSE state END WHERE id = ?",
                (record.at, after, txn),
            )
        elif kind == "refused":
            summary = f"refused {change.get('event')}{who} in {before}"
        elif kind == "staff":  # a staff note or message: the detail holds who and what
            summary = f"{change.get('event')}{who}"
        else:  # what the engine made of a delivery report (next try, parked, next lender)
            summary = f"{change.get('event')} ({change.get('sender') or '?'})"
            kind = "decided"
        if detail:
            summary += f": {detail}"
        self._entry(record, "state" if kind == "transition" else kind, summary, txn, body=change)

    def _milestone(self, txn: str, at: int, change: dict[str, Any]) -> None:
        after, event = change.get("to_state") or "", change.get("event")
        stage, outcome = MILESTONE_OF_STATE.get(after), OUTCOME_OF_STATE.get(after)
        sets: list[str] = []
        values: list[Any] = []
        if stage is not None:  # the first time only (a renewal's Received is not a receipt)
            sets.append(f"{stage} = coalesce({stage}, ?)")
            values.append(at)
            if stage == "shipped" and change.get("sender"):
                sets.append("lender = coalesce(lender, ?)")
                values.append(change["sender"])
        if outcome is not None:
            sets += ["closed = coalesce(closed, ?)", "outcome = coalesce(outcome, ?)"]
            values += [at, outcome]
        if after == "Overdue":
            sets.append("overdue = 1")
        if event == "Lost":
            sets.append("lost = 1")
        if sets:
            # State changes may be read before the request (another topic): a row to fill.
            self.db.execute("INSERT OR IGNORE INTO milestones (id) VALUES (?)", (txn,))
            self.db.execute(f"UPDATE milestones SET {', '.join(sets)} WHERE id = ?", (*values, txn))
            self.db.execute(SYNC_ASKS, (txn,))

    def _routing(self, record: Record, decision: dict[str, Any]) -> None:
        txn = str(decision.get("transaction_id") or record.key)
        if decision.get("chosen"):
            attempt = int(decision.get("attempt") or 0)
            self.db.execute(
                "INSERT OR IGNORE INTO asks (id, attempt, lender, asked) VALUES (?, ?, ?, ?)",
                (txn, attempt, decision["chosen"], record.timestamp_ms // 1000),
            )
            # Asked of another lender: the earlier asks were not filled by theirs.
            self.db.execute(
                "UPDATE asks SET superseded = 1 WHERE id = ? AND attempt < ?", (txn, attempt)
            )
            self.db.execute(SYNC_ASKS, (txn,))
        skipped = ", ".join(
            f"{s.get('lender')}: {s.get('reason')}" for s in decision.get("skipped") or []
        )
        summary = (
            f"attempt {decision.get('attempt')}: {decision.get('chosen') or 'nobody'} "
            f"({decision.get('reason')})" + (f"; skipped {skipped}" if skipped else "")
        )
        self._entry(record, "routing", summary, txn, body=decision)

    def _outbound(self, record: Record, command: dict[str, Any]) -> None:
        txn = str(command.get("transaction_id") or record.key)
        message = command.get("message") or {}
        summary = (
            f"{message.get('event')} to {command.get('recipient')} "
            f"({command.get('protocol') or record.topic.removeprefix(OUTBOUND_PREFIX)})"
            + (f", try {command['try_number']}" if command.get("try_number", 1) > 1 else "")
        )
        self._entry(record, "out", summary, txn, body=command)

    def _delivery(self, record: Record, result: dict[str, Any]) -> None:
        txn = str(result.get("transaction_id") or record.key)
        calls = result.get("tries", 1)
        summary = (
            f"{result.get('event')} to {result.get('recipient')}: {result.get('outcome')} "
            f"({calls} call{'s' if calls != 1 else ''})"
            + (f": {result['detail']}" if result.get("detail") else "")
        )
        self._entry(record, "delivery", summary, txn, body=result)

    def _deadletter(self, record: Record, letter: dict[str, Any]) -> None:
        if "mark" in letter:
            self._mark(record, letter)
            return
        self.db.execute(
            "INSERT OR IGNORE INTO deadletters (ref, at, stage, error, partner, protocol, "
            "transaction_id, audit_ref, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.ref,
                letter.get("at") or record.at,
                letter.get("stage"),
                letter.get("error"),
                letter.get("partner"),
                letter.get("protocol"),
                letter.get("transaction_id"),
                letter.get("audit_ref"),
                json.dumps(letter.get("detail") or {}),
            ),
        )
        txn = letter.get("transaction_id")
        if txn:
            summary = f"dead letter ({letter.get('stage')}): {letter.get('error')}"
            self._entry(record, "deadletter", summary, txn, letter.get("audit_ref"), letter)

    def _mark(self, record: Record, mark: dict[str, Any]) -> None:
        """Staff acknowledged or replayed a dead letter: it stays listed, marked, and no
        longer makes its request need attention."""
        column = "acknowledged" if mark["mark"] == "acknowledged" else "replayed"
        said = f"{mark.get('by')} at {str(mark.get('at') or record.at)[:19]}"
        if mark.get("note"):
            said += f": {mark['note']}"
        self.db.execute(f"UPDATE deadletters SET {column} = ? WHERE ref = ?", (said, mark["ref"]))
        letter = self.dead_letter(str(mark["ref"]))
        if letter and letter.get("transaction_id"):
            summary = f"dead letter {mark['ref']} {column} by {said}"
            self._entry(record, "staff", summary, letter["transaction_id"], body=mark)

    def _control(self, record: Record, command: dict[str, Any]) -> None:
        kind = command.get("kind")
        txn = str(command.get("transaction_id") or record.key)
        if kind == "route":
            lender = f" {command['lender']}" if command.get("lender") else ""
            summary = f"staff ({command.get('by')}): route {command.get('action')}{lender}"
        elif kind == "redeliver":
            partner = f" to {command['partner']}" if command.get("partner") else ""
            summary = f"redeliver{partner} asked by {command.get('by')}"
        elif kind == "staff":
            return  # the engine's line on ill.events says what was done, or why not
        elif kind == "located":
            found = [f"{r.get('lender')}: {r.get('status')}" for r in command.get("results") or []]
            summary = "holdings: " + (", ".join(found) or "none")
        else:
            return  # clock ticks: the state changes they cause are recorded
        self._entry(
            record, "staff" if kind != "located" else "holdings", summary, txn, body=command
        )

    # -- reading it ------------------------------------------------------------------------

    def find(self, criteria: Criteria, now: datetime, stuck: timedelta) -> list[dict[str, Any]]:
        """Transactions matching every criterion given, newest first (or in the criteria's
        order), each with `attention`: why it needs staff, or None."""
        return self.search(criteria, now, stuck)[0]

    def search(
        self, criteria: Criteria, now: datetime, stuck: timedelta
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the transactions matching every criterion (`limit` rows from
        `offset`, in the criteria's order), and how many match in all."""
        where, args = self._where(criteria, now)
        direction = "DESC" if criteria.descending else "ASC"
        order = f"{SORTS.get(criteria.sort, 'created')} {direction}, id {direction}"
        condition = " AND ".join(where)
        if not criteria.needs_attention:
            total = self.db.execute(
                f"SELECT count(*) FROM transactions WHERE {condition}", args
            ).fetchone()[0]
            rows = self.db.execute(
                f"SELECT * FROM transactions WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, criteria.limit, max(criteria.offset, 0)],
            )
            found = [dict(row) for row in rows]
            for item in found:
                item["attention"] = self.attention(item, now, stuck)
            return found, total
        # Why a request needs attention comes from several tables: every match is judged,
        # then the page is cut from those that do.
        matched = []
        for row in self.db.execute(
            f"SELECT * FROM transactions WHERE {condition} ORDER BY {order}", args
        ):
            item = dict(row)
            item["attention"] = self.attention(item, now, stuck)
            if item["attention"]:
                matched.append(item)
        start = max(criteria.offset, 0)
        return matched[start : start + criteria.limit], len(matched)

    def _where(self, criteria: Criteria, now: datetime) -> tuple[list[str], list[Any]]:
        where: list[str] = ["(state IS NOT NULL OR borrower IS NOT NULL)"]
        args: list[Any] = []
        for column, wanted in (("borrower", criteria.borrower), ("patron", criteria.patron)):
            if wanted:
                where.append(f"{column} = ?")
                args.append(wanted)
        if criteria.request_id:
            where.append(
                "(borrower_request_id = ? OR id IN "
                "(SELECT id FROM request_ids WHERE request_id = ?))"
            )
            args += [criteria.request_id] * 2
        if criteria.lender:
            where.append("lenders LIKE ?")
            args.append(f"%,{criteria.lender},%")
        for word in (criteria.title or "").split():
            where.append("(lower(title) LIKE ? OR lower(author) LIKE ?)")
            args += [f"%{word.lower()}%"] * 2
        if criteria.states:
            where.append(f"lower(state) IN ({', '.join('?' for _ in criteria.states)})")
            args += [s.lower() for s in criteria.states]
        if criteria.open_only or criteria.needs_attention:
            where.append(f"state NOT IN ({', '.join('?' for _ in CLOSED_STATES)})")
            args += sorted(CLOSED_STATES)
        if criteria.older_than is not None:
            where.append("created <= ?")
            args.append((now - criteria.older_than).isoformat())
        if criteria.created_from:
            where.append("created >= ?")
            args.append(criteria.created_from)
        if criteria.created_to:
            where.append("created < ?")
            args.append(criteria.created_to)
        return where, args

    def needing_attention(self, now: datetime, stuck: timedelta) -> int:
        """How many open transactions need staff, by the definition `find --needs-attention`
        and the console use (the gauge rshub_open_requests_needing_attention reads this)."""
        wanted = Criteria(needs_attention=True, limit=1_000_000)
        return len(self.find(wanted, now, stuck))

    def attention(self, row: dict[str, Any], now: datetime, stuck: timedelta) -> str | None:
        """Why an open transaction needs staff: what the engine says (parked or failed
        deliveries), dead letters about it, or no progress in a waiting state."""
        if row.get("state") in CLOSED_STATES:
            return None
        reasons = []
        lost = self.db.execute(
            "SELECT at FROM lost WHERE transaction_id = ?", (row["id"],)
        ).fetchone()
        if lost is not None:
            reasons.append(
                f"the broker lost its newest steps (restored {lost[0][:19]}): check with the "
                "partners that its last step reached them and was not sent twice"
            )
        if row.get("needs_attention"):
            reasons.append(str(row["needs_attention"]))
        elif row.get("parked"):
            reasons.append(f"{row['parked']} delivery parked")
        if row.get("failing") and not row.get("parked"):
            # From the first failed try, not after the whole retry schedule.
            reasons.append(str(row["failing"]))
        reasons += _overdue(row, now)
        link = self._link_for_staff(row)
        if link:
            reasons.append(link)
        # Settled ones (acknowledged, replayed) do not count; nor staff commands refused
        # before they were answered at once (protocol rshub, written by earlier versions).
        letters = self.db.execute(
            "SELECT count(*) FROM deadletters WHERE transaction_id = ? AND acknowledged IS "
            "NULL AND replayed IS NULL AND NOT (stage = 'apply' AND protocol = 'rshub')",
            (row["id"],),
        ).fetchone()[0]
        if letters:
            reasons.append(f"{letters} dead letter{'s' if letters != 1 else ''}")
        since = row.get("progressed") or row.get("created")
        waiting = WAITING_STATES.get(str(row.get("state")))
        if waiting and since and now - datetime.fromisoformat(since) > stuck:
            hours = (now - datetime.fromisoformat(since)).total_seconds() / 3600
            reasons.append(f"stuck: {waiting} for {hours:.0f} h")
        return "; ".join(reasons) or None

    def _link_for_staff(self, row: dict[str, Any]) -> str | None:
        """A step the hub could only hand to staff as a link to submit (a partner whose form
        needs a login: ILLiad, Relais), while its lender holds the request unanswered."""
        lender = row.get("lender")
        if not lender or row.get("state") not in LINK_STATES:
            return None
        found = self.db.execute(
            "SELECT at FROM entries WHERE transaction_id = ? AND kind = 'delivery' AND summary "
            "LIKE ? ORDER BY at DESC LIMIT 1",
            (row["id"], f"% to {lender}: sent %{FOR_STAFF}%"),
        ).fetchone()
        if found is None:
            return None
        return f"a link for staff to submit to {lender} (rshub deliveries), since {found[0][:16]}"

    def transaction(self, transaction_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM transactions WHERE id = ?", (transaction_id,)
        ).fetchone()
        return dict(row) if row else None

    def story(self, transaction_id: str) -> list[dict[str, Any]]:
        """Every entry of the transaction in time order; messages in carry their raw bytes
        (`raw`), and the raw bytes sent out are entries of their own (kind `raw out`)."""
        entries = [
            dict(r)
            for r in self.db.execute(
                "SELECT * FROM entries WHERE transaction_id = ?", (transaction_id,)
            )
        ]
        for entry in entries:
            entry["body"] = json.loads(entry["body"]) if entry["body"] else None
            entry["raw"] = self.raw(entry["ref"]) if entry["ref"] else None
        for audit in self.db.execute(
            "SELECT * FROM audit WHERE transaction_id = ? AND direction = 'out'",
            (transaction_id,),
        ):
            entries.append(
                {
                    "topic": Topic.AUDIT,
                    "at": audit["at"],
                    "kind": "raw out",
                    "summary": f"bytes sent to {audit['partner']} ({audit['protocol']})",
                    "ref": audit["ref"],
                    "body": None,
                    "raw": dict(audit),
                    "partition": 0,
                    "offset": 0,
                }
            )
        entries.sort(key=lambda e: (e["at"], e["topic"] != Topic.INBOUND, e["offset"]))
        return entries

    def raw(self, ref: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM audit WHERE ref = ?", (ref,)).fetchone()
        return dict(row) if row else None

    def routing(self, transaction_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT body FROM entries WHERE transaction_id = ? AND kind = 'routing' "
            "ORDER BY at, offset",
            (transaction_id,),
        )
        return [json.loads(r["body"]) for r in rows]

    def dead_letters(
        self, partner: str | None = None, stage: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return self.dead_letter_page(partner, stage, limit)[0]

    def dead_letter_page(
        self, partner: str | None = None, stage: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Dead letters, newest first: `limit` from `offset`, and how many match in all."""
        where, args = ["1 = 1"], []
        if partner:
            where.append("partner = ?")
            args.append(partner)
        if stage:
            where.append("stage = ?")
            args.append(stage)
        condition = " AND ".join(where)
        total = self.db.execute(
            f"SELECT count(*) FROM deadletters WHERE {condition}", args
        ).fetchone()[0]
        rows = self.db.execute(
            f"SELECT * FROM deadletters WHERE {condition} ORDER BY at DESC, ref DESC "
            "LIMIT ? OFFSET ?",
            [*args, limit, max(offset, 0)],
        )
        return [dict(r) for r in rows], total

    def dead_letter_values(self) -> tuple[list[str], list[str]]:
        """The stages and the partners dead letters have, for a filter to choose from."""
        stages = self.db.execute(
            "SELECT DISTINCT stage FROM deadletters WHERE stage IS NOT NULL ORDER BY stage"
        )
        partners = self.db.execute(
            "SELECT DISTINCT partner FROM deadletters WHERE partner IS NOT NULL ORDER BY partner"
        )
        return [r[0] for r in stages], [r[0] for r in partners]

    def dead_letter(self, ref: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM deadletters WHERE ref = ?", (ref,)).fetchone()
        return dict(row) if row else None


def _patron_name(message: dict[str, Any]) -> str | None:
    """The patron's name as the borrower gave it: whole, or given name and surname."""
    parts = [message.get("patron_given_name"), message.get("patron_surname")]
    return message.get("patron_name") or " ".join(p for p in parts if p) or None


def _failing(pending: list[dict[str, Any]]) -> str | None:
    """Deliveries that failed and wait for their next try, in words (None: none)."""
    said = []
    for p in pending:
        if p.get("status") != "retry":
            continue
        command = p.get("command") or {}
        step = (command.get("message") or {}).get("event", "a step")
        tries = p.get("failures", 0)
        next_at = str(p.get("next_at") or "")[:16].replace("T", " ")
        said.append(
            f"delivery of {step} to {command.get('recipient')} failing ({tries} failed "
            f"tr{'y' if tries == 1 else 'ies'}: {p.get('error') or 'no detail'}; next try "
            f"{next_at or 'soon'} UTC)"
        )
    return "; ".join(said) or None


WAITING_FOR_LENDER = frozenset({"Requested"})
OUT_ON_LOAN = frozenset({"Loaned", "Received", "Recalled", "Overdue"})


def _overdue(row: dict[str, Any], now: datetime) -> list[str]:
    """A partner silent past its deadline, a loan past its due date."""
    deadlines = json.loads(row.get("deadlines") or "{}")
    reasons = []
    lender, due = deadlines.get("lender"), deadlines.get("due")
    state = str(row.get("state"))
    if lender and state in WAITING_FOR_LENDER and datetime.fromisoformat(lender) < now:
        who = deadlines.get("lender_symbol") or "the lender"
        reasons.append(f"{who} silent past its deadline ({lender[:16].replace('T', ' ')} UTC)")
    if due and state in OUT_ON_LOAN and datetime.fromisoformat(due) < now:
        reasons.append(f"past due ({due[:10]})")
    return reasons


# -- following the topics ----------------------------------------------------------------


async def _consumer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    from hub.kafka.fetching import Pacer, pace

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",  # an offset retention has deleted: from the oldest left
        fetch_max_wait_ms=FOLLOW_WAIT_MS,
        client_id="rshub-index",
    )
    await consumer.start()
    # On the embedded broker a full partition starves a short wait: let it grow
    # (hub.kafka.fetching).
    pace(consumer, Pacer(FOLLOW_WAIT_MS, idle_ms=None, cap_ms=INDEX_MAX_WAIT_MS))
    return consumer


async def _assign(consumer: Any, index: Index) -> list[Any]:
    from aiokafka import TopicPartition

    names = await consumer.topics()
    wanted = [t for t in names if t in TOPICS or t.startswith(OUTBOUND_PREFIX)]
    assigned = [
        TopicPartition(topic, p)
        for topic in sorted(wanted)
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    life = await incarnation.latest(consumer)
    consumer.assign(assigned)
    found = await partition_ends.bounds(consumer, assigned)
    known = index.offsets()
    seen = index.incarnation()
    again = read_again_from(known, found, life if life is not None and seen else None, seen)
    if again or (life is not None and life.id != seen):
        label = f"~before-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
        await asyncio.to_thread(index.read_again, again, life.id if life else None, label)
    if again:
        log.warning(
            "index.broker_replaced",
            partitions=len(again),
            read_again_from={f"{t}/{p}": o for (t, p), o in sorted(again.items())},
            detail="the broker is not the one the index read (restored from an older snapshot, "
            "or a different one): those partitions are read again; what the index had is kept",
        )
    known = index.offsets()
    for tp in assigned:
        if (tp.topic, tp.partition) in known:
            consumer.seek(tp, known[tp.topic, tp.partition])
        else:
            await consumer.seek_to_beginning(tp)
    return assigned


def read_again_from(
    known: dict[tuple[str, int], int],
    found: dict[Any, partition_ends.Bounds],
    life: incarnation.Incarnation | None,
    seen: str | None,
) -> dict[tuple[str, int], int]:
    """The partitions the index must read again, and from where: after the broker's life
    changed (`life`, against the `seen` one), from where the new life's own records begin,
    where the index had read past it; otherwise a partition that ends before the offset the
    index kept (a different broker) from its first offset."""
    again: dict[tuple[str, int], int] = {}
    for tp, bounds in found.items():
        kept = known.get((tp.topic, tp.partition))
        if kept is None:
            continue
        start = kept
        if life is not None and life.id != seen:  # the restore says where this life began
            start = min(start, life.restored_end(tp.topic, tp.partition))
        elif kept > bounds.end:  # nothing says: a partition that went backwards is new
            start = min(start, max(bounds.start, 0))
        if start < kept:
            again[tp.topic, tp.partition] = start
    return again


def _records(batch: dict[Any, list[Any]]) -> list[Record]:
    return [
        Record(
            r.topic,
            r.partition,
            r.offset,
            r.timestamp,
            r.key.decode("utf-8", "replace") if r.key else "",
            r.value,
        )
        for records in batch.values()
        for r in records
    ]


async def catch_up(bootstrap: str, index: Index) -> int:
    """Reads every topic up to its end as of now; the number of records applied. A partition
    the broker cannot serve is logged (`index.partition_unread`): what is read is then exact
    except for it."""
    consumer = await _consumer(bootstrap)
    try:
        return await _read_to_end(consumer, index, await _assign(consumer, index), BATCH_RECORDS)
    finally:
        await consumer.stop()


async def follow(bootstrap: str, index: Index) -> None:
    """Keeps the index up to date until cancelled (`rshub serve` runs it), in rounds: each
    reads every partition up to its end as of the round's start, then the consumer rests
    with its partitions paused (`rest_after`). Topics created later (a connector added) are
    picked up on the next start."""
    consumer = await _consumer(bootstrap)
    try:
        assigned = await _assign(consumer, index)
        log.info("index.following", path=str(index.path))
        longest = FOLLOW_INTERVAL_S
        while True:
            began = time.monotonic()
            await _read_to_end(consumer, index, assigned, ROUND_RECORDS)
            rest = rest_after(time.monotonic() - began)
            if rest > longest:
                longest = rest  # once per new height: the embedded broker holds a lot
                log.info("index.rest_longer", rest_s=round(rest, 1))
            await _rest(rest)
    finally:
        await consumer.stop()


def rest_after(round_s: float) -> float:
    """How long the index rests after a round that took `round_s`."""
    return min(MAX_REST_S, max(FOLLOW_INTERVAL_S, REST_PER_ROUND * round_s))


async def _rest(seconds: float) -> None:
    await asyncio.sleep(seconds)  # partitions paused: the rest is the point, nothing to await


async def _read_to_end(consumer: Any, index: Index, assigned: list[Any], hold: int) -> int:
    """Reads `assigned` up to each partition's end as of now, one partition at a time (the
    others paused; all are paused when it returns or raises), applying up to `hold` records
    at once; the number of records applied."""
    consumer.pause(*assigned)
    ends = await partition_ends.end_offsets(consumer, assigned)
    behind = [tp for tp in assigned if await consumer.position(tp) < ends[tp]]
    held: list[Record] = []
    applied = 0
    for tp in behind:
        consumer.resume(tp)
        empty = 0
        try:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(
                    tp, timeout_ms=READ_TIMEOUT_MS, max_records=BATCH_RECORDS
                )
                empty = 0 if batch else empty + 1
                if empty == EMPTY_READS:
                    log.warning("index.partition_unread", topic=tp.topic, partition=tp.partition)
                    break
                held.extend(_records(batch))
                if len(held) >= hold:
                    applied += await asyncio.to_thread(index.apply, held)
                    held = []
        finally:
            consumer.pause(tp)
    if held:
        applied += await asyncio.to_thread(index.apply, held)
    return applied
