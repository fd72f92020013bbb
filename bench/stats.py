"""Benchmark: how fast the statistics answer over a year of a national network's traffic.

    python -m bench.stats [--requests 300000] [--libraries 120] [--repeat 3] [--quick]

Generates a year of requests (default 300,000, about OCLC-scale per region) among
--libraries libraries into a fresh operators' index (its real schema): each request is
asked of one to three lenders, most are filled with realistic stage durations, some unfilled,
cancelled or expired, a few overdue or lost. Then times each statistics query (per library
as borrower and as lender, per pair, per month, week and day; the median of --repeat runs)
beside a baseline measured in the same run: one full scan of the requests (`count(*)` with
a date function over every row), the least any per-group figure over all requests costs.
Prints CPU seconds (the wall time on an idle machine: SQLite answers on one thread) and
the ratio to the baseline; writes bench/results/stats.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics as stats_module
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.ops import index as index_module
from hub.ops import statistics
from hub.ops.index import SYNC_ASKS
from hub.ops.statistics import GROUPINGS, Query

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
RESULTS = Path(__file__).resolve().parent / "results"


def generate(index: index_module.Index, requests: int, libraries: int, seed: int = 28) -> None:
    """`requests` requests over a year into the index's milestones and asks tables."""
    rng = random.Random(seed)
    names = [f"LIB{n:03d}" for n in range(libraries)]
    milestones, asks = [], []
    for n in range(requests):
        txn = f"t{n:012d}"
        borrower = rng.choice(names)
        requested = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
        lenders = rng.sample([x for x in names if x != borrower], rng.choice((1, 1, 1, 2, 3)))
        asked = requested
        for attempt, lender in enumerate(lenders, 1):
            superseded = int(attempt < len(lenders))
            asks.append((txn, attempt, lender, int(asked.timestamp()), superseded))
            asked += timedelta(hours=rng.uniform(2, 72))
        roll = rng.random()
        shipped = received = returned = closed = None
        outcome, overdue, lost = None, 0, 0
        copy = rng.random() < 0.35
        if roll < 0.78:
            shipped = asked + timedelta(hours=rng.lognormvariate(3.2, 0.7))
            if copy:
                closed, outcome = shipped, "filled"
            else:
                received = shipped + timedelta(hours=rng.lognormvariate(4.0, 0.5))
                returned = received + timedelta(days=rng.uniform(7, 40))
                overdue = int(rng.random() < 0.08)
                lost = int(rng.random() < 0.003)
                if rng.random() < 0.9:
                    closed, outcome = returned + timedelta(days=rng.uniform(1, 6)), "filled"
        elif roll < 0.88:
            closed, outcome = asked, "unfilled"
        elif roll < 0.95:
            closed, outcome = requested + timedelta(hours=rng.uniform(1, 48)), "cancelled"
        elif roll < 0.98:
            closed, outcome = requested + timedelta(days=30), "expired"
        milestones.append(
            (
                txn,
                borrower,
                lenders[-1] if shipped else None,
                "copy" if copy else "loan",
                int(requested.timestamp()),
                *(int(t.timestamp()) if t else None for t in (shipped, received, returned, closed)),
                outcome,
                overdue,
                lost,
            )
        )
    with index.db:
        index.db.executemany(
            "INSERT INTO milestones VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", milestones
        )
        index.db.executemany(
            "INSERT INTO asks (id, attempt, lender, asked, superseded) VALUES (?, ?, ?, ?, ?)",
            asks,
        )
        # as the index keeps them: each ask with its request's milestones
        index.db.execute(SYNC_ASKS.replace("AND asks.id = ?", ""))


def timed(call: Callable[[], object], repeat: int) -> float:
    """The median CPU seconds of `repeat` calls: a query runs on one thread, so on an idle
    machine this is its wall time, and other work on a shared machine does not count."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        call()
        times.append(time.process_time() - started)
    return stats_module.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stats")
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--libraries", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="30,000 requests, one run each")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.repeat = 30_000, 1
    with tempfile.TemporaryDirectory() as folder:
        index = index_module.Index(Path(folder) / "index.sqlite3")
        print(f"generating {args.requests:,} requests among {args.libraries} libraries ...")
        started = time.perf_counter()
        generate(index, args.requests, args.libraries)
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
        baseline = timed(
            lambda: index.db.execute(
                "SELECT count(*), sum(strftime('%m', requested, 'unixepoch')) FROM milestones"
            ).fetchone(),
            args.repeat,
        )
        results: dict[str, object] = {
            "requests": args.requests,
            "libraries": args.libraries,
            "baseline_full_scan_s": round(baseline, 4),
        }
        print(f"baseline (one full scan): {baseline:.3f} s")
        cases = [("library", "borrower"), ("library", "lender")]
        cases += [(by, "borrower") for by in GROUPINGS if by != "library"]
        for by, role in cases:
            query = Query(by, role)  # type: ignore[arg-type]
            rows: list[dict[str, object]] = []

            def run(query: Query = query, rows: list[dict[str, object]] = rows) -> None:
                rows[:] = statistics.compute(index.db, query)

            seconds = timed(run, args.repeat)
            name = f"{by}/{role}" if by == "library" else by
            results[name] = {
                "seconds": round(seconds, 3),
                "x_baseline": round(seconds / baseline, 1),
                "groups": len(rows),
            }
            print(
                f"  {name:<18} {seconds:6.3f} s  x{seconds / baseline:5.1f} of the scan"
                f"  ({len(rows)} groups)",
                flush=True,
            )
        index.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stats.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
