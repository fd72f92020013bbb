"""`rshub cancel | close | note | message`: staff acting on one request, through the
operations layer the console and the API use (hub.ops.actions), with the typist's name
(`cli:USER`) on the timeline and on ill.events."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from hub.cli import running
from hub.runtime.settings import Settings

if TYPE_CHECKING:
    from hub.ops.actions import Link


def link_to(settings: Settings, bootstrap: str) -> Link:
    """The operations layer's link to this hub, with its directory where it reads (to refuse
    a message to a protocol that has none before sending anything)."""
    from connectors.core import directory as directory_module
    from connectors.core.directory import DirectoryError
    from hub.ops import actions
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
    except DirectoryError:
        directory = None  # the hub judges; the delivery's result says it then
    return actions.Link.of(settings, directory, bootstrap)


def staff(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import actions

    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    link, txn, by = link_to(settings, bootstrap), args.transaction, running.who()
    if args.command == "cancel":
        work = actions.cancel(link, txn, args.reason, by)
    elif args.command == "close":
        work = actions.close(link, txn, args.reason, by)
    elif args.command == "note":
        work = actions.note(link, txn, args.text, by)
    else:
        recipient = None
        with running.open_index(settings, bootstrap) as index:
            row = index.transaction(txn)
        if row:
            recipient = row.get("borrower") if args.to == "borrower" else row.get("lender")
        work = actions.message(link, txn, args.to, args.text, by, recipient)
    code, text = asyncio.run(work)
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The options of the staff commands on one request."""
    p_cancel = sub.add_parser(
        "cancel",
        help="cancel a request that looks for a lender: the lender holding it gets a Cancel",
    )
    p_cancel.add_argument("transaction", metavar="TXN")
    p_cancel.add_argument("--reason", required=True, help="for the timeline and the borrower")
    p_close = sub.add_parser(
        "close", help="close a loan staff know is finished (no partner is told)"
    )
    p_close.add_argument("transaction", metavar="TXN")
    p_close.add_argument(
        "--reason", required=True, help="for the timeline, e.g. 'returned outside the system'"
    )
    p_note = sub.add_parser("note", help="add a note to a request's timeline (nobody is told)")
    p_note.add_argument("transaction", metavar="TXN")
    p_note.add_argument("text")
    p_message = sub.add_parser(
        "message",
        help="send the borrower or the lender a message in its protocol (where it has one)",
    )
    p_message.add_argument("transaction", metavar="TXN")
    p_message.add_argument("--to", choices=("borrower", "lender"), required=True)
    p_message.add_argument("text")
