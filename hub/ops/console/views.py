"""What the console's pages show, read from the operators' index (hub/ops/index.py) and the
worker's load view. Blocking (SQLite): the console calls these in its reader thread.

The searches are the index's own (`Index.find`, `story`, `routing`, `dead_letters`); the
figures below are the few the index does not compute: open requests per state, and per
partner the requests it has open, when it was last heard from and sent to, and how its
recent deliveries went.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.ops.index import CLOSED_STATES, Index

HEALTH_WINDOW = timedelta(hours=24)  # delivery health is judged on the last day's attempts
LIVE_BATCH = 200  # live entries read at once


def open_by_state(index: Index) -> dict[str, int]:
    closed = sorted(CLOSED_STATES)
    rows = index.db.execute(
        "SELECT state, count(*) AS n FROM transactions WHERE state IS NOT NULL "
        f"AND state NOT IN ({', '.join('?' for _ in closed)}) GROUP BY state ORDER BY state",
        closed,
    )
    return {r["state"]: r["n"] for r in rows}


def parties(row: dict[str, Any]) -> dict[str, str]:
    """The request's borrower and the lender asked last (who holds it, if anybody does), by
    side, from its index row."""
    found = {"borrower": row.get("borrower"), "lender": row.get("lender")}
    return {side: str(symbol) for side, symbol in found.items() if symbol}


@dataclass
class PartnerFigures:
    open_as_borrower: int = 0
    open_as_lender: int = 0
    last_in: str | None = None
    last_out: str | None = None
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    last_outcome: str | None = None
    last_failure: str | None = None
    last_failure_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def health(self) -> str:
        """ok, failing, degraded, or idle (no delivery in the window)."""
        tried = self.sent + self.failed + self.retrying
        if not tried:
            return "idle"
        if self.last_outcome in ("failed", "retrying"):
            return "failing"
        return "degraded" if self.failed or self.retrying else "ok"


def partner_figures(index: Index, now: datetime) -> dict[str, PartnerFigures]:
    figures: dict[str, PartnerFigures] = {}

    def of(symbol: str | None) -> PartnerFigures:
        return figures.setdefault(str(symbol), PartnerFigures())

    closed = sorted(CLOSED_STATES)
    marks = ", ".join("?" for _ in closed)
    for column, attribute in (("borrower", "open_as_borrower"), ("lender", "open_as_lender")):
        rows = index.db.execute(
            f"SELECT {column} AS who, count(*) AS n FROM transactions "
            f"WHERE {column} IS NOT NULL AND state NOT IN ({marks}) GROUP BY {column}",
            closed,
        )
        for r in rows:
            setattr(of(r["who"]), attribute, r["n"])
    for r in index.db.execute(
        "SELECT partner, direction, max(at) AS last FROM audit WHERE partner IS NOT NULL "
        "GROUP BY partner, direction"
    ):
        if r["direction"] == "in":
            of(r["partner"]).last_in = r["last"]
        elif r["direction"] == "out":
            of(r["partner"]).last_out = r["last"]
    since = (now - HEALTH_WINDOW).isoformat()
    for r in index.db.execute(
        "SELECT at, summary, body FROM entries WHERE kind = 'delivery' AND at >= ? ORDER BY at",
        (since,),
    ):
        result = json.loads(r["body"]) if r["body"] else {}
        partner = of(result.get("recipient"))
        outcome = str(result.get("outcome") or "")
        if outcome == "sent":
            partner.sent += 1
        elif outcome == "failed":
            partner.failed += 1
        elif outcome == "retrying":
            partner.retrying += 1
        else:
            continue  # not applicable: the protocol has no form for the step
        partner.last_outcome = outcome
        if outcome != "sent":
            partner.last_failure, partner.last_failure_at = r["summary"], r["at"]
    return figures


def live_start(index: Index) -> tuple[int, int]:
    """Where the live feed starts: the newest entry and dead letter now."""
    entries = index.db.execute("SELECT coalesce(max(rowid), 0) FROM entries").fetchone()[0]
    letters = index.db.execute("SELECT coalesce(max(rowid), 0) FROM deadletters").fetchone()[0]
    return int(entries), int(letters)


def live_since(
    index: Index, after: tuple[int, int]
) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """Entries and dead letters the index has taken in since `after`, as live events
    (oldest first), and where the next read starts."""
    entries_after, letters_after = after
    found: list[dict[str, Any]] = []
    for r in index.db.execute(
        "SELECT e.rowid AS n, e.transaction_id, e.at, e.kind, e.summary, e.body, t.state "
        "FROM entries e LEFT JOIN transactions t ON t.id = e.transaction_id "
        "WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?",
        (entries_after, LIVE_BATCH),
    ):
        entries_after = r["n"]
        found.append(
            {
                "type": "entry",
                "transaction_id": r["transaction_id"],
                "at": r["at"],
                "kind": r["kind"],
                "summary": r["summary"],
                "state": r["state"],
            }
        )
    for r in index.db.execute(
        "SELECT rowid AS n, ref, at, stage, error, partner, transaction_id FROM deadletters "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (letters_after, LIVE_BATCH),
    ):
        letters_after = r["n"]
        found.append(
            {
                "type": "deadletter",
                "ref": r["ref"],
                "at": r["at"],
                "stage": r["stage"],
                "error": r["error"],
                "partner": r["partner"],
                "transaction_id": r["transaction_id"],
            }
        )
    return found, (entries_after, letters_after)
