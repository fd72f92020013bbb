"""`rshub deliveries` (steps waiting for delivery) and `rshub redeliver`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any

from hub.cli import running
from hub.runtime.settings import Settings


def deliveries(settings: Settings, as_json: bool) -> int:
    from hub.ops import deliveries as delivery_cli

    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    found = asyncio.run(delivery_cli.waiting(bootstrap))
    print(json.dumps(found, indent=2) if as_json else "\n".join(delivery_cli.describe(found)))
    return 0


def redeliver(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import deliveries as delivery_cli

    if not args.transaction and not args.partner:
        usage = "rshub: usage: rshub redeliver (TXN [--partner SYM] | --partner SYM)"
        print(usage, file=sys.stderr)
        return 2
    unknown = args.partner and running.unknown_partner(settings, args.partner)
    if unknown:
        print(f"rshub: {unknown}", file=sys.stderr)
        return 2
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    work: Coroutine[Any, Any, tuple[int, str]]
    if args.transaction:
        # Reported after each step was tried (sent, or failed and why), as in the console.
        from hub.cli.staff import link_to
        from hub.ops import actions

        work = actions.redeliver(
            link_to(settings, bootstrap), args.transaction, args.partner, running.who()
        )
    else:
        work = delivery_cli.redeliver(bootstrap, None, args.partner, settings.reply_timeout_s)
    code, text = asyncio.run(work)
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The options of `deliveries` and `redeliver`."""
    p_deliveries = sub.add_parser(
        "deliveries", help="steps waiting for delivery (retrying and parked), per partner"
    )
    p_deliveries.add_argument("--json", action="store_true")
    p_redeliver = sub.add_parser(
        "redeliver", help="send a transaction's waiting steps (or all for a partner) again now"
    )
    p_redeliver.add_argument("transaction", nargs="?", metavar="TXN")
    p_redeliver.add_argument("--partner", metavar="SYM", help="only the steps to this partner")
