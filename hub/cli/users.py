"""The console's users (`rshub console-user`) and the JSON API's clients (`rshub api-token`):
the files are kept by hub.ops; this module reads the command line."""

from __future__ import annotations

import argparse
import sys

from hub.runtime.settings import Settings


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The options of `console-user` and `api-token`."""
    p_user = sub.add_parser(
        "console-user", help="the console's users: add NAME --role operator|reader, remove, list"
    )
    p_user.add_argument("action", choices=("add", "remove", "list"))
    p_user.add_argument("name", nargs="?", metavar="NAME")
    p_user.add_argument("--role", choices=("operator", "reader"), default="reader")
    p_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    p_token = sub.add_parser(
        "api-token",
        help="the JSON API's clients: add NAME [--partner SYM] --scope S ..., remove, list",
    )
    p_token.add_argument("action", choices=("add", "remove", "list"))
    p_token.add_argument("name", nargs="?", metavar="NAME")
    p_token.add_argument(
        "--partner", metavar="SYM", help="the library whose requests it sees (none: staff)"
    )
    p_token.add_argument(
        "--scope",
        action="append",
        default=[],
        help="library: read, request, act; staff: read, redeliver, replay, reroute (repeat)",
    )


def console_user(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops.console import user_command

    if args.action == "add" and args.name and not args.password_stdin and not _terminal():
        # getpass would fall back to reading stdin with a warning, and end in a traceback
        # on an empty one (cron, CI, a container without -t).
        print(
            "rshub: no terminal to ask the password on: give it on one line of stdin with "
            f"--password-stdin (e.g. rshub console-user add {args.name} --role {args.role} "
            "--password-stdin < file)",
            file=sys.stderr,
        )
        return 2
    return user_command(settings, args.action, args.name, args.role, args.password_stdin)


def _terminal() -> bool:
    """Whether getpass can ask on a terminal (it opens /dev/tty, not stdin)."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return False


def api_token(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops.api import token_command

    return token_command(settings, args.action, args.name, args.partner, args.scope)
