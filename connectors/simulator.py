"""A simulated library for the demo, the tests and the benchmark: a real HTTP server that
records what the hub delivers to it and sends its own messages to the hub, in NCIP or ISO 18626."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import yaml
from aiohttp import web

from connectors.core.connections import free_port
from connectors.core.model import Message
from connectors.iso10161 import codec as ill_codec
from connectors.iso10161 import mapping as ill_mapping
from connectors.iso10161 import transport as ill_transport
from connectors.iso18626 import codec as iso_codec
from connectors.iso18626 import writer as iso_writer
from connectors.ncip import codec as ncip_codec
from connectors.ncip import writer as ncip_writer


@dataclass(frozen=True)
class Answer:
    """The hub's answer: accepted, or the errors (protocol error type first) it gave."""

    ok: bool
    errors: list[str]


def _ncip_answer(body: bytes) -> Answer:
    response = ncip_codec.read_response(body)
    return Answer(response.ok, [f"{p.type}: {p.detail}" for p in response.problems])


def _iso_answer(body: bytes) -> Answer:
    confirmation = iso_codec.read_confirmation(body)
    errors = [] if confirmation.ok else [f"{confirmation.error_type}: {confirmation.error_value}"]
    return Answer(confirmation.ok, errors)


@dataclass(frozen=True)
class Dialect:
    encode: Callable[[Message, str, str, str], bytes]  # message, from, to, own symbol
    decode: Callable[[bytes], Message]
    answer: Callable[[bytes], bytes]  # what the library answers to a message it received
    read_answer: Callable[[bytes], Answer]


DIALECTS: dict[str, Dialect] = {
    "ncip": Dialect(
        encode=lambda m, f, t, s: ncip_writer.encode(m, from_agency=f, to_agency=t, system_id=s),
        decode=lambda body: ncip_codec.decode(body, sender="rshub"),
        answer=lambda body: ncip_writer.encode_response(ncip_codec.parse(body)),
        read_answer=_ncip_answer,
    ),
    "iso18626": Dialect(
        encode=lambda m, f, t, _s: iso_writer.encode(m, from_agency=f, to_agency=t),
        decode=lambda body: iso_codec.to_canonical(iso_codec.parse(body), sender="rshub"),
        answer=lambda body: iso_writer.confirm(iso_codec.parse(body)),
        read_answer=_iso_answer,
    ),
}


@dataclass
class Library:
    symbol: str
    agency_id: str
    secret: str
    hub_url: str = ""
    port: int = field(default_factory=free_port)
    received: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    protocol: str = "ncip"
    runner: web.AppRunner | None = None

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.protocol]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.protocol}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(f"/{self.protocol}", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.put_nowait(self.dialect.decode(body))
        return web.Response(body=self.dialect.answer(body), content_type="application/xml")

    async def next(self, timeout: float = 60.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    def encode(self, message: Message, to_agency: str = "RSHUB") -> bytes:
        return self.dialect.encode(message, self.agency_id, to_agency, self.symbol)

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, Answer]:
        return await self.post(self.encode(message, to_agency), secret)

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        headers = {
            "Authorization": f"Bearer {secret or self.secret}",
            "Content-Type": "application/xml",
        }
        url = f"{self.hub_url}/{self.protocol}/{symbol or self.symbol}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as reply,
        ):
            content = await reply.read()
            return reply.status, self.dialect.read_answer(content)


@dataclass
class TcpLibrary:
    """A library speaking ISO 10161 over TCP: answers every APDU with a status report."""

    symbol: str
    agency_id: str
    secret: str = ""
    hub_url: str = ""  # unused: TCP libraries reach the hub at hub_tcp
    hub_tcp: tuple[str, int] = ("127.0.0.1", 0)
    port: int = field(default_factory=free_port)
    received: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    protocol: str = "iso10161"
    server: asyncio.Server | None = None
    # How the hub knows it is this library (the directory's addresses and certificate pin):
    # every simulated library connects from loopback; `tls` (a client context holding its
    # certificate) makes it connect over TLS, and `certificate` is that certificate's pin.
    addresses: tuple[str, ...] = ("127.0.0.1/32",)
    tls: ssl.SSLContext | None = None
    certificate: str | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = ill_codec.Splitter()
        while data := await reader.read(65536):
            for apdu in splitter.feed(data):
                name, value = ill_codec.decode(apdu)
                self.received.put_nowait(ill_mapping.to_canonical(name, value, sender="rshub"))
                status = {
                    "user-status-report": {
                        "date-of-last-transition": "20260101",
                        "most-recent-service": "mESSAGE",
                        "date-of-most-recent-service": "20260101",
                        "initiator-of-most-recent-service": {},
                    },
                    "provider-status-report": "iN-PROCESS",
                }
                writer.write(ill_transport.report(value, status=status))
                await writer.drain()
        writer.close()

    async def next(self, timeout: float = 60.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    def encode(self, message: Message, to_agency: str = "RSHUB") -> bytes:
        return ill_codec.encode(*ill_mapping.from_canonical(message, self.agency_id, to_agency))

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, Answer]:
        return await self.post(self.encode(message, to_agency))

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        reader, writer = await asyncio.open_connection(*self.hub_tcp, ssl=self.tls)
        try:
            writer.write(body)
            await writer.drain()
            splitter = ill_codec.Splitter()
            while not (answers := splitter.feed(data := await reader.read(65536))):
                if not data:
                    raise ConnectionError("the hub closed the connection without an answer")
        finally:
            writer.close()
        _name, value = ill_codec.decode(answers[0])
        error = value.get("error-report")
        return 200, Answer(error is None, [] if error is None else [str(error)])


LibraryT = TypeVar("LibraryT", bound="Library | TcpLibrary")


@asynccontextmanager
async def running(libraries: dict[str, LibraryT]) -> AsyncIterator[dict[str, LibraryT]]:
    """Start every simulated library; stop them all on the way out."""
    for lib in libraries.values():
        await lib.start()
    try:
        yield libraries
    finally:
        for lib in libraries.values():
            await lib.stop()


def _identity(lib: Library | TcpLibrary) -> dict[str, object]:
    """How the hub authenticates the library: a secret over HTTP; over ISO 10161 its source
    networks and, when it has one, its pinned client certificate."""
    if isinstance(lib, TcpLibrary):
        identity: dict[str, object] = {"addresses": list(lib.addresses)}
        if lib.certificate:
            identity["tls_client_cert_sha256"] = lib.certificate
        return identity
    return {"inbound_auth": {"scheme": "bearer", "secret_env": f"RSHUB_SECRET_{lib.symbol}"}}


def directory_yaml(
    libraries: list[Library | TcpLibrary],
    rota: list[str],
    extra: dict[str, dict[str, object]] | None = None,
    rota_options: dict[str, object] | None = None,
) -> str:
    """A directory for simulated libraries; `extra` adds fields per symbol (catalogue,
    thresholds, ...), `rota_options` to the rota (ordered, last_resort, ...)."""
    partners = [
        {
            "symbol": lib.symbol,
            "name": f"{lib.symbol} library",
            "protocol": lib.protocol,
            "endpoint": lib.endpoint,
            "agency_ids": [lib.agency_id],
            **_identity(lib),
            **(extra or {}).get(lib.symbol, {}),
        }
        for lib in libraries
    ]
    document = {
        "consortium": "Test Consortium",
        "partners": partners,
        "rotas": [{"name": "default", "members": rota, **(rota_options or {})}],
        "default_rota": "default",
    }
    return yaml.safe_dump(document, sort_keys=False)
