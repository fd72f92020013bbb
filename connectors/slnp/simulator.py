"""A simulated regional ILL server ("ZFL") for tests, the demo and the bench.

As a server it takes the hub's commands (orders to lend, status changes) the way Koha's and
the ZFL servers answer them, records each, and can be told to refuse the next one. As a client
it connects to the hub's SLNP port, logs in if asked, and sends orders and status changes,
returning each reply. Both sides use the sans-IO `wire` module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from connectors.core.connections import free_port
from connectors.slnp import vocabulary
from connectors.slnp.codes import error_of
from connectors.slnp.wire import (
    Command,
    CommandFramer,
    Response,
    ResponseFramer,
    SlnpError,
    data,
    error,
    ok,
    parse_command,
    parse_response,
    render_command,
    render_response,
)


@dataclass
class SimulatedZfl:
    """A ZFL server on loopback. `received` holds every ILL command it was sent (parsed);
    `arrived` lets a test await the next one. `refuse_next` answers the next ILL command with
    that error type (e.g. "INTERNAL_SERVER_ERROR") instead of accepting it."""

    sigel: str = "ZFL"
    user: str | None = None
    secret: str | None = None
    encoding: str = "utf-8"
    greeting: bool = True
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    received: list[Command] = field(default_factory=list)
    refuse_next: str | None = None
    hang: bool = False  # take ILL commands and never answer them (a hung server)
    _arrived: asyncio.Queue[Command] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def endpoint(self) -> str:
        return f"slnp://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> SimulatedZfl:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def arrived(self, timeout: float = 30.0) -> Command:
        """The next ILL command the hub sends (waits for it)."""
        return await asyncio.wait_for(self._arrived.get(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = CommandFramer(max_line=65536, max_command=1 << 20)
        logged_in = self.user is None
        if self.greeting:
            writer.write(b"220 SLNP simulated ZFL server\n")
        try:
            while chunk := await reader.read(65536):
                for frame in framer.feed(chunk):
                    try:
                        command = parse_command(frame.decode(self.encoding))
                    except SlnpError as exc:
                        writer.write(self._say(_error(exc.kind, exc.detail)))
                        continue
                    name = vocabulary.ALIASES.get(command.name, command.name)
                    if name == vocabulary.QUIT:
                        writer.write(self._say(ok(name)))
                        await writer.drain()
                        return
                    if name == vocabulary.LOGIN:
                        logged_in = self.user is None or (
                            command.value("Kennung") == self.user
                            and command.get("Kennwort") == self.secret
                        )
                        reply = ok(name) if logged_in else _error("SLNP_ACCESS_DENIED", "login")
                        writer.write(self._say(reply))
                    elif not logged_in:
                        writer.write(self._say(_error("SLNP_ACCESS_DENIED", "log in first")))
                    elif self.hang:
                        self._answer(command, name)  # recorded, never answered
                    else:
                        writer.write(self._say(self._answer(command, name)))
                await writer.drain()
        except (ConnectionError, SlnpError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _answer(self, command: Command, name: str) -> Response:
        if name not in (vocabulary.ORDER, vocabulary.CHANGE):
            return _error("SLNP_CMD_NOT_IMPLEMENTED", f"The SLNP command '{name}' is unknown.")
        self.received.append(command)
        self._arrived.put_nowait(command)
        if self.refuse_next:
            kind, self.refuse_next = self.refuse_next, None
            return _error(kind, "refused by the simulated ZFL server")
        if name == vocabulary.ORDER:
            return data(
                command.name,
                ("PFLNummer", str(next(self._numbers))),
                ("OKMsg", "ILL request successfully inserted."),
            )
        return data(command.name, ("BestellId", command.value("BestellId") or ""), ("OKMsg", "ok"))

    def _say(self, response: Response) -> bytes:
        return render_response(response).encode(self.encoding, errors="replace")


def _error(kind: str, text: str) -> Response:
    code, cls = error_of(kind)
    return error(code, cls, kind, text)


class ZflClient:
    """A ZFL server's client side, talking to the hub's SLNP port."""

    def __init__(
        self, host: str, port: int, encoding: str = "utf-8", source: str | None = None
    ) -> None:
        """`source`: the local address to connect from (another loopback address, say)."""
        self.host, self.port, self.encoding, self.source = host, port, encoding, source
        self.greeting: Response | None = None
        self._framer = ResponseFramer(65536, 1 << 20)
        self._ready: list[bytes] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> ZflClient:
        local = (self.source, 0) if self.source else None
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, local_addr=local
        )
        self.greeting = await self.reply()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def raw(self, data_: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data_)
        await self.writer.drain()

    async def reply(self, timeout: float = 30.0) -> Response:
        assert self.reader is not None
        async with asyncio.timeout(timeout):
            while not self._ready:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("the hub closed the connection")
                self._ready.extend(self._framer.feed(chunk))
        return parse_response(self._ready.pop(0).decode(self.encoding))

    async def command(self, name: str, *params: tuple[str, str]) -> Response:
        await self.raw(render_command(Command(name, params)).encode(self.encoding))
        return await self.reply()

    async def login(self, user: str, secret: str) -> Response:
        return await self.command(vocabulary.LOGIN, ("Kennung", user), ("Kennwort", secret))

    async def order(self, order_id: str, *, sigel: str = "123ABC", **params: str) -> Response:
        """A PFL order (the library borrows) with the mandatory parameters and `params`."""
        base = {
            "BsTyp": "PFL",
            "BestellId": order_id,
            "SigelNB": sigel,
            "BenutzerNummer": "4711",
            "Titel": "Kater Murr",
        }
        base.update(params)
        return await self.command(vocabulary.ORDER, *base.items())

    async def change(self, order_id: str, status: str, **params: str) -> Response:
        return await self.command(
            vocabulary.CHANGE, ("BestellId", order_id), ("Status", status), *params.items()
        )

    async def quit(self) -> Response:
        return await self.command(vocabulary.QUIT)


def simulator(**kwargs: Any) -> SimulatedZfl:
    return SimulatedZfl(**kwargs)
