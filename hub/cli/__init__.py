"""The `rshub` command: argparse and printing, one module per command group (serve, broker,
decode, find, route, deliveries, stats, settings); this one holds the parser and the dispatch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from hub.cli import broker, decode, deliveries, find, route, serve, stats
from hub.cli import settings as settings_command
from hub.runtime import logs
from hub.runtime.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rshub", description="Resource sharing hub")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser(
        "serve", help="run the hub (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)"
    )
    p_serve.add_argument("--directory", type=Path, help="consortium YAML (RSHUB_DIRECTORY)")
    p_serve.add_argument("--port", type=int, help="HTTP port of the endpoints (RSHUB_HTTP_PORT)")
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(Settings.from_env())
    except SettingsError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    ports = [c for c in registry if "port" in c.settings.model_fields]
    for connector in ports:  # a listening port per connector that has one
        p_serve.add_argument(
            f"--{connector.name}-port",
            type=int,
            help=f"TCP port of {connector.name} ({connector.env_prefix()}PORT)",
        )
    p_broker = sub.add_parser(
        "broker",
        help="the embedded broker that outlives `rshub serve`: status, stop, compact "
        "(restart it from its snapshot: retention and compaction applied)",
    )
    p_broker.add_argument("action", choices=("status", "stop", "compact"))
    p_broker.add_argument(
        "--force",
        action="store_true",
        help="stop it even while a hub uses it (what it writes after the snapshot is lost)",
    )
    p_demo = sub.add_parser(
        "demo", help="two loans between simulated libraries: demo --borrower slnp --lender ncip"
    )
    from hub.cli.demo import PROTOCOLS as DEMO_PROTOCOLS

    p_demo.add_argument("--borrower", choices=DEMO_PROTOCOLS, default="ncip", metavar="PROTO")
    p_demo.add_argument(
        "--lender",
        choices=DEMO_PROTOCOLS,
        default="ncip",
        metavar="PROTO",
        help=f"{', '.join(DEMO_PROTOCOLS)} (both default to ncip)",
    )
    p_decode = sub.add_parser("decode", help="print a partner message in canonical form")
    p_decode.add_argument("protocol", choices=registry.names)
    p_decode.add_argument("file", type=Path)
    p_tail = sub.add_parser("tail", help="follow ill.events")
    p_tail.add_argument("--from-beginning", action="store_true")
    sub.add_parser(
        "settings",
        help="list every setting: value in effect, default; whether each partner secret is set",
    )
    p_route = sub.add_parser(
        "route",
        help="show a request's routing (route show TXN) or change it (route TXN --lender SYM)",
    )
    p_route.add_argument("words", nargs="+", metavar="show TXN | TXN")
    p_route.add_argument("--lender", metavar="SYM", help="send the request to this lender now")
    p_route.add_argument("--skip", metavar="SYM", help="never ask this lender for this request")
    p_route.add_argument(
        "--restart", action="store_true", help="search the catalogues again, rebuild the rota"
    )
    p_find = sub.add_parser(
        "find", help="find transactions in the index (all criteria given must match)"
    )
    p_find.add_argument("--borrower", metavar="SYM")
    p_find.add_argument("--request-id", metavar="ID", help="the borrower's request id")
    p_find.add_argument("--patron", metavar="ID")
    p_find.add_argument("--lender", metavar="SYM", help="a lender that was asked")
    p_find.add_argument("--title", nargs="+", metavar="WORD", help="words of title or author")
    p_find.add_argument("--state", action="append", metavar="STATE", help="repeatable")
    p_find.add_argument(
        "--older-than", type=find.duration, metavar="AGE", help="created before: 3d, 12h, 30m"
    )
    p_find.add_argument("--open", action="store_true", help="open transactions only")
    p_find.add_argument(
        "--needs-attention",
        action="store_true",
        help="parked or failing deliveries, dead letters, or stuck (RSHUB_STUCK_AFTER_HOURS)",
    )
    p_find.add_argument("--limit", type=int, default=50)
    p_find.add_argument("--json", action="store_true")
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
    p_stats.add_argument("--from", dest="start", type=stats.day, metavar="DATE", help="YYYY-MM-DD")
    p_stats.add_argument(
        "--to", dest="end", type=stats.day, metavar="DATE", help="YYYY-MM-DD, exclusive"
    )
    output = p_stats.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true")
    output.add_argument("--json", action="store_true")
    p_show = sub.add_parser("show", help="the whole story of one transaction")
    p_show.add_argument("transaction", metavar="TXN")
    p_show.add_argument("--json", action="store_true")
    p_show.add_argument("--no-raw", action="store_true", help="leave out the raw messages")
    p_dead = sub.add_parser(
        "deadletters", help="refused messages with reasons; replay one (deadletters replay REF)"
    )
    p_dead.add_argument("action", nargs="?", choices=("list", "replay", "ack"), default="list")
    p_dead.add_argument("--note", metavar="TEXT", help="ack: why it is settled")
    p_dead.add_argument("ref", nargs="?", metavar="REF", help="a dead letter (from the list)")
    p_dead.add_argument("--partner", metavar="SYM")
    p_dead.add_argument("--stage", metavar="STAGE", help="parse, authenticate, address, apply")
    p_dead.add_argument("--limit", type=int, default=50)
    p_dead.add_argument("--json", action="store_true")
    p_dead.add_argument(
        "--trust-sender",
        action="store_true",
        help="replay a message refused before authentication (you know who sent it)",
    )
    p_deliveries = sub.add_parser(
        "deliveries", help="steps waiting for delivery (retrying and parked), per partner"
    )
    p_deliveries.add_argument("--json", action="store_true")
    p_redeliver = sub.add_parser(
        "redeliver", help="send a transaction's waiting steps (or all for a partner) again now"
    )
    p_redeliver.add_argument("transaction", nargs="?", metavar="TXN")
    p_redeliver.add_argument("--partner", metavar="SYM", help="only the steps to this partner")
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
    sub.add_parser("openapi", help="print the JSON API's OpenAPI document (docs/openapi.json)")
    from hub.cli import peer

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
            for connector in ports:
                value = getattr(args, f"{connector.name}_port".replace("-", "_"))
                if value is not None:
                    os.environ[f"{connector.env_prefix()}PORT"] = str(value)
            options = (("directory", args.directory), ("http_port", args.port))
            updates = {k: v for k, v in options if v is not None}
            settings = Settings.model_validate({**settings.model_dump(), **updates})
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
    if args.command == "decode":
        return decode.decode(args.protocol, args.file, settings)
    if args.command == "settings":
        return settings_command.show_settings(settings)
    if args.command == "broker":
        return broker.broker_command(settings, args.action, args.force)
    if args.command == "openapi":
        from connectors.api.models import ActionBody, PlaceRequest
        from hub.ops.api import openapi

        print(openapi.text(PlaceRequest, ActionBody), end="")
        return 0
    if args.command == "api-token":
        from hub.ops.api import token_command

        return token_command(settings, args.action, args.name, args.partner, args.scope)
    if args.command == "peer":  # prints for people: no log lines
        return peer.main(settings, args)
    if args.command == "console-user":
        from hub.ops.console import user_command

        return user_command(settings, args.action, args.name, args.role, args.password_stdin)
    logs.configure(
        settings.log_level,
        settings.log_format,
        quiet_libraries=args.command in ("tail", "route", "find", "show", "deadletters", "stats"),
        library_level=settings.library_log_level,
    )
    if args.command == "serve":
        return serve.serve(settings)
    if args.command == "tail":
        return find.tail(settings, args.from_beginning)
    if args.command == "route":
        return route.route(settings, args)
    if args.command == "deliveries":
        return deliveries.deliveries(settings, args.json)
    if args.command == "find":
        return find.find(settings, args)
    if args.command == "stats":
        return stats.stats(settings, args)
    if args.command == "deadletters":
        return find.deadletters(settings, args)
    if args.command == "show":
        return find.show(settings, args.transaction, args.json, not args.no_raw)
    if args.command == "redeliver":
        return deliveries.redeliver(settings, args)
    if args.command == "demo":
        from hub.cli.demo import run_demo

        return run_demo(settings, args.borrower, args.lender)
    return 2
