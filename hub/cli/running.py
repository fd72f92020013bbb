"""How the commands reach the hub they act on: its broker (configured, or the data
folder's embedded one) and the operators' index; the small formatting they share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.core.contract import Registry
from connectors.core.topics import Topic
from hub.kafka import embedded as kept_broker
from hub.runtime.settings import Settings

BROKER_FILE = "broker-address"
BROKER_CHECK_S = 3.0
# The lines say_hub has printed in this process (a command that finds the broker, then
# opens the index, names its hub once).
_said: set[str] = set()


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


def answers(bootstrap: str) -> bool:
    """Whether something accepts connections at the first bootstrap address."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=BROKER_CHECK_S):
            return True
    except (OSError, ValueError):
        return False


def running_bootstrap(settings: Settings) -> str | None:
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
    if not answers(bootstrap):
        where = f"noted in {marker} by an `rshub serve` that has stopped?" if noted else ""
        print(f"rshub: no broker answers at {bootstrap} {where}".rstrip(), file=sys.stderr)
        return None
    if not asyncio.run(_holds_hub_topics(bootstrap)):
        print(
            f"rshub: the broker at {bootstrap} answers but holds no {Topic.EVENTS} topic: "
            "not a hub's broker, or no hub has started on it yet",
            file=sys.stderr,
        )
        return None
    say_hub(settings, bootstrap)
    return bootstrap


async def _holds_hub_topics(bootstrap: str) -> bool:
    """Whether the broker holds the topics a hub makes at start (on a broker without them
    the commands' readers and writers fail deep in the Kafka client)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return Topic.EVENTS in await consumer.topics()
    finally:
        await consumer.stop()


def say_hub(settings: Settings, bootstrap: str) -> None:
    """One line on stderr naming the hub a command acts on, its data folder and its broker:
    a command run with another hub's environment would otherwise act on that hub silently."""
    if settings.bootstrap_servers:
        broker = f"Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS, RSHUB_APP_ID {settings.app_id})"
    else:
        broker = f"its embedded broker at {bootstrap}"
    line = f"rshub: the hub of {settings.data_dir.resolve()}, {broker}"
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def redactors(registry: Registry) -> dict[str, Callable[[bytes], bytes]]:
    """Per protocol, how its codec hides credentials in a body (the index keeps only that)."""
    found = {}
    for connector in registry:
        redact = getattr(connector.codec, "redact", None)
        if redact is not None:
            found[connector.name] = redact
    return found


@contextlib.contextmanager
def open_index(settings: Settings, bootstrap: str | None) -> Iterator[Any]:
    """The operators' index, brought up to date with the topics first when a broker
    answers (otherwise as the hub last left it, which is said)."""
    from hub.ops import index as index_module
    from hub.runtime import app as assembly

    path = index_module.index_path(settings.data_dir)
    index = index_module.Index(path, redactors(assembly.connectors(settings)))
    try:
        if bootstrap:
            say_hub(settings, bootstrap)
            asyncio.run(index_module.catch_up(bootstrap, index))
        else:
            print(f"rshub: no broker answers; the index as last kept ({path})", file=sys.stderr)
        yield index
    finally:
        index.close()


def unknown_partner(settings: Settings, symbol: str) -> str | None:
    """Why `symbol` names no partner of the directory, with the nearest symbols (a typo is
    the usual cause); None if it is a partner, or if the directory cannot be read (the
    hub then judges)."""

    from connectors.core import directory as directory_module
    from connectors.core.directory import DirectoryError
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
    except DirectoryError:
        return None
    symbols = [partner.symbol for partner in directory.partners]
    if symbol in symbols:
        return None
    return f"{symbol} is not a partner in {settings.directory}" + did_you_mean(symbol, symbols)


def did_you_mean(word: str, choices: list[str]) -> str:
    """`; did you mean X?` for the nearest of `choices` (case aside), else `; known: ...`."""
    import difflib

    by_lower = {choice.lower(): choice for choice in choices}
    near = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if near:  # the nearest only: "NORTH or SOUTH" for NROTH reads as a riddle
        return f"; did you mean {by_lower[near[0]]}?"
    return f"; known: {', '.join(sorted(choices)) or 'none'}"


def quiet_bootstrap(settings: Settings) -> str | None:
    """The broker to catch up from, if one answers (no message when none does)."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers if answers(settings.bootstrap_servers) else None
    kept = kept_broker.running(settings.data_dir)
    return kept.address if kept and answers(kept.address) else None


def age(since: str | None, now: datetime) -> str:
    if not since:
        return "-"
    seconds = (now - datetime.fromisoformat(since)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def who() -> str:
    """Who typed a staff command, for the timeline."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"
