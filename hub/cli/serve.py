"""`rshub serve`: the start-up checks, the embedded broker or Kafka, and the worker
composed of the agents, the gateway, the API, the console and the index follower."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from connectors.core.connections import ListenError, bind
from connectors.core.contract import Registry
from connectors.core.directory import Directory, DirectoryError
from hub.cli import running
from hub.kafka import embedded as kept_broker
from hub.kafka import internals
from hub.kafka.embedded import KeptBroker, wait_for_metadata
from hub.runtime import diagnostics
from hub.runtime.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


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


class NotStartable(Exception):
    """Why the hub would not start with these settings and this directory: each problem
    names the setting or the partner."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_checked(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[Registry, Directory, dict[str, Any]]:
    """The connectors, the directory and the connectors' settings, checked as `serve` checks
    them before it starts anything (`rshub check` runs just this); NotStartable else."""
    from connectors.core import directory as directory_module
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
        loaded = assembly.connector_settings(registry, environ)
    except (DirectoryError, SettingsError) as error:
        raise NotStartable([str(error)]) from None
    problems = registry.check(directory, loaded) + scaling_problems(settings, environ)
    if problems:
        raise NotStartable(problems)
    return registry, directory, loaded


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


class DirectoryReload:
    """`kill -HUP <pid of rshub serve>`: the directory file read again and, if `serve` would
    start with it, used from then on; a bad one is refused with the reason in the log and
    the hub keeps the one it had.

    Every part of a running hub (transaction agent, outbound agents, gateway, relay, console,
    API) holds the one Directory object `serve` loaded and reads it at each use, so the new
    one is copied into that object. What was set up from the directory at start cannot follow
    it, so a directory that needs those changed is refused with "restart": a protocol no
    partner spoke at start (its listener and outbound agent were not started), and partners
    whose listener was built for them (a mailbox read for one partner)."""

    def __init__(self, settings: Settings, directory: Directory, listeners: list[Any]) -> None:
        from hub.runtime import app as assembly

        self.settings, self.directory = settings, directory
        self.started_for = assembly.spoken(directory)
        # Listeners that serve one partner (a mailbox) carry its symbol and protocol.
        self.per_partner = {x.protocol for x in listeners if getattr(x, "partner", None)}

    def __call__(self) -> None:
        path = str(self.settings.directory)
        reason = self.refusal()
        if reason is not None:
            log.error(
                "directory.reload_refused",
                directory=path,
                reason=reason,
                detail="the hub goes on with the directory it had",
            )
            return
        log.info(
            "directory.reloaded",
            directory=path,
            consortium=self.directory.consortium,
            partners=len(self.directory.partners),
        )
        warn_unset_secrets(self.directory)

    def refusal(self) -> str | None:
        """Why the file cannot replace the directory in use (None: it has replaced it)."""
        from hub.runtime import app as assembly

        try:
            _, new, _ = load_checked(self.settings)
        except NotStartable as refused:
            return "; ".join(refused.problems)
        except Exception as error:  # a file half written, unreadable, a check that failed
            return f"{type(error).__name__}: {error}"
        added = assembly.spoken(new) - self.started_for
        if added:
            return (
                f"partners of {', '.join(sorted(added))}, which no partner spoke when this hub "
                "started (no listener or outbound agent runs for it): restart the hub"
            )
        before = {p.symbol: p for p in self.directory.partners if p.protocol in self.per_partner}
        after = {p.symbol: p for p in new.partners if p.protocol in self.per_partner}
        changed = sorted(s for s in before.keys() | after.keys() if before.get(s) != after.get(s))
        if changed:
            return (
                f"{', '.join(changed)} changed, added or removed, and its mailbox is read by a "
                "listener set up at start: restart the hub"
            )
        self.directory.replace(new)
        return None


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


def unset_secrets(directory: Directory) -> list[dict[str, str]]:
    """The secrets the directory names that are not set, each with what that stops: a
    partner whose secret is missing gets nothing but 401s; a relay member's own secret
    (query token, FromAgencyAuthentication) unset means its calls are answered Temporary
    Processing Failure (never sent empty)."""
    from connectors.ncip_relay import codec as relay_codec

    found = [
        {
            "partner": partner.symbol,
            "direction": option,
            "secret": source,
            "effect": "calls relayed to this member are not sent until it is set",
        }
        for partner, option, source, is_set in relay_codec.member_secrets(directory)
        if not is_set
    ]
    for partner, direction, credential in directory.credentials():
        if credential.secret() is None:
            found.append(
                {
                    "partner": partner.symbol,
                    "direction": direction,
                    "secret": credential.source(),
                    "effect": "this partner cannot authenticate"
                    if direction == "inbound"
                    else "rshub cannot log in to this partner",
                }
            )
    return found


def warn_unset_secrets(directory: Directory) -> None:
    """Each secret the directory names and is not set, as a warning line at start."""
    for unset in unset_secrets(directory):
        log.warning("partner.secret_unset", **unset)


def _agent_states(app: Any) -> dict[str, str]:
    """Each faust agent's state; an agent whose actor has crashed (faust restarts it) counts
    as crashed until the restart is running."""
    states = {}
    for name, agent in app.agents.items():
        state = agent.state
        if state == "running" and internals.actor_crashed(agent):
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

    from hub.kafka.faust_app import active_items
    from hub.kafka.producer import KafkaIO
    from hub.ops import index as index_module
    from hub.runtime import app as assembly
    from hub.runtime import metrics
    from hub.runtime.agents import create_app
    from hub.runtime.gateway import Gateway
    from hub.runtime.relay import RelayDesk, connectors_replay_keys

    try:
        registry, directory, loaded = load_checked(settings)
    except NotStartable as refused:
        print(f"rshub: {'; '.join(refused.problems)}", file=sys.stderr)
        return 2
    warn_unset_secrets(directory)
    warn_placeholder_id_secret()
    # SIGHUP reloads the directory once the worker runs (DirectoryReload); until then it is
    # ignored rather than ending the hub, its default.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
            index_module.index_path(settings.data_dir), running.redactors(registry)
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
        reload = DirectoryReload(settings, directory, listeners)

        async def reload_on_hangup() -> None:
            # In the worker's loop, between steps: no agent sees half a directory.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)

        app.task(reload_on_hangup)
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


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser], registry: Registry) -> None:
    """`serve`'s options: the directory, the HTTP port, a port per listening connector."""
    p_serve = sub.add_parser(
        "serve", help="run the hub (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)"
    )
    p_serve.add_argument("--directory", type=Path, help="consortium YAML (RSHUB_DIRECTORY)")
    p_serve.add_argument("--port", type=int, help="HTTP port of the endpoints (RSHUB_HTTP_PORT)")
    ports = [c for c in registry if "port" in c.settings.model_fields]
    for connector in ports:  # a listening port per connector that has one
        p_serve.add_argument(
            f"--{connector.name}-port",
            type=int,
            help=f"TCP port of {connector.name} ({connector.env_prefix()}PORT)",
        )


def with_options(settings: Settings, args: argparse.Namespace, registry: Registry) -> Settings:
    """The settings with `serve`'s command-line options applied over the environment's (a
    connector's port through its environment variable, which the connector reads)."""
    for connector in registry:
        value = getattr(args, f"{connector.name}_port".replace("-", "_"), None)
        if value is not None:
            os.environ[f"{connector.env_prefix()}PORT"] = str(value)
    options = (("directory", args.directory), ("http_port", args.port))
    updates = {k: v for k, v in options if v is not None}
    return Settings.model_validate({**settings.model_dump(), **updates})
