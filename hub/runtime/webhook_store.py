"""The webhooks' durable state: an SQLite file in the data folder (`webhooks.sqlite3`, mode
0600, as it holds the subscriptions' signing secrets) shared by the JSON API, which adds,
lists and removes subscriptions, and the webhook service (hub.runtime.webhooks), which
follows ill.events into the outbox and delivers from it.

    subscriptions   a library's URL, its signing secret, the states it wants (none: all)
    deliveries      the outbox: one row per (subscription, state change), in the order read
                    (a delivery's id is the subscription's and the change's event id: reading
                    a record twice inserts nothing)
    offsets         the position in ill.events (hub.runtime.private_db)

The offsets exist only while a subscription does: the first subscription writes the ends
of ill.events as of its creation (what happened before is not told), the removal of the
last one deletes them, and the service follows nothing while there are none.

This module does no I/O but the file: no Kafka, no HTTP, no clock (times are given).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.runtime.outbox import Change
from hub.runtime.private_db import PARKED, WAITING, PrivateDb

FILE = "webhooks.sqlite3"
SECRET_PREFIX = "whsec_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, partner TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
    states TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, created_by TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS subscriptions_partner ON subscriptions (partner);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, subscription TEXT NOT NULL, partner TEXT NOT NULL,
    transaction_id TEXT NOT NULL, request_id TEXT, state TEXT NOT NULL, body BLOB NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due REAL NOT NULL,
    last_error TEXT, last_at TEXT, delivered_at TEXT);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, due);
CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries (subscription, transaction_id, seq);
"""

DELIVERED = "delivered"


def path_in(data_dir: Path) -> Path:
    return data_dir / FILE


@dataclass(frozen=True)
class Subscription:
    id: str
    partner: str
    url: str
    states: frozenset[str]  # empty: every state
    created: datetime
    created_by: str

    def wants(self, state: str, at: datetime) -> bool:
        """A change of state this subscription is told of: one it asked for, made after it
        was created (the follower may be behind the moment of creation)."""
        return (not self.states or state in self.states) and at >= self.created


@dataclass(frozen=True)
class Delivery:
    seq: int
    id: str
    subscription: str
    partner: str
    transaction_id: str
    request_id: str | None
    state: str
    body: bytes
    status: str
    attempts: int
    due: float
    last_error: str | None
    last_at: str | None
    delivered_at: str | None


class Store(PrivateDb):
    """One connection; the API and the service each hold their own (SQLite's WAL lets both
    write, one at a time). Mode 0600: the secrets sign what the receivers trust."""

    OUTBOX = "deliveries"

    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    # -- subscriptions ---------------------------------------------------------------------

    def add(
        self,
        partner: str,
        url: str,
        states: Iterable[str],
        by: str,
        at: datetime,
        starts: dict[int, int],
    ) -> tuple[Subscription, str]:
        """A new subscription and its secret (returned once; the caller shows it once).
        `starts`: the ends of ill.events now, the follower's start if it follows nothing."""
        ident = "wh_" + secrets.token_hex(8)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        wanted = frozenset(states)
        with self._writing() as db:
            db.execute(
                "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ident, partner, url, secret, ",".join(sorted(wanted)), at.isoformat(), by),
            )
            self._start_at(db, starts)
        return Subscription(ident, partner, url, wanted, at, by), secret

    def remove(self, partner: str | None, ident: str) -> bool:
        """Removes a subscription (of `partner`, None: any) with its waiting deliveries;
        with the last one the follower's position goes too."""
        with self._writing() as db:
            found = db.execute(
                "DELETE FROM subscriptions WHERE id = ? AND (? IS NULL OR partner = ?)",
                (ident, partner, partner),
            ).rowcount
            if found:
                db.execute("DELETE FROM deliveries WHERE subscription = ?", (ident,))
            if db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0] == 0:
                db.execute("DELETE FROM offsets")
        return bool(found)

    def subscriptions(self, partner: str | None = None) -> list[Subscription]:
        rows = self.db.execute(
            "SELECT * FROM subscriptions WHERE ? IS NULL OR partner = ? ORDER BY created, id",
            (partner, partner),
        ).fetchall()
        return [_subscription(row) for row in rows]

    def subscription(self, partner: str | None, ident: str) -> Subscription | None:
        row = self.db.execute(
            "SELECT * FROM subscriptions WHERE id = ? AND (? IS NULL OR partner = ?)",
            (ident, partner, partner),
        ).fetchone()
        return _subscription(row) if row else None

    def secret(self, ident: str) -> str | None:
        row = self.db.execute("SELECT secret FROM subscriptions WHERE id = ?", (ident,)).fetchone()
        return str(row[0]) if row else None

    # -- following ill.events ----------------------------------------------------------------

    def take(
        self, read: list[tuple[int, int, Change | None]], render: Any, now: float
    ) -> int | None:
        """The records read from ill.events (partition, offset, the change or None for one
        that tells no library anything) into the outbox, with the offsets after them, in one
        SQLite transaction. `render(subscription, change, delivery_id) -> bytes`. The
        number of deliveries added; None when the follower is to follow nothing (the last
        subscription went while it read)."""
        added = 0
        with self._writing() as db:
            kept = self.offsets()
            if not kept:
                return None
            by_partner: dict[str, list[Subscription]] = {}
            for partition, offset, change in read:
                # The position is where the consumer read, even backwards (a broker restored
                # from an older snapshot, an offset reset): what was read before inserts
                # nothing, as a delivery's id is the subscription's and the change's.
                kept[partition] = offset + 1
                if change is None:
                    continue
                if change.partner not in by_partner:
                    rows = db.execute(
                        "SELECT * FROM subscriptions WHERE partner = ?", (change.partner,)
                    ).fetchall()
                    by_partner[change.partner] = [_subscription(row) for row in rows]
                for sub in by_partner[change.partner]:
                    if not sub.wants(change.state, change.at):
                        continue
                    ident = f"{sub.id}:{change.event_id}"
                    added += db.execute(
                        "INSERT OR IGNORE INTO deliveries (id, subscription, partner,"
                        " transaction_id, request_id, state, body, status, due)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ident,
                            sub.id,
                            sub.partner,
                            change.transaction_id,
                            change.request_id,
                            change.state,
                            render(sub, change, ident),
                            WAITING,
                            now,
                        ),
                    ).rowcount
            self._move_to(db, kept)
        return added

    # -- delivering --------------------------------------------------------------------------

    def due(self, now: float, limit: int = 100) -> list[Delivery]:
        """Deliveries to try now: each the first one not delivered of its subscription and
        request (a request's changes reach a receiver in the order they happened)."""
        rows = self.db.execute(
            "SELECT d.* FROM deliveries d WHERE d.status != ? AND d.due <= ? AND NOT EXISTS ("
            " SELECT 1 FROM deliveries e WHERE e.subscription = d.subscription"
            " AND e.transaction_id = d.transaction_id AND e.status != ? AND e.seq < d.seq)"
            " ORDER BY d.seq LIMIT ?",
            (DELIVERED, now, DELIVERED, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def delivered(self, ident: str, at: datetime) -> None:
        self.db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = NULL,"
            " last_at = ?, delivered_at = ? WHERE id = ?",
            (DELIVERED, at.isoformat(), at.isoformat(), ident),
        )

    def failed(self, ident: str, at: datetime, error: str, due: float, parked: bool) -> None:
        self.db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
            " last_at = ?, due = ? WHERE id = ?",
            (PARKED if parked else WAITING, error, at.isoformat(), due, ident),
        )

    def deliveries(
        self, subscription: str, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Delivery]:
        rows = self.db.execute(
            "SELECT * FROM deliveries WHERE subscription = ? AND (? IS NULL OR status = ?)"
            " ORDER BY seq DESC LIMIT ? OFFSET ?",
            (subscription, status, status, limit, offset),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def redeliver(self, subscription: str, ident: str | None, now: float) -> int:
        """Sends again now: one delivery (delivered already or not), or every one not yet
        delivered of the subscription. The number of deliveries made due."""
        if ident is not None:
            return self.db.execute(
                "UPDATE deliveries SET status = ?, due = ? WHERE subscription = ? AND id = ?",
                (WAITING, now, subscription, ident),
            ).rowcount
        return self.db.execute(
            "UPDATE deliveries SET status = ?, due = ? WHERE subscription = ? AND status != ?",
            (WAITING, now, subscription, DELIVERED),
        ).rowcount

    def prune(self, before: datetime) -> int:
        """Forgets deliveries accepted before `before` (they were shown long enough)."""
        return self.db.execute(
            "DELETE FROM deliveries WHERE status = ? AND delivered_at < ?",
            (DELIVERED, before.isoformat()),
        ).rowcount


def _subscription(row: sqlite3.Row) -> Subscription:
    return Subscription(
        id=row["id"],
        partner=row["partner"],
        url=row["url"],
        states=frozenset(filter(None, row["states"].split(","))),
        created=datetime.fromisoformat(row["created"]).astimezone(UTC),
        created_by=row["created_by"],
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(**{name: row[name] for name in row.keys()})  # noqa: SIM118
