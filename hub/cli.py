"""The `rshub` command: serve, demo, decode, tail, route, settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

import structlog

from hub import logs
from hub.broker import EmbeddedBroker, wait_for_metadata
from hub.directory import DirectoryError
from hub.settings import Settings

log = structlog.get_logger(__name__)
BROKER_FILE = "broker-address"


def _prepare(settings: Settings) -> tuple[str, EmbeddedBroker | None]:
    """The bootstrap servers to use, starting the embedded broker when none are configured."""
    from hub import topics

    broker = None
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        broker = EmbeddedBroker()
        bootstrap = broker.start()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / BROKER_FILE).write_text(bootstrap)
    try:
        asyncio.run(_ready(bootstrap, settings, topics.load(settings.topics_file)))
    except Exception:
        if broker:
            broker.stop()
        raise
    return bootstrap, broker


async def _ready(bootstrap: str, settings: Settings, specs: list) -> None:  # type: ignore[type-arg]
    from hub import topics

    await wait_for_metadata(bootstrap)
    await topics.ensure(bootstrap, specs, settings.replication_factor)


def serve(settings: Settings) -> int:
    from faust.worker import Worker

    from connectors import registry
    from hub import directory as directory_module
    from hub.agents import create_app
    from hub.gateway import Gateway
    from hub.kafka_io import KafkaIO

    try:
        directory = directory_module.load(settings.directory)
    except DirectoryError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    bootstrap, broker = _prepare(settings)
    try:
        io = KafkaIO(bootstrap)
        app = create_app(
            settings,
            directory,
            bootstrap,
            registry.outbounds(),
            registry.catalogue_clients(),
            io=io,
        )
        app.web_server(
            Gateway(
                settings,
                directory,
                io,
                registry.endpoints(settings),
                registry.fronts(settings),
            )
        )
        log.info(
            "hub.starting",
            bootstrap_servers=bootstrap,
            embedded=broker is not None,
            consortium=directory.consortium,
            partners=len(directory.partners),
        )
        worker = Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
        worker.execute_from_commandline()
    finally:
        if broker:
            broker.stop()
    return 0


def decode(protocol: str, path: Path, settings: Settings) -> int:
    """Print a partner's message as the hub reads it: canonical JSON (exit 0), a partner's
    response or confirmation (exit 0), or the protocol error the hub would answer (exit 2)."""
    from connectors import registry
    from hub.gateway import Refusal

    endpoint = registry.decoders(settings)[protocol]
    try:
        body = path.read_bytes()
    except OSError as error:
        print(f"rshub: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 2
    if (
        protocol == "iso10161"
        and body.strip()
        and all(chr(b) in "0123456789abcdefABCDEF \n\r\t" for b in body)
    ):
        body = bytes.fromhex(body.decode())  # BER given as hex
    try:
        decoded = endpoint.decode(body, sender="", limit=settings.max_body_bytes)
    except Refusal as refusal:
        answer = registry.read_answer(protocol, body)
        if answer is not None:
            print(json.dumps(answer, indent=2))
            return 0
        sys.stdout.write(refusal.reply.body.decode() + "\n")
        return 2
    print(decoded.message.model_dump_json(indent=2, exclude_none=True))
    return 0


async def _tail(bootstrap: str, from_beginning: bool) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "ill.events",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        async for record in consumer:
            change = json.loads(record.value)
            print(
                f"{change['at']}  {change['transaction_id']}  {change['kind']:<10} "
                f"{change['event']:<24} {change['from_state']} -> {change['to_state']}  "
                f"{change.get('sender') or ''} {change.get('detail') or ''}".rstrip(),
                flush=True,
            )
    finally:
        await consumer.stop()


def _running_bootstrap(settings: Settings) -> str | None:
    """The broker of a running hub: configured, or the embedded one `rshub serve` noted."""
    bootstrap = settings.bootstrap_servers
    marker = settings.data_dir / BROKER_FILE
    if not bootstrap and marker.is_file():
        bootstrap = marker.read_text().strip()
    if not bootstrap:
        print("rshub: set KAFKA_BOOTSTRAP_SERVERS or start `rshub serve` first", file=sys.stderr)
    return bootstrap


def route(settings: Settings, args: argparse.Namespace) -> int:
    from hub import route_cli
    from hub.records import RouteAction

    words = args.words
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    if words[0] == "show":
        if len(words) != 2:
            print("rshub: usage: rshub route show TXN", file=sys.stderr)
            return 2
        found = asyncio.run(route_cli.decisions(bootstrap, words[1]))
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


def deliveries(settings: Settings, as_json: bool) -> int:
    from hub import delivery_cli

    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    found = asyncio.run(delivery_cli.waiting(bootstrap))
    print(json.dumps(found, indent=2) if as_json else "\n".join(delivery_cli.describe(found)))
    return 0


def redeliver(settings: Settings, args: argparse.Namespace) -> int:
    from hub import delivery_cli

    if not args.transaction and not args.partner:
        usage = "rshub: usage: rshub redeliver (TXN [--partner SYM] | --partner SYM)"
        print(usage, file=sys.stderr)
        return 2
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    code, text = asyncio.run(
        delivery_cli.redeliver(bootstrap, args.transaction, args.partner, settings.reply_timeout_s)
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def tail(settings: Settings, from_beginning: bool) -> int:
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(bootstrap, from_beginning))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rshub", description="Resource sharing hub")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser(
        "serve", help="run the hub (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)"
    )
    p_serve.add_argument("--directory", type=Path, help="consortium YAML (RSHUB_DIRECTORY)")
    p_serve.add_argument("--port", type=int, help="HTTP port of the endpoints (RSHUB_HTTP_PORT)")
    sub.add_parser("demo", help="a complete loan between simulated NCIP libraries")
    p_decode = sub.add_parser("decode", help="print a partner message in canonical form")
    p_decode.add_argument("protocol", choices=["ncip", "iso18626", "iso10161"])
    p_decode.add_argument("file", type=Path)
    p_tail = sub.add_parser("tail", help="follow ill.events")
    p_tail.add_argument("--from-beginning", action="store_true")
    sub.add_parser("settings", help="list every setting with its default")
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
    p_deliveries = sub.add_parser(
        "deliveries", help="steps waiting for delivery (retrying and parked), per partner"
    )
    p_deliveries.add_argument("--json", action="store_true")
    p_redeliver = sub.add_parser(
        "redeliver", help="send a transaction's waiting steps (or all for a partner) again now"
    )
    p_redeliver.add_argument("transaction", nargs="?", metavar="TXN")
    p_redeliver.add_argument("--partner", metavar="SYM", help="only the steps to this partner")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.command == "decode":
        return decode(args.protocol, args.file, settings)
    if args.command == "settings":
        for key, default, description in Settings.documentation():
            print(f"{key:<34} {default:<28} {description}")
        return 0
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "serve":
        updates = {k: v for k, v in (("directory", args.directory), ("http_port", args.port)) if v}
        return serve(settings.model_copy(update=updates))
    if args.command == "tail":
        return tail(settings, args.from_beginning)
    if args.command == "route":
        return route(settings, args)
    if args.command == "deliveries":
        return deliveries(settings, args.json)
    if args.command == "redeliver":
        return redeliver(settings, args)
    if args.command == "demo":
        from hub.demo import run_demo

        return run_demo(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
