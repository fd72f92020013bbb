"""Simulated libraries for the demo, `rshub peer`, the tests and the benchmark: real servers
that record what the hub delivers to them (as canonical messages) and send their own messages
to the hub, each in its protocol: `Library` (NCIP, ISO 18626 v1.2 or 2021-2, over HTTP),
`TcpLibrary` (ISO 10161 over TCP), `SlnpLibrary` (a regional SLNP server) and `MailLibrary`
(the British Library over ARTEmail, connectors/artemail/simulator.py). All have the same face
(`start`, `stop`, `next`, `send`, `encode`), so a script of a loan runs unchanged whatever the
protocols; `library_for` builds one from a directory entry. The NCIP relay's brokers and
member responders are in connectors/ncip_relay/simulator.py: they relay calls, not loans.

`hang` makes a library take what the hub sends and never answer (a hung system): the hub's
delivery times out; `delay` (HTTP libraries) makes it answer that many seconds late (a slow
or loaded system). A library that is down is one that is not started."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import yaml
from aiohttp import web

from connectors.artemail.options import ArtemailOptions
from connectors.artemail.simulator import MailLibrary
from connectors.core.connections import free_port
from connectors.core.contract import Limits, Outgoing
from connectors.core.directory import Partner, authorization
from connectors.core.model import Event, Message
from connectors.iso10161 import codec as ill_codec
from connectors.iso10161 import mapping as ill_mapping
from connectors.iso10161 import transport as ill_transport
from connectors.iso18626 import codec as iso_codec
from connectors.iso18626 import writer as iso_writer
from connectors.ncip import codec as ncip_codec
from connectors.ncip import writer as ncip_writer
from connectors.slnp.codec import SlnpCodec
from connectors.slnp.models import SlnpCorrelation
from connectors.slnp.simulator import SimulatedZfl, ZflClient
from connectors.slnp.wire import Command, parse_command, render_command


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
    # message, from, to, own symbol[, ISO 18626 version]
    encode: Callable[..., bytes]
    decode: Callable[[bytes], Message]
    answer: Callable[[bytes], bytes]  # what the library answers to a message it received
    read_answer: Callable[[bytes], Answer]


DIALECTS: dict[str, Dialect] = {
    "ncip": Dialect(
        encode=lambda m, f, t, s, _version="": ncip_writer.encode(
            m, from_agency=f, to_agency=t, system_id=s
        ),
        decode=lambda body: ncip_codec.decode(body, sender="rshub"),
        answer=lambda body: ncip_writer.encode_response(ncip_codec.parse(body)),
        read_answer=_ncip_answer,
    ),
    "iso18626": Dialect(
        encode=lambda m, f, t, _s, version="1.2": iso_writer.encode(
            m, from_agency=f, to_agency=t, version=version
        ),
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
    path: str = ""  # where it takes the hub's messages: /<protocol> unless set
    host: str = "127.0.0.1"
    version: str = "1.2"  # the ISO 18626 version it writes (1.2 or 2021-2)
    # The Authorization header it sends (a directory's basic credential, say); unset: the
    # secret as a bearer token.
    authorization: str | None = None
    hang: bool = False
    delay: float = 0.0  # seconds it takes to answer what the hub sends
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.protocol]

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}{self.path or '/' + self.protocol}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path or f"/{self.protocol}", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        self._stopping.set()
        if self.runner:
            await self.runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.put_nowait(self.dialect.decode(body))
        if self.hang:
            await self._stopping.wait()
        elif self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(body=self.dialect.answer(body), content_type="application/xml")

    async def next(self, timeout: float = 60.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    def encode(self, message: Message, to_agency: str = "RSHUB") -> bytes:
        return self.dialect.encode(message, self.agency_id, to_agency, self.symbol, self.version)

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, Answer]:
        return await self.post(self.encode(message, to_agency), secret)

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        given = f"Bearer {secret}" if secret else self.authorization
        headers = {
            "Authorization": given or f"Bearer {self.secret}",
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
    host: str = "127.0.0.1"
    hang: bool = False

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, self.host, self.port)

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
                if self.hang:
                    continue
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


@dataclass
class SlnpLibrary:
    """A regional SLNP server ("ZFL") as a library: its server (`SimulatedZfl`) takes the
    hub's orders and status changes, read into canonical messages by the SLNP codec; it sends
    its own as a client of the hub's SLNP port (logging in when `user` is set), written by the
    same codec. A request names its lender (an AFL order with SigelListe) when `send` is
    given the lender's sigel, else it is a PFL order the hub routes by rota."""

    symbol: str
    agency_id: str  # its sigel
    secret: str = ""  # its login at the hub, with `user`
    user: str | None = None
    hub_url: str = ""  # unused: SLNP servers reach the hub at hub_tcp
    hub_tcp: tuple[str, int] = ("127.0.0.1", 0)
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    # The hub's login at this server (the directory's outbound_auth), if it asks for one.
    server_user: str | None = None
    server_secret: str | None = None
    hang: bool = False
    protocol: str = "slnp"
    zfl: SimulatedZfl | None = None

    @property
    def endpoint(self) -> str:
        return f"slnp://{self.host}:{self.port}"

    def _server(self) -> SimulatedZfl:
        if self.zfl is None:
            self.zfl = SimulatedZfl(
                sigel=self.agency_id,
                user=self.server_user,
                secret=self.server_secret,
                host=self.host,
                port=self.port,
                hang=self.hang,
            )
        return self.zfl

    async def start(self) -> None:
        await self._server().start()

    async def stop(self) -> None:
        await self._server().stop()

    async def next(self, timeout: float = 60.0) -> Message:
        command = await self._server().arrived(timeout)
        body = render_command(command).encode()
        return SlnpCodec(check_order_numbers=False).decode(body, "rshub", Limits()).message

    def encode(self, message: Message, to_agency: str = "RSHUB") -> bytes:
        hub = Partner(symbol="RSHUB", name="rshub", protocol="slnp", agency_ids=[to_agency])
        correlation = SlnpCorrelation(request_id=message.request_id, order_id=message.request_id)
        body = SlnpCodec().render(Outgoing(message, self.agency_id, hub, correlation))
        if message.event is not Event.REQUEST or to_agency != "RSHUB":
            return body
        # Rendered as the hub writes orders to a lender (AFL, naming it); from a library
        # that borrows and names no lender, a PFL order for its patron.
        order = parse_command(body.decode())
        params = [
            ("BsTyp", "PFL")
            if name == "BsTyp"
            else ("BenutzerNummer", message.patron_id or value)
            if name == "BenutzerNummer"
            else (name, value)
            for name, value in order.params()
            if name != "SigelListe"
        ]
        return render_command(Command(order.name, tuple(params))).encode()

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, Answer]:
        return await self.post(self.encode(message, to_agency), secret)

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, Answer]:
        async with ZflClient(*self.hub_tcp) as client:
            if self.user:
                login = await client.login(self.user, secret or self.secret)
                if not login.ok:
                    return 200, Answer(False, [f"{login.error_type}: {login.text}"])
            await client.raw(body)
            reply = await client.reply()
            await client.quit()
        errors = [] if reply.ok else [f"{reply.error_type}: {reply.text}"]
        return 200, Answer(reply.ok, errors)


AnyLibrary = Library | TcpLibrary | SlnpLibrary | MailLibrary
LibraryT = TypeVar("LibraryT", bound="Library | TcpLibrary | SlnpLibrary | MailLibrary")


@dataclass(frozen=True)
class HubAddress:
    """Where simulated libraries reach the hub: its HTTP endpoints and its TCP ports."""

    url: str
    iso10161: tuple[str, int]
    slnp: tuple[str, int]
    # Each connector's settings (RSHUB_<CONNECTOR>_*), for those whose partners are reached
    # through servers of the hub's (the mail connectors' SMTP and IMAP servers).
    settings: dict[str, Any] = field(default_factory=dict)


def library_for(
    partner: Partner, hub: HubAddress, hang: bool = False, mailbox: bool = False
) -> AnyLibrary:
    """The simulated library a directory entry describes: listening at its endpoint,
    writing its protocol (and, for ISO 18626, its version), proving who it is as the
    directory says (its inbound credential's secret, read from where the directory keeps
    it). `mailbox`: a mail partner serves the hub's mailbox for it itself. ValueError for a
    protocol with no simulator, or an endpoint it cannot listen at."""
    if partner.protocol == "artemail":  # reached by mail, not at its endpoint
        return _british_library(partner, hub, hang, mailbox)
    endpoint = urlsplit(partner.endpoint or "")
    if not endpoint.port:
        raise ValueError(f"{partner.symbol}: endpoint {partner.endpoint!r} names no port")
    host = endpoint.hostname or "127.0.0.1"
    credential = partner.inbound_auth
    secret = (credential.secret() if credential else None) or ""
    if partner.protocol in DIALECTS:
        header = authorization(credential).get("Authorization")
        return Library(
            partner.symbol,
            partner.agency_id,
            secret,
            hub_url=hub.url,
            port=endpoint.port,
            protocol=partner.protocol,
            path=endpoint.path or "/",
            host=host,
            version=str(partner.options.get("version", "1.2")),
            authorization=header,
            hang=hang,
        )
    if partner.protocol == "iso10161":
        return TcpLibrary(
            partner.symbol,
            partner.agency_id,
            hub_tcp=hub.iso10161,
            port=endpoint.port,
            host=host,
            hang=hang,
        )
    if partner.protocol == "slnp":
        outbound = partner.outbound_auth
        return SlnpLibrary(
            partner.symbol,
            partner.agency_id,
            secret,
            user=credential.username if credential else None,
            hub_tcp=hub.slnp,
            port=endpoint.port,
            host=host,
            server_user=outbound.username if outbound else None,
            server_secret=(outbound.secret() if outbound else None),
            hang=hang,
        )
    raise ValueError(
        f"{partner.symbol}: no simulated library speaks {partner.protocol} "
        f"(there are: {', '.join(SIMULATED)})"
    )


def _british_library(
    partner: Partner, hub: HubAddress, hang: bool, serve_mailbox: bool
) -> MailLibrary:
    """The BL: the SMTP server of the hub's ARTEmail connector, writing its reports into the
    hub's mailbox for it (connectors/artemail/simulator.py), on the connector's IMAP server
    or, with `serve_mailbox`, one it serves itself there."""
    from connectors.mail.channel import partner_address
    from connectors.mail.options import MailSettings, TlsMode
    from connectors.mail.simulator import Mailbox

    options = ArtemailOptions.model_validate(partner.options)
    settings = hub.settings.get("artemail") or MailSettings()
    password = options.mailbox_password_env.value() if options.mailbox_password_env else None
    if not options.mailbox_user or not password:
        raise ValueError(
            f"{partner.symbol}: the hub reads no mailbox for it (options.mailbox_user and "
            "mailbox_password_env, set in this environment): its reports would go nowhere"
        )
    # The BL writes from an address the hub accepts: the first of from_addresses (a bare
    # @domain gets a mailbox name), else the partner's own address.
    accepted = next((a for a in options.from_addresses if "*" not in a), None)
    address = (
        (f"bldss{accepted}" if accepted.startswith("@") else accepted)
        if accepted
        else partner_address(partner, options) or "bldss@bl.uk"
    )
    mailbox = None
    if serve_mailbox:
        if settings.imap_tls is not TlsMode.NONE:
            raise ValueError(
                f"{partner.symbol}: its own mailbox speaks plain IMAP on loopback: set "
                "RSHUB_ARTEMAIL_IMAP_TLS=none (and the hub's RSHUB_ARTEMAIL_IMAP_PORT to it)"
            )
        mailbox = Mailbox(
            options.mailbox_user, password, host=settings.imap_host, port=settings.imap_port
        )
    return MailLibrary(
        partner.symbol,
        partner.agency_id,
        address=address,
        hub_address=options.reply_to or settings.from_address,
        settings=settings,
        mailbox_user=options.mailbox_user,
        mailbox_password=password,
        hang=hang,
        mailbox=mailbox,
    )


SIMULATED = (*DIALECTS, "iso10161", "slnp", "artemail")


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
