"""How the consortium is doing, from the operators' index (issue 28): per library as borrower
and as lender, per borrower-lender pair, or network-wide per month, week or day.

Definitions (docs/commands.md, "Statistics", says the same):
- a request is *filled* once a lender shipped it (a loan sent or a copy delivered);
  *unfilled*, *cancelled*, *expired* by how it ended; *open* otherwise;
- the fill rate is filled / (filled + unfilled + expired): requests that were decided
  (cancelled ones are the borrower's choice and not counted against anyone);
- as a lender, a library is *asked* once per request routed to it; it *filled* those it
  shipped; its fill rate is filled / asked of the asks no longer open;
- turnaround per stage (requested -> shipped -> received -> returned -> closed), median and
  90th percentile in hours, over the requests that passed both ends of the stage;
- periods are by the time a request was made (as a lender: asked) in UTC.

SQLite counts each group of the index's `milestones` and `asks` tables (times in Unix
seconds) and collects its stage durations, reading covering indexes in group order; Python
sorts each group's durations for the percentiles (bench/stats.py measures a year of a
national network's traffic: docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
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

    def where(self, column: str) -> tuple[str, list[int]]:
        parts, values = [f"{column} IS NOT NULL"], []
        if self.start:
            parts.append(f"{column} >= ?")
            values.append(_epoch(self.start))
        if self.end:
            parts.append(f"{column} < ?")
            values.append(_epoch(self.end))
        return " AND ".join(parts), values


def _epoch(text: str) -> int:
    """Unix seconds of an ISO date or time (UTC where it names no zone)."""
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _group(query: Query, alias: str, time_column: str) -> tuple[str, str]:
    """The group's name and what rows are grouped by (`a`: asks, `m`: requests). Pairs are
    grouped by the two columns the covering index `asks_pair` leads with, so SQLite reads
    the groups in order instead of sorting every ask."""
    if query.by in PERIOD:
        return f"strftime('{PERIOD[query.by]}', {alias}.{time_column}, 'unixepoch')", "g"
    if query.by == "pair":
        return "a.borrower || ' -> ' || a.lender", "a.lender, a.borrower"
    return ("a.lender" if alias == "a" else "m.borrower"), "g"


# What a selected row is, by how the request went (the index into COUNTS).
_CATEGORY = """CASE WHEN {shipped} IS NOT NULL THEN 1 WHEN {outcome} = 'unfilled' THEN 2
    WHEN {outcome} = 'cancelled' THEN 3 WHEN {outcome} = 'expired' THEN 4
    WHEN {outcome} IS NULL THEN 5 ELSE 0 END"""
# Per group: the counts of COUNTS in order, then each stage's durations in seconds as one
# comma-separated text: SQLite counts and collects in C (a Python pass over every row cost
# half as much again: bench/stats.py). A stage counts the requests that passed both its ends.
_PER_GROUP = """
    SELECT {name} AS g, count(*), sum(c = 1), sum(c = 2), sum(c = 3), sum(c = 4), sum(c = 5),
        sum({alias}.overdue != 0), sum({alias}.lost != 0),
        group_concat({alias}.shipped - {started}), group_concat({alias}.received - {alias}.shipped),
        group_concat({alias}.returned - {alias}.received),
        group_concat({alias}.closed - {alias}.returned)
    FROM (SELECT *, {category} AS c FROM {table}) {alias} WHERE {where}
    GROUP BY {group}"""


def compute(db: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    """One row per group, in the group's order, with every column of COLUMNS."""
    if query.role == "lender" or query.by == "pair":
        # As a lender (or per pair): every ask of a lender, filled when that lender shipped;
        # an ask is unfilled once the request moved on to another lender or ended unshipped.
        # (The index keeps each ask's milestones where its lender shipped: one table.)
        table, alias, started = "asks", "a", "asked"
        outcome = "CASE WHEN superseded THEN 'unfilled' ELSE outcome END"
    else:
        table, alias, started = "milestones", "m", "requested"
        outcome = "outcome"
    where, values = query.where(f"{alias}.{started}")
    name, group = _group(query, alias, started)
    sql = _PER_GROUP.format(
        name=name,
        alias=alias,
        started=f"{alias}.{started}",
        category=_CATEGORY.format(shipped="shipped", outcome=outcome),
        table=table,
        where=where,
        group=group,
    )
    cursor = db.cursor()
    cursor.row_factory = None  # plain tuples: the index's Row factory costs per row
    return _finish(cursor.execute(sql, values))


def _finish(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Fill rates and stage percentiles for the groups SQLite counted."""
    finished = []
    for group, *figures in rows:
        out: dict[str, Any] = {"group": group if group is not None else "?"}
        out.update(zip(COUNTS, figures[: len(COUNTS)], strict=True))
        decided = out["filled"] + out["unfilled"] + out["expired"]
        out["fill_rate"] = round(out["filled"] / decided, 3) if decided else None
        for stage, joined in zip(STAGES, figures[len(COUNTS) :], strict=True):
            seconds = sorted(map(int, joined.split(","))) if joined else []
            out[f"{stage}_median_h"] = _rank(seconds, 0.5)
            out[f"{stage}_p90_h"] = _rank(seconds, 0.9)
        finished.append(out)
    finished.sort(key=lambda row: (row["group"] == "?", row["group"]))
    return finished


def _rank(sorted_seconds: list[int], fraction: float) -> float | None:
    """The nearest-rank percentile, in hours."""
    if not sorted_seconds:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_seconds)))
    return round(sorted_seconds[rank - 1] / 3600, 1)


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
