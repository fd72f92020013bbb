"""Statistics from the operators' index (issue 28.1), checked against a generated history
whose figures are known: the records go through the index as the follower applies them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.ops import index as index_module
from hub.ops import statistics
from hub.ops.statistics import Query

HOUR_MS = 3_600_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class History:
    """Records of a few loans, as the hub writes them, each at its own hour."""

    def __init__(self) -> None:
        self.records: list[index_module.Record] = []

    def add(self, topic: str, key: str, hours: float, value: dict[str, Any]) -> None:
        at = START + int(hours * HOUR_MS)
        offset = len(self.records)
        body = json.dumps(value).encode()
        self.records.append(index_module.Record(topic, 0, offset, at, key, body))

    def request(self, txn: str, borrower: str, hours: float, service: str = "Loan") -> None:
        message = {"transaction_id": txn, "event": "Request", "sender": borrower}
        self.add("ill.inbound", txn, hours, {**message, "service_type": service})
        self.move(txn, "Request", borrower, "New", "Locating", hours)

    def ask(self, txn: str, attempt: int, lender: str, hours: float) -> None:
        decision = {"transaction_id": txn, "attempt": attempt, "chosen": lender, "reason": "x"}
        self.add("ill.routing", txn, hours, decision)
        self.move(txn, "Located", None, "Locating", "Requested", hours)

    def move(
        self, txn: str, event: str, sender: str | None, before: str, after: str, hours: float
    ) -> None:
        change = {
            "event_id": f"{txn}-{len(self.records)}",
            "transaction_id": txn,
            "kind": "transition",
            "event": event,
            "sender": sender,
            "from_state": before,
            "to_state": after,
        }
        self.add("ill.events", txn, hours, change)


def _history() -> History:
    h = History()
    # T1: A borrows from L1: shipped after 24 h, received 24 h later, returned, completed.
    h.request("T1", "A", 0)
    h.ask("T1", 1, "L1", 0)
    h.move("T1", "Loaned", "L1", "Requested", "Loaned", 24)
    h.move("T1", "Received", "A", "Loaned", "Received", 48)
    h.move("T1", "Returned", "A", "Received", "Returned", 240)
    h.move("T1", "LoanCompleted", "L1", "Returned", "LoanCompleted", 288)
    # T2: A's request no lender fills: L1 says no, then L2.
    h.request("T2", "A", 1)
    h.ask("T2", 1, "L1", 1)
    h.ask("T2", 2, "L2", 5)
    h.move("T2", "Unfilled", "L2", "Requested", "Unfilled", 9)
    # T3: B borrows from L2, shipped after 12 h, then overdue (still open).
    h.request("T3", "B", 2)
    h.ask("T3", 1, "L2", 2)
    h.move("T3", "Loaned", "L2", "Requested", "Loaned", 14)
    h.move("T3", "DueDatePassed", None, "Loaned", "Overdue", 400)
    # T4: B cancels its request to L1.
    h.request("T4", "B", 3)
    h.ask("T4", 1, "L1", 3)
    h.move("T4", "Cancel", "B", "Requested", "Cancelled", 4)
    # T5: A's copy request, delivered by L2 after 6 h.
    h.request("T5", "A", 4, service="Copy")
    h.ask("T5", 1, "L2", 4)
    h.move("T5", "CopyCompleted", "L2", "Requested", "CopyCompleted", 10)
    return h


@pytest.fixture
def index(tmp_path: Path) -> index_module.Index:
    h = _history()
    found = index_module.Index(index_module.index_path(tmp_path))
    found.apply(h.records)
    found.apply(h.records)  # applied twice (the hub and a command both read): same figures
    return found


def test_the_figures_do_not_depend_on_which_topic_is_read_first(
    index: index_module.Index, tmp_path: Path
) -> None:
    """The follower reads ill.events, ill.routing and ill.inbound in no particular order
    relative to each other: state changes before the routing that preceded them, say."""
    expected = {
        (q.by, q.role): statistics.compute(index.db, q)
        for q in (Query("library"), Query("library", "lender"), Query("pair"))
    }
    index.close()
    # The same history, read topic by topic: state changes first, requests last.
    again = index_module.Index(tmp_path / "other.sqlite3")
    again.apply(sorted(_history().records, key=lambda r: r.topic))
    for (by, role), rows in expected.items():
        assert statistics.compute(again.db, Query(by, role)) == rows, (by, role)


def by_group(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["group"]: row for row in rows}


def test_per_library_as_borrower(index: index_module.Index) -> None:
    rows = by_group(statistics.compute(index.db, Query("library", "borrower")))
    a, b = rows["A"], rows["B"]
    assert (a["requests"], a["filled"], a["unfilled"], a["cancelled"], a["open"]) == (
        3, 2, 1, 0, 0
    )  # fmt: skip
    assert a["fill_rate"] == 0.667
    assert (a["to_ship_median_h"], a["to_ship_p90_h"]) == (6.0, 24.0)
    assert (a["to_receive_median_h"], a["to_return_median_h"], a["to_close_median_h"]) == (
        24.0, 192.0, 48.0
    )  # fmt: skip
    assert (b["requests"], b["filled"], b["cancelled"], b["overdue"], b["fill_rate"]) == (
        2, 1, 1, 1, 1.0
    )  # fmt: skip


def test_per_library_as_lender(index: index_module.Index) -> None:
    rows = by_group(statistics.compute(index.db, Query("library", "lender")))
    l1, l2 = rows["L1"], rows["L2"]
    assert (l1["requests"], l1["filled"], l1["unfilled"], l1["cancelled"]) == (3, 1, 1, 1)
    assert l1["fill_rate"] == 0.5 and l1["to_ship_median_h"] == 24.0
    assert (l2["requests"], l2["filled"], l2["unfilled"], l2["overdue"]) == (3, 2, 1, 1)
    assert l2["fill_rate"] == 0.667
    assert (l2["to_ship_median_h"], l2["to_ship_p90_h"]) == (6.0, 12.0)


def test_per_pair_and_per_month_and_period_bounds(index: index_module.Index) -> None:
    pairs = by_group(statistics.compute(index.db, Query("pair")))
    assert {k: (v["requests"], v["filled"]) for k, v in pairs.items()} == {
        "A -> L1": (2, 1),
        "A -> L2": (2, 1),
        "B -> L1": (1, 0),
        "B -> L2": (1, 1),
    }
    (month,) = statistics.compute(index.db, Query("month"))
    assert month["group"] == "2026-01" and month["requests"] == 5 and month["fill_rate"] == 0.75
    later = statistics.compute(index.db, Query("library", start="2026-01-01T02:00:00+00:00"))
    assert by_group(later)["A"]["requests"] == 1  # T5 only (T1 at 00:00, T2 at 01:00)
    assert statistics.compute(index.db, Query("day", end="2025-12-31")) == []


def test_csv_and_text(index: index_module.Index) -> None:
    rows = statistics.compute(index.db, Query("library"))
    text = statistics.as_csv(rows)
    assert text.splitlines()[0].startswith("group,requests,filled,")
    assert text.splitlines()[1].startswith("A,3,2,1,0,0,0,0,0,0.667,6.0,24.0")
    table = statistics.as_text(rows, "as borrower")
    assert "67%" in table and "B" in table


def test_the_command_prints_tables_csv_and_json(index: index_module.Index, tmp_path: Path) -> None:
    index.close()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "RSHUB_DATA_DIR": str(tmp_path)}

    def rshub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", "stats", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parent.parent,
        )

    text = rshub()
    assert text.returncode == 0, text.stderr
    assert "as borrower" in text.stdout and "as lender" in text.stdout and "L2" in text.stdout
    both = rshub("--csv").stdout.splitlines()
    assert both[0].startswith("role,group,requests") and both[1].startswith("borrower,A,3,2")
    assert any(line.startswith("lender,L1,3,1,1,1") for line in both)
    pairs = json.loads(rshub("--by", "pair", "--json").stdout)
    assert [p["group"] for p in pairs] == ["A -> L1", "A -> L2", "B -> L1", "B -> L2"]
    bad = rshub("--from", "yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr
