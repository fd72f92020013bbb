"""The `rshub` command: serve, broker, demo, decode, tail, route, deliveries, settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from connectors.core.connections import ListenError, bind
from connectors.core.contract import Registry
from connectors.core.directory import Directory, DirectoryError
from hub.kafka import embedded as kept_broker
from hub.kafka.embedded import KeptBroker, wait_for_metadata
from hub.kafka.topics import Topic
from hub.ops import replay as replaying
from hub.runtime import diagnostics, logs
from hub.runtime.settings import Settings, SettingsError

log = structlog.get_logger(__name__)
BROKER_FILE = "broker-address"
BROKER_CHECK_S = 3.0


class BrokerNote:
    """`data_dir/broker-address`: where `rshub tail` and `route` found the embedded broker
    of a running `rshub serve` before the broker outlived it (`broker.json` now); still
    read, so a note an older serve left is honoured. Written atomically, removed only if
    it still names the writer's broker."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / BROKER_FILE
        self.written: str | None = None

    def write(self, bootstrap: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{BROKER_FILE}.{os.getpid()}")
        temporary.write_text(bootstrap)
        os.replace(temporary, self.path)  # readers see the old address or the new, never half
        self.written = bootstrap

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            if self.written and self.path.read_text().strip() == self.written:
                self.path.unlink()


def _prepare(
    settings: Settings, registry: Registry, directory: Directory
) -> tuple[str, KeptBroker | None, set[str]]:
    """The bootstrap servers to use: the configured ones, else the data folder's embedded
    broker, reused when a previous `serve` left it running, started otherwise. It is not
    stopped when this hub stops (so a restart keeps every transaction). With them, the
    connectors this worker delivers for (`hub.runtime.app.delivering`)."""
    from hub.kafka import topics
    from hub.runtime import app as assembly

    kept = None
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        kept, reused = kept_broker.ensure(settings.data_dir, snapshot_s=settings.broker_snapshot_s)
        bootstrap = kept.address
        _say_loss_bound(kept, reused)
    specs = topics.complete(topics.load(settings.topics_file), registry)
    quiet = assembly.unspoken_outbound(registry, directory)
    unread = asyncio.run(_ready(bootstrap, settings, specs, list(quiet)))
    for topic, count in unread.items():
        if count > 0:
            log.warning(
                "outbound.unspoken_waiting",
                topic=topic,
                commands=count,
                detail=f"no partner speaks {quiet[topic]} now, but {count} command(s) wait "
                "here: its outbound agent runs to deliver or fail them",
            )
    return bootstrap, kept, assembly.delivering(registry, directory, unread)


def _say_loss_bound(kept: KeptBroker, reused: bool) -> None:
    """At start-up, one warning line (JSON like every other, issue 28.4): where the data is,
    and what can lose it."""
    bound = kept_broker.loss_bound(kept.snapshot_s)
    log.warning(
        "broker.snapshots",
        address=kept.address,
        reused=reused,
        since=kept.started,
        snapshot_s=kept.snapshot_s,
        detail=bound,
    )


def broker_notes(kept: KeptBroker | None) -> dict[str, Any]:
    """What /health says about the broker besides whether it answers."""
    if kept is None:
        return {"storage": "kafka"}
    return {
        "storage": f"embedded broker, in memory, snapshot every {kept.snapshot_s:g} s",
        "loss_bound_s": kept.snapshot_s,
        "warning": kept_broker.loss_bound(kept.snapshot_s),
        "embedded_broker": {"address": kept.address, "since": kept.started, "pid": kept.pid},
    }


async def _ready(
    bootstrap: str, settings: Settings, specs: list[Any], watched: list[str]
) -> dict[str, int]:
    """The topics made; of `watched`, those with records this hub has not consumed."""
    from hub.kafka import topics

    await wait_for_metadata(bootstrap)
    await topics.ensure(bootstrap, specs, settings.replication_factor)
    return await topics.unread(bootstrap, settings.app_id, watched)


def start_up_problems(
    directory: Directory, settings: Settings, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What stops the hub before it starts (each names the setting or partner): partners of
    unknown protocols, or with endpoints or options their connector does not accept, and
    each connector's own checks (ISO 10161: partners it cannot identify, TLS set up
    halfway)."""
    from hub.runtime import app as assembly

    registry = assembly.connectors(settings)
    problems = registry.check(directory, assembly.connector_settings(registry, environ))
    return problems + scaling_problems(settings, environ)


def scaling_problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """On Apache Kafka (KAFKA_BOOTSTRAP_SERVERS set), where workers of one RSHUB_APP_ID share
    the work, every worker must key transaction ids with the same RSHUB_ID_SECRET: without it
    each would use the id-secret file of its own data folder, and a request re-sent to another
    worker would become a second transaction. A hub on Apache Kafka that runs alone says so
    with RSHUB_SINGLE_WORKER=true. The embedded broker serves one hub's data folder."""
    from connectors.core.secret import ID_SECRET_VARIABLE

    env = os.environ if environ is None else environ
    if not settings.bootstrap_servers or settings.single_worker or env.get(ID_SECRET_VARIABLE):
        return []
    return [
        f"KAFKA_BOOTSTRAP_SERVERS is set and {ID_SECRET_VARIABLE} is not: workers sharing "
        "the work need the same id secret (each would otherwise make its own in its data "
        f"folder); set {ID_SECRET_VARIABLE} to one generated secret for every worker, or "
        "RSHUB_SINGLE_WORKER=true if this hub runs alone"
    ]


def warn_placeholder_id_secret(environ: Mapping[str, str] | None = None) -> None:
    """rshub.env.example's placeholder left in place: every copy of the example would key its
    ids alike, so say so at each start."""
    from connectors.core.secret import ID_SECRET_PLACEHOLDER, ID_SECRET_VARIABLE

    value = (os.environ if environ is None else environ).get(ID_SECRET_VARIABLE, "")
    if value.startswith(ID_SECRET_PLACEHOLDER):
        log.warning(
            "id_secret.placeholder",
            secret=ID_SECRET_VARIABLE,
            effect="the example's value is public: replace it before partners send requests "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )


def warn_unset_secrets(directory: Directory) -> None:
    """A partner whose secret is missing gets nothing but 401s: say so at start. A relay
    member's own secret (query token, FromAgencyAuthentication) too: its calls are answered
    Temporary Processing Failure until it is set (never sent empty)."""
    from connectors.ncip_relay import codec as relay_codec

    for partner, option, source, is_set in relay_codec.member_secrets(directory):
        if not is_set:
            log.warning(
                "partner.secret_unset",
                partner=partner.symbol,
                direction=option,
                secret=source,
                effect="calls relayed to this member are not sent until it is set",
            )
    for partner, direction, credential in directory.credentials():
        if credential.secret() is None:
            log.warning(
                "partner.secret_unset",
                partner=partner.symbol,
                direction=direction,
                secret=credential.source(),
                effect="this partner cannot authenticate"
                if direction == "inbound"
                else "rshub cannot log in to this partner",
            )


def _agent_states(app: Any) -> dict[str, str]:
    """Each faust agent's state; an agent whose actor has crashed (faust restarts it) counts
    as crashed until the restart is running."""
    states = {}
    for name, agent in app.agents.items():
        state = agent.state
        if state == "running" and any(actor.crashed for actor in list(agent._actors)):
            state = "crashed"
        states[name.rsplit(".", 1)[-1]] = state
    return states


def _more_descriptors() -> None:
    """The soft limit on open files raised to the hard one: the ports' caps
    (RSHUB_MAX_CONNECTIONS) are sized for the usual 1,024, and more room costs nothing."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rshub")
    except PackageNotFoundError:
        return "unknown"


def _attention_count(settings: Settings) -> Any:
    """The needs-attention gauge's reading: the operators' index, through a connection of its
    own (the follower writes through another; SQLite's WAL lets both)."""
    from hub.ops import index as index_module

    reader = index_module.Index(index_module.index_path(settings.data_dir))
    stuck = index_module.stuck_after()

    def count() -> int:
        return reader.needing_attention(datetime.now(UTC), stuck)

    return count


def _listening(
    listeners: list[Any], http: socket.socket | None, console: socket.socket | None
) -> dict[str, str]:
    """Every address this hub listens on, for the one start-up line that names them."""
    found: dict[str, str] = {}
    named = [("http", http), ("console", console)]
    named += [(type(x).__name__, getattr(x, "sock", None)) for x in listeners]
    for name, sock in named:
        if sock is not None:
            host, port = sock.getsockname()[:2]
            found[name] = f"{host}:{port}"
    return found


def mount_api(
    settings: Settings,
    bootstrap: str,
    gateway: Any,
    registry: Registry,
    directory: Directory,
    app: Any,
) -> None:
    """The JSON API (hub.ops.api) on the gateway's port, with the API connector's codec and
    models, and this worker's transaction table for fresh reads."""
    from connectors.api import CONNECTOR as API
    from connectors.api.models import ActionBody, PlaceRequest
    from connectors.core.model import Event
    from hub.ops import api

    def renews(lender: str) -> bool:
        partner = directory.partner(lender)
        connector = registry.get(partner.protocol) if partner else None
        return connector is None or Event.RENEW in connector.codec.events_out

    table = app.tables["transactions"]
    built = api.build(
        settings,
        bootstrap,
        gateway,
        API.codec,
        (PlaceRequest, ActionBody),
        row=table.get,
        renews=renews,
    )
    gateway.mounts.append(built.install)


def serve(settings: Settings) -> int:
    from faust.worker import Worker

    _more_descriptors()

    from connectors.core import directory as directory_module
    from hub.kafka.faust_app import active_items
    from hub.kafka.producer import KafkaIO
    from hub.ops import index as index_module
    from hub.runtime import app as assembly
    from hub.runtime import metrics
    from hub.runtime.agents import create_app
    from hub.runtime.gateway import Gateway
    from hub.runtime.relay import RelayDesk, connectors_replay_keys

    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
        loaded = assembly.connector_settings(registry)
    except (DirectoryError, SettingsError) as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    problems = registry.check(directory, loaded) + scaling_problems(settings)
    if problems:
        print(f"rshub: {'; '.join(problems)}", file=sys.stderr)
        return 2
    warn_unset_secrets(directory)
    warn_placeholder_id_secret()
    # Every port is taken before anything starts, the connectors' first: a port in use or
    # a listener set up wrongly is one clear line, not a failure after the broker, the
    # agents and the HTTP side are up.
    listeners = assembly.listeners(registry, settings, loaded, directory)
    http_socket = console_socket = None
    try:
        for listener in listeners:
            listener.bind()
        http_socket = bind(settings.http_host, settings.http_port, "HTTP")
        if settings.console_enabled:
            console_socket = bind(settings.console_host, settings.console_port, "console")
    except (ListenError, ValueError, OSError) as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    # Held while this hub runs (released by the kernel however it ends): `rshub broker stop`
    # refuses to stop a broker a hub is using.
    use = kept_broker.hold_use(settings.data_dir) if not settings.bootstrap_servers else None
    try:
        try:
            bootstrap, kept, delivering = _prepare(settings, registry, directory)
        except kept_broker.BrokerError as error:
            print(f"rshub: {error}", file=sys.stderr)
            return 2
        io = KafkaIO(bootstrap)
        desk = RelayDesk(io, connectors_replay_keys(registry))
        app = create_app(
            settings,
            directory,
            bootstrap,
            registry,
            loaded,
            assembly.catalogue_clients(),
            io=io,
            relay_answers=desk.answers,
            delivering=delivering,
        )
        gateway = app.web_server(
            Gateway(
                settings,
                directory,
                io,
                registry,
                settings.limits(),
                connector_settings=loaded,
                listeners=listeners,
                http_socket=http_socket,
                agents=lambda: _agent_states(app),
                states=app.transaction_state,
                relayer=desk,
                notes=broker_notes(kept),
                ready=lambda: metrics.readiness(app),
            )
        )
        if settings.api_enabled:
            mount_api(settings, bootstrap, gateway, registry, directory, app)
        if console_socket is not None:  # started and stopped with the gateway
            from hub.ops import console

            def load() -> dict[str, int]:
                return {lender: len(held) for lender, held in io.load.book.open.items()}

            notes = broker_notes(kept)
            gateway.add_dependency(
                console.build(settings, directory, bootstrap, console_socket, notes, load)
            )
        follower = index_module.Index(
            index_module.index_path(settings.data_dir), redactors(registry)
        )

        @app.task
        async def keep_index() -> None:
            """The operators' index (rshub find/show) follows the topics while the hub runs;
            after an error it starts again from what it has applied (the hub goes on
            meanwhile, and `find` catches up by itself)."""
            pause = 5.0
            clock = asyncio.get_running_loop().time
            while True:
                started = clock()
                try:
                    await index_module.follow(bootstrap, follower)
                except Exception as error:
                    if clock() - started > 60.0:  # it had been following: a new failure
                        pause = 5.0
                    log.error(
                        "index.stopped",
                        error=f"{type(error).__name__}: {error}",
                        again_in_s=pause,
                    )
                await asyncio.sleep(pause)  # a backoff before the next try, not a wait for it
                pause = min(pause * 2, 60.0)

        metrics.watch(
            metrics.Views(
                rows=lambda: [row for _, row in active_items(app, app.tables["transactions"])],
                lenders=lambda: {lender: len(held) for lender, held in io.load.book.open.items()},
                lag=lambda: metrics.consumer_lag(app),
                attention=_attention_count(settings),
            )
        )
        metrics.BUILD.info({"version": _version(), "python": sys.version.split()[0]})
        log.info(
            "hub.starting",
            listening=_listening(listeners, http_socket, console_socket),
            bootstrap_servers=bootstrap,
            embedded=kept is not None,
            consortium=directory.consortium,
            partners=len(directory.partners),
            protocols=registry.names,
        )

        async def diagnose() -> None:
            diagnostics.install(app)

        app.task(diagnose)
        worker = Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
        # faust's start-up spinner writes terminal escapes (cursor show, backspace) into the
        # log even when it is a file: a JSON line prefixed with them is not JSON.
        worker.spinner = None
        assembly.tune_gc()
        worker.execute_from_commandline()
    finally:
        if use is not None:
            use.close()
        for bound in (http_socket, console_socket):
            if bound is not None:
                bound.close()
    return 0


def _hex_input(body: bytes) -> bytes | None:
    """The hex digits of a file holding BER as hex (spaces, new lines and a 0x prefix
    allowed), or None if it is not hex text."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    digits = "".join(text.split())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    return digits.encode()


def _jsonable(value: Any) -> Any:
    """An asn1tools value as JSON: CHOICEs as {name: value}, bytes as hex."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return {value[0]: _jsonable(value[1])}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _print_reply(protocol: str, body: bytes) -> None:
    """The answer a partner would get: XML as text; ISO 10161's BER decoded, as JSON."""
    if protocol == "iso10161":
        from connectors.iso10161 import codec

        name, value = codec.decode(body)
        print(json.dumps({name: _jsonable(value)}, indent=2))
    else:
        sys.stdout.write(body.decode("utf-8", errors="replace") + "\n")


def decode(protocol: str, path: Path, settings: Settings) -> int:
    """Print a partner's message as the hub reads it: canonical JSON (exit 0), a partner's
    response or confirmation (exit 0), or the protocol error the hub would answer (exit 2)."""
    from connectors.core.contract import Fault, Refusal
    from hub.runtime import app as assembly

    connector = assembly.connectors(settings).get(protocol)
    assert connector is not None  # argparse offers only known protocols
    codec = connector.codec
    try:
        body = path.read_bytes()
    except OSError as error:
        print(f"rshub: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 2
    if protocol == "iso10161" and (digits := _hex_input(body)) is not None:
        if len(digits) % 2:
            detail = f"hex input has an odd number of digits ({len(digits)})"
            _print_reply(protocol, codec.fault(Fault.SYNTAX, detail).body)
            return 2
        body = bytes.fromhex(digits.decode())
    describe = getattr(codec, "describe", None)
    if callable(describe):  # the NCIP relay: broker calls are relayed, never loan messages
        try:
            print(json.dumps(describe(body, settings.limits().max_body_bytes), indent=2))
            return 0
        except Refusal as refusal:
            answer = codec.read_answer(body)
            if answer is not None:
                print(json.dumps(answer, indent=2, default=str))
                return 0
            _print_reply(protocol, refusal.answer.body)
            return 2
    try:
        decoded = codec.decode(body, "", settings.limits())
    except Refusal as refusal:
        answer = codec.read_answer(body)
        if answer is not None:
            print(json.dumps(answer, indent=2, default=str))
            return 0
        _print_reply(protocol, refusal.answer.body)
        return 2
    print(decoded.message.model_dump_json(indent=2, exclude_none=True))
    return 0


async def _tail(bootstrap: str, from_beginning: bool) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka import partition_ends

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        events = [
            TopicPartition(Topic.EVENTS, p)
            for p in sorted(consumer.partitions_for_topic(Topic.EVENTS) or ())
        ]
        consumer.assign(events)
        if from_beginning:
            await consumer.seek_to_beginning(*events)
        else:  # not seek_to_end: the embedded broker's "latest" is short of the end
            for tp, end in (await partition_ends.end_offsets(consumer, events)).items():
                consumer.seek(tp, end)
        async for record in consumer:
            if record.value is None:  # a restored broker's filler (hub.kafka.snapshots)
                continue
            change = json.loads(record.value)
            print(
                f"{change['at']}  {change['transaction_id']}  {change['kind']:<10} "
                f"{change['event']:<24} {change['from_state']} -> {change['to_state']}  "
                f"{change.get('sender') or ''} {change.get('detail') or ''}".rstrip(),
                flush=True,
            )
    finally:
        await consumer.stop()


def _answers(bootstrap: str) -> bool:
    """Whether something accepts connections at the first bootstrap address."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=BROKER_CHECK_S):
            return True
    except (OSError, ValueError):
        return False


def _running_bootstrap(settings: Settings) -> str | None:
    """The broker of a running hub: configured, or the data folder's embedded one (kept
    alive by its keeper, or noted by an older serve), checked to answer."""
    bootstrap = settings.bootstrap_servers
    marker = settings.data_dir / BROKER_FILE
    kept = None if bootstrap else kept_broker.running(settings.data_dir)
    noted = not bootstrap and kept is None and marker.is_file()
    if kept is not None:
        bootstrap = kept.address
    elif noted:
        bootstrap = marker.read_text().strip()
    if not bootstrap:
        print("rshub: set KAFKA_BOOTSTRAP_SERVERS or start `rshub serve` first", file=sys.stderr)
        return None
    if not _answers(bootstrap):
        where = f"noted in {marker} by an `rshub serve` that has stopped?" if noted else ""
        print(f"rshub: no broker answers at {bootstrap} {where}".rstrip(), file=sys.stderr)
        return None
    return bootstrap


def route(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.core.records import RouteAction
    from hub.ops import routing as route_cli

    words = args.words
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    if words[0] == "show":
        if len(words) != 2:
            print("rshub: usage: rshub route show TXN", file=sys.stderr)
            return 2
        with _index(settings, bootstrap) as index:
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


def deliveries(settings: Settings, as_json: bool) -> int:
    from hub.ops import deliveries as delivery_cli

    bootstrap = _running_bootstrap(settings)
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
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    code, text = asyncio.run(
        delivery_cli.redeliver(bootstrap, args.transaction, args.partner, settings.reply_timeout_s)
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def redactors(registry: Registry) -> dict[str, Callable[[bytes], bytes]]:
    """Per protocol, how its codec hides credentials in a body (the index keeps only that)."""
    found = {}
    for connector in registry:
        redact = getattr(connector.codec, "redact", None)
        if redact is not None:
            found[connector.name] = redact
    return found


@contextlib.contextmanager
def _index(settings: Settings, bootstrap: str | None) -> Iterator[Any]:
    """The operators' index, brought up to date with the topics first when a broker
    answers (otherwise as the hub last left it, which is said)."""
    from hub.ops import index as index_module
    from hub.runtime import app as assembly

    path = index_module.index_path(settings.data_dir)
    index = index_module.Index(path, redactors(assembly.connectors(settings)))
    try:
        if bootstrap:
            asyncio.run(index_module.catch_up(bootstrap, index))
        else:
            print(f"rshub: no broker answers; the index as last kept ({path})", file=sys.stderr)
        yield index
    finally:
        index.close()


def _quiet_bootstrap(settings: Settings) -> str | None:
    """The broker to catch up from, if one answers (no message when none does)."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers if _answers(settings.bootstrap_servers) else None
    kept = kept_broker.running(settings.data_dir)
    return kept.address if kept and _answers(kept.address) else None


def _age(since: str | None, now: datetime) -> str:
    if not since:
        return "-"
    seconds = (now - datetime.fromisoformat(since)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _duration(text: str) -> timedelta:
    """3d, 12h, 30m (argparse type)."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r}: a number followed by d, h or m") from None


def _date(text: str) -> str:
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
    with _index(settings, _quiet_bootstrap(settings)) as index:
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


def find(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import index as index_module

    try:
        stuck = index_module.stuck_after()
    except ValueError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    criteria = index_module.Criteria(
        borrower=args.borrower,
        request_id=args.request_id,
        patron=args.patron,
        lender=args.lender,
        title=" ".join(args.title or []) or None,
        states=args.state or [],
        older_than=args.older_than,
        open_only=args.open,
        needs_attention=args.needs_attention,
        limit=args.limit,
    )
    now = datetime.now(UTC)
    with _index(settings, _quiet_bootstrap(settings)) as index:
        found = index.find(criteria, now, stuck)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0 if found else 1
    if not found:
        print("no transaction matches", file=sys.stderr)
        return 1
    for row in found:
        title = (row.get("title") or "")[:40]
        print(
            f"{row['id']}  {row.get('state') or '?':<13} {row.get('borrower') or '?':<10} "
            f"{row.get('borrower_request_id') or '':<16} -> {row.get('lender') or '-':<10} "
            f"{_age(row.get('created'), now):>5}  {title}"
        )
        if row.get("attention"):
            print(f"    needs attention: {row['attention']}")
    return 0


def _raw_lines(raw: dict[str, Any]) -> list[str]:
    """The raw bytes of a message: as text when they are text, else as hex."""
    data = str(raw.get("body") or "").encode("latin-1")
    head = f"raw ({raw.get('content_type') or '?'}, {len(data)} bytes, {raw.get('ref')}):"
    try:
        text = data.decode("utf-8")
        printable = all(c.isprintable() or c in "\r\n\t" for c in text)
    except UnicodeDecodeError:
        printable = False
    if printable:
        body = text.splitlines() or [""]
    else:
        body = [data[i : i + 32].hex(" ") for i in range(0, len(data), 32)]
    return [head, *("  " + line for line in body)]


def show(settings: Settings, transaction_id: str, as_json: bool, raw: bool) -> int:
    with _index(settings, _quiet_bootstrap(settings)) as index:
        row = index.transaction(transaction_id)
        story = index.story(transaction_id) if row else []
    if row is None:
        print(f"rshub: no transaction {transaction_id} in the index", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"transaction": row, "timeline": story}, indent=2, default=str))
        return 0
    print(
        f"{row['id']}  {row.get('state') or '?'}  borrower {row.get('borrower') or '?'} "
        f"request {row.get('borrower_request_id') or '?'}  patron {row.get('patron') or '-'}  "
        f"lenders asked {row.get('lenders', '').strip(',') or '-'}"
    )
    if row.get("title"):
        print(f"  {row['title']}" + (f" / {row['author']}" if row.get("author") else ""))
    if row.get("needs_attention"):
        print(f"  needs attention: {row['needs_attention']}")
    shown: set[str] = set()
    for entry in story:
        print(f"{entry['at']}  {entry['kind']:<10} {entry['summary']}")
        if raw and entry.get("raw") and entry["raw"]["ref"] not in shown:
            shown.add(entry["raw"]["ref"])  # a refused message's bytes once, not twice
            print("\n".join("      " + line for line in _raw_lines(entry["raw"])))
    return 0


def deadletters(settings: Settings, args: argparse.Namespace) -> int:
    """`rshub deadletters [--partner SYM] [--stage S]`: refused messages and records, newest
    first; `rshub deadletters replay REF`: the refused message again, as received."""
    if args.action == "replay":
        if not args.ref:
            print("rshub: usage: rshub deadletters replay REF [--trust-sender]", file=sys.stderr)
            return 2
        return replay(settings, args.ref, args.trust_sender)
    if args.action == "ack":
        if not args.ref:
            print("rshub: usage: rshub deadletters ack REF [--note TEXT]", file=sys.stderr)
            return 2
        return acknowledge(settings, args.ref, args.note or "")
    with _index(settings, _quiet_bootstrap(settings)) as index:
        letters = index.dead_letters(args.partner, args.stage, args.limit)
        for letter in letters:
            letter["replayable"] = bool(letter["audit_ref"] and index.raw(letter["audit_ref"]))
    if args.json:
        print(json.dumps(letters, indent=2))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    for letter in letters:
        where = letter["transaction_id"] or "-"
        print(
            f"{letter['ref']:<22} {letter['at'][:19]}  {letter['stage'] or '?':<12} "
            f"{letter['partner'] or '-':<10} {letter['protocol'] or '-':<10} {where}"
        )
        settled = letter["replayed"] or letter["acknowledged"]
        hint = "  (replay: rshub deadletters replay REF)" if letter["replayable"] else ""
        print(f"    {letter['error']}{'' if settled else hint}")
        if letter["acknowledged"]:
            print(f"    acknowledged by {letter['acknowledged']}")
        if letter["replayed"]:
            print(f"    replayed by {letter['replayed']}")
    return 0


def _who() -> str:
    """Who typed a staff command, for the timeline."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


def acknowledge(settings: Settings, ref: str, note: str) -> int:
    """`rshub deadletters ack REF`: mark a dead letter settled (kept, marked)."""
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    with _index(settings, bootstrap) as index:
        letter = index.dead_letter(ref)
    code, text = asyncio.run(replaying.acknowledge(bootstrap, ref, letter, _who(), note))
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def replay(settings: Settings, ref: str, trust_sender: bool) -> int:
    """Feeds a dead letter's raw bytes, as its partner sent them, through the gateway again
    with the directory as it is now (after the operator fixed it)."""
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    with _index(settings, bootstrap) as index:
        letter = index.dead_letter(ref)
        raw = index.raw(letter["audit_ref"]) if letter and letter["audit_ref"] else None
    code, text = asyncio.run(
        replaying.replay_letter(settings, bootstrap, ref, letter, raw, trust_sender, _who())
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def _say_snapshot(data_dir: Path) -> None:
    from hub.kafka import snapshots

    last = snapshots.summary(data_dir)
    if last is None:
        print("  no snapshot yet")
        return
    taken = datetime.fromtimestamp(last.taken, UTC)
    age = (
        f"{last.age_s():.0f}s" if last.age_s() < 60 else _age(taken.isoformat(), datetime.now(UTC))
    )
    print(f"  last snapshot {last.path}: {last.size:,} bytes, {age} old ({taken.isoformat()})")


def broker_command(settings: Settings, action: str, force: bool) -> int:
    """`rshub broker status|stop|compact`: the data folder's embedded broker."""
    data_dir = settings.data_dir
    kept = kept_broker.running(data_dir)
    if action == "status":
        if settings.bootstrap_servers:
            answers = "answers" if _answers(settings.bootstrap_servers) else "does NOT answer"
            print(f"Kafka at {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) {answers}")
        if kept is None:
            print(f"no embedded broker is running for {data_dir.resolve()}")
            _say_snapshot(data_dir)
            return 1
        state = "answers" if _answers(kept.address) else "does NOT answer"
        used = "yes" if kept_broker.in_use(data_dir) else "no"
        print(f"embedded broker at {kept.address} {state}")
        print(f"  keeper pid {kept.pid}, broker pid {kept.broker_pid}, since {kept.started}")
        print(f"  used by a running `rshub serve`: {used}")
        _say_snapshot(data_dir)
        print(f"  {kept_broker.loss_bound(kept.snapshot_s)}")
        return 0
    if kept is None and action == "stop":
        print(f"no embedded broker is running for {data_dir.resolve()}")
        return 0
    if kept is not None and kept_broker.in_use(data_dir) and not force:
        print(
            f"rshub: a running `rshub serve` uses the embedded broker at {kept.address}; "
            "stop it first (or --force: what it writes after the last snapshot is lost)",
            file=sys.stderr,
        )
        return 2
    if kept is not None:
        kept_broker.stop(data_dir)  # its keeper writes a last snapshot first
        print(f"stopped the embedded broker at {kept.address}; its data is in the snapshot")
        _say_snapshot(data_dir)
    if action == "compact":
        # A fresh broker with the snapshot restored: past retention dropped, compacted topics
        # compacted, records in large batches (hub.kafka.snapshots).
        try:
            again, _ = kept_broker.ensure(
                data_dir, snapshot_s=kept.snapshot_s if kept else settings.broker_snapshot_s
            )
        except kept_broker.BrokerError as error:
            print(f"rshub: {error}", file=sys.stderr)
            return 1
        print(f"compacted: the embedded broker at {again.address} holds the snapshot rewritten")
    return 0


def tail(settings: Settings, from_beginning: bool) -> int:
    bootstrap = _running_bootstrap(settings)
    if not bootstrap:
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(bootstrap, from_beginning))
    return 0


def show_settings(settings: Settings) -> int:
    """Every setting as in effect now (with its default), then each partner secret the
    directory names and whether it is set; never a secret's value."""
    from connectors.core import directory as directory_module
    from hub.runtime import app as assembly

    print(f"{'variable':<34} {'in effect':<28} {'default':<28} meaning")
    for key, value, default, description in settings.rows():
        print(f"{key:<34} {value:<28} {default:<28} {description}")
    from hub.ops import index as index_module

    own_rows = (  # the operators' index reads its own two settings
        (
            index_module.INDEX_FILE_ENV,
            str(index_module.index_path(settings.data_dir)),
            "<RSHUB_DATA_DIR>/index.sqlite3",
            "the operators' index (rshub find/show/deadletters)",
        ),
        (
            index_module.STUCK_AFTER_ENV,
            os.environ.get(index_module.STUCK_AFTER_ENV) or f"{index_module.STUCK_AFTER_HOURS:g}",
            f"{index_module.STUCK_AFTER_HOURS:g}",
            "hours without progress in a waiting state before `find --needs-attention` lists it",
        ),
    )
    for key, value, default, description in own_rows:
        print(f"{key:<34} {value:<28} {default:<28} {description}")
    registry = assembly.connectors(settings)
    for connector in registry:
        own = connector.load_settings(os.environ)
        for name, field in connector.settings.model_fields.items():
            value, default = getattr(own, name), field.default
            key = f"{connector.env_prefix()}{name.upper()}"
            shown = "unset" if value is None else str(value)
            print(
                f"{key:<34} {shown:<28} {'unset' if default is None else str(default):<28} "
                f"{field.description or ''}"
            )
    try:
        directory = directory_module.load(settings.directory, registry.names)
    except DirectoryError as error:
        print(f"\npartner secrets: cannot read the directory: {error}")
        return 0
    print(f"\npartner secrets ({settings.directory}):")
    for partner, direction, credential in directory.credentials():
        state = "set" if credential.secret() is not None else "NOT SET"
        print(f"  {partner.symbol:<12} {direction:<9} {credential.source():<40} {state}")
    from connectors.ncip_relay import codec as relay_codec

    for partner, option, source, is_set in relay_codec.member_secrets(directory):
        state = "set" if is_set else "NOT SET"
        print(f"  {partner.symbol:<12} {option:<9} {source:<40} {state}")
    return 0


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
        "--older-than", type=_duration, metavar="AGE", help="created before: 3d, 12h, 30m"
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
    p_stats.add_argument("--from", dest="start", type=_date, metavar="DATE", help="YYYY-MM-DD")
    p_stats.add_argument(
        "--to", dest="end", type=_date, metavar="DATE", help="YYYY-MM-DD, exclusive"
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
        return decode(args.protocol, args.file, settings)
    if args.command == "settings":
        return show_settings(settings)
    if args.command == "broker":
        return broker_command(settings, args.action, args.force)
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
        return serve(settings)
    if args.command == "tail":
        return tail(settings, args.from_beginning)
    if args.command == "route":
        return route(settings, args)
    if args.command == "deliveries":
        return deliveries(settings, args.json)
    if args.command == "find":
        return find(settings, args)
    if args.command == "stats":
        return stats(settings, args)
    if args.command == "deadletters":
        return deadletters(settings, args)
    if args.command == "show":
        return show(settings, args.transaction, args.json, not args.no_raw)
    if args.command == "redeliver":
        return redeliver(settings, args)
    if args.command == "demo":
        from hub.cli.demo import run_demo

        return run_demo(settings, args.borrower, args.lender)
    return 2


if __name__ == "__main__":
    sys.exit(main())
