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
    if words[0] == "show":
        if len(words) != 2:
            print("rshub: usage: rshub route show TXN", file=sys.stderr)
            return 2
        bootstrap = running.running_bootstrap(settings)
        if not bootstrap:
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
    if args.next:
        chosen.append(("next", None))
    if len(words) != 1 or len(chosen) != 1:
        print(
            "rshub: usage: rshub route TXN (--lender SYM | --skip SYM | --next | --restart)",
            file=sys.stderr,
        )
        return 2
    action, lender = chosen[0]
    # A mistyped symbol is answered here, with the nearest ones, before anything is sent.
    unknown = lender and running.unknown_partner(settings, lender)
    if unknown:
        print(f"rshub: {unknown}", file=sys.stderr)
        return 2
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    code, text = asyncio.run(
        route_cli.command(
            bootstrap,
            words[0],
            RouteAction(action),
            lender,
            settings.reply_timeout_s,
            running.who(),
        )
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `route` command's options."""
    p_route = sub.add_parser(
        "route",
        help="show a request's routing (route show TXN) or change it (route TXN --lender SYM)",
    )
    p_route.add_argument("words", nargs="+", metavar="show TXN | TXN")
    p_route.add_argument("--lender", metavar="SYM", help="send the request to this lender now")
    p_route.add_argument("--skip", metavar="SYM", help="never ask this lender for this request")
    p_route.add_argument(
        "--next",
        action="store_true",
        help="take it back from the lender holding it and ask the next (may be asked again)",
    )
    p_route.add_argument(
        "--restart", action="store_true", help="search the catalogues again, rebuild the rota"
    )
