"""`rshub route`: show a request's routing decisions, or change its lender."""

from __future__ import annotations

import argparse
import asyncio
import sys

from hub.cli import running
from hub.runtime.settings import Settings


def route(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.core.records import RouteAction
    from hub.ops import routing as route_cli

    words = args.words
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    if words[0] == "show":
        if len(words) != 2:
            print("rshub: usage: rshub route show TXN", file=sys.stderr)
            return 2
        with running.open_index(settings, bootstrap) as index:
            found = index.routing(words[1])
        if not found:
            print(f"rshub: no routing decisions for {words[1]}", file=sys.stderr)
            return 1
        for decision in found:
            print("\n".join(route_cli.describe(decision)))
        return 0
    chosen = [(a, v) for a, v in (("lender", args.lender), ("skip", args.skip)) if v]
    if args.restart:
        chosen.append(("restart", None))
    if len(words) != 1 or len(chosen) != 1:
        print(
            "rshub: usage: rshub route TXN (--lender SYM | --skip SYM | --restart)",
            file=sys.stderr,
        )
        return 2
    action, lender = chosen[0]
    code, text = asyncio.run(
        route_cli.command(
            bootstrap, words[0], RouteAction(action), lender, settings.reply_timeout_s
        )
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code
