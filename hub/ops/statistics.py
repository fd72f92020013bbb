"""How the consortium is doing, from the operators' index (issue 28): per library as borrower
and as lender, per borrower-lender pair, or network-wide per month, week or day.

Definitions (the README's "Statistics" section says the same):
- a request is *filled* once a lender shipped it (a loan sent or a copy delivered);
  *unfilled*, *cancelled*, *expired* by how it ended; *open* otherwise;
- the fill rate is filled / (filled + unfilled + expired): requests that were decided
  (cancelled ones are the borrower's choice and not counted against anyone);
- as a lender, a library is *asked* once per request routed to it; it *filled* those it
  shipped; its fill rate is filled / asked of the asks no longer open;
- turnaround per stage (requested -> shipped -> received -> returned -> closed), median and
  90th percentile in hours, over the requests that passed both ends of the stage;
- periods are by the time a request was made (as a lender: asked) in UTC.

Everything is computed in SQL over the index's `milestones` and `asks` tables, percentiles
with window functions, so a year of a national network's traffic answers in well under a
second (bench/stats.py measures it).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Grouping = Literal["library", "pair", "month", "week", "day"]
Role = Literal["borrower", "lender"]
GROUPINGS: tuple[Grouping, ...] = ("library", "pair", "month", "week", "day")
PERIOD = {"month": "%Y-%m", "week": "%Y-W%W", "day": "%Y-%m-%d"}
# Stage name -> (from, to) milestone columns.
STAGES = {
    "to_ship": ("requested", "shipped"),
    "to_receive": ("shipped", "received"),
    "to_return": ("received", "returned"),
    "to_close": ("returned", "closed"),
}
COUNTS = ("requests", "filled", "unfilled", "cancelled", "expired", "open", "overdue", "lost")
COLUMNS = (
    "group",
    *COUNTS,
    "fill_rate",
    *(f"{stage}_{q}_h" for stage in STAGES for q in ("median", "p90")),
)


@dataclass(frozen=True)
class Query:
    by: Grouping = "library"
    role: Role = "borrower"
    start: str | None = None  # ISO date or time, inclusive
    end: str | None = None  # exclusive

    def where(self, column: str) -> tuple[str, list[str]]:
        parts, values = [f"{column} IS NOT NULL"], []
        if self.start:
            parts.append(f"{column} >= ?")
            values.append(self.start)
        if self.end:
            parts.append(f"{column} < ?")
            values.append(self.end)
        return " AND ".join(parts), values


def _group(query: Query, table: str, time_column: str) -> str:
    """The SQL expression a row is grouped by (`a`: asks, `m`: requests)."""
    if query.by in PERIOD:
        return f"strftime('{PERIOD[query.by]}', {table}.{time_column})"
    if query.by == "pair":
        return "m.borrower || ' -> ' || a.lender"
    return "a.lender" if table == "a" else "m.borrower"


def compute(db: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    """One row per group, in the group's order, with every column of COLUMNS."""
    if query.role == "lender" or query.by == "pair":
        return _by_asks(db, query)
    return _by_requests(db, query)


def _by_requests(db: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    where, values = query.where("m.requested")
    group = _group(query, "m", "requested")
    source = f"SELECT {group} AS g, m.* FROM milestones m WHERE {where}"
    counts = f"""
        SELECT g, count(*) AS requests,
            sum(shipped IS NOT NULL) AS filled,
            sum(outcome = 'unfilled') AS unfilled,
            sum(outcome = 'cancelled' AND shipped IS NULL) AS cancelled,
            sum(outcome = 'expired') AS expired,
            sum(closed IS NULL AND shipped IS NULL) AS open,
            sum(overdue) AS overdue, sum(lost) AS lost
        FROM ({source}) GROUP BY g"""
    rows = {r["g"]: dict(r) for r in db.execute(counts, values)}
    _turnaround(db, source, values, rows)
    return _finish(rows)


def _by_asks(db: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    """As a lender (or per pair): every ask of a lender, filled when that lender shipped."""
    where, values = query.where("a.asked")
    group = _group(query, "a", "asked")
    source = f"""
        SELECT {group} AS g, a.asked AS requested, m.borrower,
            CASE WHEN m.lender = a.lender THEN m.shipped END AS shipped,
            CASE WHEN m.lender = a.lender THEN m.received END AS received,
            CASE WHEN m.lender = a.lender THEN m.returned END AS returned,
            CASE WHEN m.lender = a.lender THEN m.closed END AS closed,
            m.outcome, m.overdue AND m.lender = a.lender AS overdue,
            m.lost AND m.lender = a.lender AS lost,
            (SELECT max(later.attempt) FROM asks later WHERE later.id = a.id) = a.attempt
                AS current
        FROM asks a JOIN milestones m ON m.id = a.id WHERE {where}"""
    # An ask is unfilled once the request moved on to another lender or ended unshipped.
    counts = f"""
        SELECT g, count(*) AS requests,
            sum(shipped IS NOT NULL) AS filled,
            sum(shipped IS NULL AND (NOT current OR outcome IN ('unfilled', 'expired')))
                AS unfilled,
            sum(shipped IS NULL AND current AND outcome = 'cancelled') AS cancelled,
            0 AS expired,
            sum(shipped IS NULL AND current AND outcome IS NULL) AS open,
            sum(overdue) AS overdue, sum(lost) AS lost
        FROM ({source}) GROUP BY g"""
    rows = {r["g"]: dict(r) for r in db.execute(counts, values)}
    _turnaround(db, source, values, rows)
    return _finish(rows)


def _turnaround(
    db: sqlite3.Connection, source: str, values: list[str], rows: dict[str, dict[str, Any]]
) -> None:
    """Median and 90th percentile (nearest rank) of each stage, per group, in hours."""
    for stage, (begin, end) in STAGES.items():
        sql = f"""
            WITH d AS (
                SELECT g, (julianday({end}) - julianday({begin})) * 24 AS h
                FROM ({source}) WHERE {begin} IS NOT NULL AND {end} IS NOT NULL),
            r AS (
                SELECT g, h, row_number() OVER (PARTITION BY g ORDER BY h) AS rn,
                    count(*) OVER (PARTITION BY g) AS n FROM d)
            SELECT g, max(CASE WHEN rn = (n + 1) / 2 THEN h END) AS median,
                max(CASE WHEN rn = (9 * n + 9) / 10 THEN h END) AS p90
            FROM r GROUP BY g"""
        for found in db.execute(sql, values):
            row = rows.get(found["g"])
            if row is not None:
                row[f"{stage}_median_h"] = round(found["median"], 1)
                row[f"{stage}_p90_h"] = round(found["p90"], 1)


def _finish(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    finished = []
    for key in sorted(rows, key=lambda k: (k is None, k or "")):
        row = rows[key]
        decided = row["filled"] + row["unfilled"] + row["expired"]
        out: dict[str, Any] = {"group": key if key is not None else "?"}
        out.update({name: int(row[name] or 0) for name in COUNTS})
        out["fill_rate"] = round(row["filled"] / decided, 3) if decided else None
        for column in COLUMNS[len(COUNTS) + 2 :]:
            out[column] = row.get(column)
        finished.append(out)
    return finished


def as_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def as_text(rows: list[dict[str, Any]], title: str) -> str:
    """A table for people: counts, fill rate and the two first stages' medians."""
    shown = ["group", *COUNTS, "fill_rate", "to_ship_median_h", "to_receive_median_h"]
    header = [
        "",
        "requests",
        "filled",
        "unfilled",
        "cancel",
        "expired",
        "open",
        "overdue",
        "lost",
        "fill",
        "ship h",
        "recv h",
    ]
    width = max([len(str(r["group"])) for r in rows] + [len(title), 6])
    lines = [title, f"{header[0]:<{width}} " + " ".join(f"{h:>8}" for h in header[1:])]
    for row in rows:
        cells = []
        for name in shown[1:]:
            value = row[name]
            if value is None:
                cells.append(f"{'-':>8}")
            elif name == "fill_rate":
                cells.append(f"{value:>8.0%}")
            else:
                cells.append(f"{value:>8}")
        lines.append(f"{row['group']!s:<{width}} " + " ".join(cells))
    if not rows:
        lines.append("(no requests in this period)")
    return "\n".join(lines)
