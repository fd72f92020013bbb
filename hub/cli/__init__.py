"""The `rshub` command: argparse and printing, one module per command group (serve, broker,
decode, find, route, staff, deliveries, stats, settings, users, peer, demo). This one holds the
parser and `COMMANDS`, the table of what runs each command. Command modules share only
running.py (how to reach the hub) and, for `check` and the SIGHUP reload, serve's checks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from hub.cli import broker, check, decode, deliveries, find, route, serve, staff, stats, users
from hub.cli import settings as settings_command
from hub.runtime import logs
from hub.runtime.settings import Settings, SettingsError


@dataclass(frozen=True)
class Command:
    """What runs a command, and how it logs: "own" (it prints and sets up logging itself, or
    needs none), "people" (its output is for people: the Kafka clients are silenced, rshub's
    own warnings stay), "service" (`serve`: every line, JSON)."""

    run: Callable[[Settings, argparse.Namespace], int]
    logs: Literal["own", "people", "service"] = "people"


def _openapi(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.api.models import ActionBody, PlaceRequest
    from hub.ops.api import openapi

    print(openapi.text(PlaceRequest, ActionBody), end="")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from hub.cli.demo import run_demo

    return run_demo(settings, args.borrower, args.lender)


def _peer(settings: Settings, args: argparse.Namespace) -> int:
    from hub.cli import peer

    return peer.main(settings, args)


COMMANDS: dict[str, Command] = {
    "serve": Command(lambda s, a: serve.serve(s), "service"),
    "broker": Command(lambda s, a: broker.broker_command(s, a.action, a.force), "own"),
    "demo": Command(_demo, "people"),
    "decode": Command(lambda s, a: decode.decode(a.protocol, a.file, s), "own"),
    "tail": Command(lambda s, a: find.tail(s, a.from_beginning)),
    "settings": Command(lambda s, a: settings_command.show_settings(s), "own"),
    "check": Command(lambda s, a: check.check(s), "own"),
    "route": Command(route.route),
    "find": Command(find.find),
    "stats": Command(stats.stats),
    "show": Command(lambda s, a: find.show(s, a.transaction, a.json, not a.no_raw)),
    "deadletters": Command(find.deadletters),
    "deliveries": Command(lambda s, a: deliveries.deliveries(s, a.json)),
    "redeliver": Command(deliveries.redeliver),
    "cancel": Command(staff.staff),
    "close": Command(staff.staff),
    "note": Command(staff.staff),
    "message": Command(staff.staff),
    "console-user": Command(users.console_user, "own"),
    "api-token": Command(users.api_token, "own"),
    "openapi": Command(_openapi, "own"),
    "peer": Command(_peer, "own"),  # prints for people: no log lines
}


def _demo_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from hub.cli.demo import PROTOCOLS as DEMO_PROTOCOLS

    p_demo = sub.add_parser(
        "demo", help="two loans between simulated libraries: demo --borrower slnp --lender ncip"
    )
    p_demo.add_argument("--borrower", choices=DEMO_PROTOCOLS, default="ncip", metavar="PROTO")
    p_demo.add_argument(
        "--lender",
        choices=DEMO_PROTOCOLS,
        default="ncip",
        metavar="PROTO",
        help=f"{', '.join(DEMO_PROTOCOLS)} (both default to ncip)",
    )


def main(argv: list[str] | None = None) -> int:
    from hub.cli import peer
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(Settings.from_env())
    except SettingsError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="rshub", description="Resource sharing hub")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.arguments(sub, registry)
    broker.arguments(sub)
    _demo_arguments(sub)
    decode.arguments(sub, registry)
    find.arguments(sub)
    settings_command.arguments(sub)
    check.arguments(sub)
    route.arguments(sub)
    staff.arguments(sub)
    stats.arguments(sub)
    deliveries.arguments(sub)
    users.arguments(sub)
    sub.add_parser("openapi", help="print the JSON API's OpenAPI document (docs/openapi.json)")
    peer.add_arguments(
        sub.add_parser(
            "peer",
            help="play partner libraries from the directory: peer SYM ... --behaviour lend; "
            "peer send SYM STEP (docs/peer.md)",
        )
    )
    args = parser.parse_args(peer.normalise(sys.argv[1:] if argv is None else argv))

    try:
        settings = Settings.from_env()
        if args.command == "serve":
            settings = serve.with_options(settings, args, registry)
        elif getattr(args, "directory", None) is not None:  # check, settings
            settings = Settings.model_validate(
                {**settings.model_dump(), "directory": args.directory}
            )
    except SettingsError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # a command-line option out of range
        first = error.errors()[0]
        option = {"http_port": "--port"}
        print(
            f"rshub: {option.get(str(first['loc'][0]), '--directory')}: {first['msg']}",
            file=sys.stderr,
        )
        return 2
    command = COMMANDS[args.command]
    if command.logs != "own":
        logs.configure(
            settings.log_level,
            settings.log_format,
            quiet_libraries=command.logs == "people",
            library_level=settings.library_log_level,
        )
    if command.logs == "people":
        # Not even the clients' errors: a command reports what went wrong in its own words
        # (no broker answers, a time-out), and a JSON line from aiokafka between them reads
        # as a second, different failure.
        for name in logs.KAFKA_CLIENTS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return command.run(settings, args)
