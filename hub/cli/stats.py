"""`rshub stats`: the statistics of hub.ops.statistics, as text, CSV or JSON."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from hub.cli import running
from hub.runtime.settings import Settings


def day(text: str) -> str:
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def stats(settings: Settings, args: argparse.Namespace) -> int:
    """`rshub stats`: the statistics of hub.ops.statistics over the operators' index."""
    from hub.ops import statistics

    roles: list[statistics.Role] = [args.role] if args.role else ["borrower", "lender"]
    if args.by != "library":
        roles = ["lender" if args.by == "pair" else "borrower"]
    with running.open_index(settings, running.quiet_bootstrap(settings)) as index:
        tables = {
            role: statistics.compute(
                index.db, statistics.Query(args.by, role, args.start, args.end)
            )
            for role in roles
        }
    if args.json:
        print(json.dumps(tables if len(tables) > 1 else next(iter(tables.values())), indent=2))
    elif args.csv:
        for role, rows in tables.items():
            text = statistics.as_csv([{**row, "group": row["group"]} for row in rows])
            if len(tables) > 1:  # one CSV: the role as the first column
                lines = text.splitlines()
                text = "\n".join(
                    ["role," + lines[0]] * (role == roles[0]) + [f"{role},{x}" for x in lines[1:]]
                )
                text += "\n"
            print(text, end="")
    else:
        for role, rows in tables.items():
            title = {"library": f"as {role}", "pair": "borrower -> lender"}.get(args.by, args.by)
            print(statistics.as_text(rows, title))
            print()
    return 0


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `stats` command's options."""
    p_stats = sub.add_parser(
        "stats", help="requests, fill rate and turnaround per library, pair or period"
    )
    p_stats.add_argument(
        "--by", choices=("library", "pair", "month", "week", "day"), default="library"
    )
    p_stats.add_argument(
        "--role",
        choices=("borrower", "lender"),
        help="with --by library: one role only (default: both tables)",
    )
    p_stats.add_argument("--from", dest="start", type=day, metavar="DATE", help="YYYY-MM-DD")
    p_stats.add_argument("--to", dest="end", type=day, metavar="DATE", help="YYYY-MM-DD, exclusive")
    output = p_stats.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true")
    output.add_argument("--json", action="store_true")
