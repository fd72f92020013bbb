"""`rshub deliveries` (steps waiting for delivery) and `rshub redeliver`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

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
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    code, text = asyncio.run(
        delivery_cli.redeliver(bootstrap, args.transaction, args.partner, settings.reply_timeout_s)
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code
