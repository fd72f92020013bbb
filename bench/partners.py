"""Simulated partners for the benchmarks and the hub they talk to.

Built on `connectors.simulator` without changing it: `BenchLibrary` sends everything over one
kept-alive HTTP session (the simulator opens one per message), `SlowLibrary` accepts a
delivery and answers it only after a delay or never, and `Route` ties a borrower to a lender
so the closed-loop driver of `bench.measure` can time a request from the borrower's POST to the
moment the lender has it (timestamped when the lender's handler has decoded it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import measure
from bench.measure import Arrivals
from connectors.core.model import Bibliographic, Event, Message, RequestFormat, transaction_id
from connectors.iso10161 import codec as ill_codec
from connectors.simulator import Answer, Library, TcpLibrary
from hub.cli.process import ROOT, HubProcess
from hub.kafka import topics

# The hub keys transaction ids with its deployment secret; the benchmark computes the ids of
# what it sends, so it and the hubs it starts (which inherit the environment) share one.
os.environ.setdefault("RSHUB_ID_SECRET", secrets.token_hex(32))

BOOK = Bibliographic(
    title="Benchmark title", author="Author, A.", isbn="9780000000001", bibliographic_level="Book"
)
PROTOCOLS = ["ncip", "iso18626", "iso10161"]


def request(request_id: str) -> Message:
    return Message(
        event=Event.REQUEST,
        request_id=request_id,
        patron_id="p",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
    )


class Tap(asyncio.Queue[Message]):
    """A library's `received` queue that reports awaited deliveries to `arrivals` as they are
    put (the time of receipt) and queues the rest as before."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = Arrivals()
        self.keys: dict[str, str] = {}  # transaction id -> the benchmark's message id

    def put_nowait(self, item: Message) -> None:
        at = time.perf_counter()
        key = self.keys.pop((item.request_id or "").rsplit(".", 1)[0], None)
        if key is None:
            super().put_nowait(item)
        else:
            self.arrivals.arrived(key, at)


def tap(lib: Library | TcpLibrary) -> Tap:
    if not isinstance(lib.received, Tap):
        lib.received = Tap()
    return lib.received


@dataclass
class BenchLibrary(Library):
    """A simulated library that sends over one kept-alive session."""

    session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await super().start()
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.session:
            await self.session.close()
        await super().stop()

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        assert self.session is not None, "start() first"
        headers = {
            "Authorization": f"Bearer {secret or self.secret}",
            "Content-Type": "application/xml",
        }
        url = f"{self.hub_url}/{self.protocol}/{symbol or self.symbol}"
        async with self.session.post(url, data=body, headers=headers) as reply:
            content = await reply.read()
            return reply.status, self.dialect.read_answer(content)


@dataclass
class SlowLibrary(BenchLibrary):
    """A lender that takes a delivery (recorded on arrival) and answers it after `delay`
    seconds, or never (`delay` None) until the benchmark ends."""

    delay: float | None = 30.0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.put_nowait(self.dialect.decode(body))
        self.held += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), self.delay)
        finally:
            self.held -= 1
        return web.Response(body=self.dialect.answer(body), content_type="application/xml")

    async def stop(self) -> None:
        self.released.set()  # let held handlers finish so the server can close
        await super().stop()


@dataclass
class BenchTcpLibrary(TcpLibrary):
    """An ISO 10161 library that keeps its connections to the hub: a sender takes an idle one
    (or opens one) and puts it back after the answer. The hub answers the APDUs of one
    connection in turn, so concurrent senders need a connection each, as with HTTP/1.1."""

    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    async def stop(self) -> None:
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()
        await super().stop()

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        for attempt in (1, 2):  # a kept connection the hub has closed: open a new one once
            reused = bool(self.idle)
            reader, writer = (
                self.idle.pop() if reused else await asyncio.open_connection(*self.hub_tcp)
            )
            try:
                writer.write(body)
                await writer.drain()
                splitter = ill_codec.Splitter()
                while not (answers := splitter.feed(await _read(reader))):
                    pass
            except BaseException as exc:
                writer.close()
                if isinstance(exc, ConnectionError) and reused and attempt == 1:
                    continue
                raise
            self.idle.append((reader, writer))
            _name, value = ill_codec.decode(answers[0])
            error = value.get("error-report")
            return 200, Answer(error is None, [] if error is None else [str(error)])
        raise AssertionError("unreachable")


async def _read(reader: asyncio.StreamReader) -> bytes:
    data = await reader.read(65536)
    if not data:
        raise ConnectionResetError("the hub closed the connection")
    return data


def library(protocol: str, symbol: str) -> BenchLibrary | BenchTcpLibrary:
    """A simulated partner that keeps its connections: one HTTP session, or a pool of TCP
    connections for ISO 10161."""
    if protocol == "iso10161":
        return BenchTcpLibrary(symbol, f"{symbol}-LIB")
    return BenchLibrary(symbol, f"{symbol}-LIB", f"bench-{symbol.lower()}", protocol=protocol)


@dataclass
class Route:
    """Requests from `borrower` that the directory routes to `lender` first."""

    borrower: Library | TcpLibrary
    lender: Library | TcpLibrary

    @property
    def arrivals(self) -> Arrivals:
        return tap(self.lender).arrivals

    async def send(self, key: str, _n: int = 0) -> None:
        tap(self.lender).keys[transaction_id(self.borrower.symbol, key)] = key
        status, answer = await self.borrower.send(request(key))
        if status != 200 or not answer.ok:
            raise RuntimeError(f"hub refused {key}: {status} {answer}")


def secrets_env(libraries: Sequence[Library | TcpLibrary]) -> dict[str, str]:
    return {f"RSHUB_SECRET_{lib.symbol}": lib.secret for lib in libraries if lib.secret}


@contextlib.asynccontextmanager
async def hub_running(
    broker: measure.Broker,
    libraries: Sequence[Library | TcpLibrary],
    directory_text: str,
    fetch_wait_ms: int,
    env: dict[str, str] | None = None,
) -> AsyncIterator[HubProcess]:
    """Start the libraries and the hub (a child process, `rshub serve`) on the run's broker;
    stop them all on the way out. RSHUB_FETCH_WAIT_MS is passed through the environment only,
    so a hub without that setting ignores it."""
    await topics.ensure(broker.bootstrap, topics.load(ROOT / "topics.yaml"))
    workdir = Path(tempfile.mkdtemp(prefix="rshub-bench-"))
    directory = workdir / "consortium.yaml"
    directory.write_text(directory_text)
    hub = HubProcess(
        broker.bootstrap,
        directory,
        workdir,
        {
            "RSHUB_LOG_LEVEL": "WARNING",
            "RSHUB_FETCH_WAIT_MS": str(fetch_wait_ms),
            # Every simulated partner connects from loopback, up to 128 at once.
            "RSHUB_MAX_CONNECTIONS_PER_SOURCE": "1024",
            **secrets_env(libraries),
            **(env or {}),
        },
    )
    started: list[Library | TcpLibrary] = []
    try:
        for lib in libraries:
            await lib.start()
            started.append(lib)
        measure.say(f"starting the hub (log: {hub.log}) ...")
        await hub.start()
        for lib in libraries:
            lib.hub_url = hub.url
            if isinstance(lib, TcpLibrary):
                lib.hub_tcp = ("127.0.0.1", hub.iso10161_port)
        yield hub
    finally:
        hub.stop()
        for lib in started:
            await lib.stop()


def hub_pid(hub: HubProcess) -> int | None:
    return hub.process.pid if hub.process else None


def parse_env(pairs: list[str]) -> dict[str, str]:
    """--hub-env KEY=VALUE arguments."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--hub-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env
