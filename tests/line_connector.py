"""A throw-away protocol defined only here, to prove the connector contract: plugging it
into the hub takes this module and RSHUB_EXTRA_CONNECTORS, no edit anywhere else.

The "line" protocol: one message per line, `<Event> <request id> key=value ...` (values
percent-encoded), answered `OK <state>` or `ERR <fault> <detail>`. Partners connect over TCP
from an address the directory allows and name themselves with `from=<symbol>`; rshub
delivers by opening a connection to the partner's tcp:// endpoint and sending one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict

from connectors.core.connections import bind
from connectors.core.contract import (
    Answer,
    Attempt,
    Codec,
    Connector,
    Decoded,
    Fault,
    Intake,
    Limits,
    Listener,
    Outgoing,
    Refusal,
)
from connectors.core.directory import Directory, Partner
from connectors.core.model import Bibliographic, Event, Message, NotApplicable

PROTOCOL = "line"
EVENTS = frozenset(
    {
        Event.REQUEST,
        Event.LOANED,
        Event.UNFILLED,
        Event.RECEIVED,
        Event.SHIPPED_RETURN,
        Event.LOAN_COMPLETED,
    }
)


def _line(event: Event, request_id: str, **fields: str | None) -> bytes:
    pairs = " ".join(f"{k}={quote(v)}" for k, v in fields.items() if v)
    return f"{event.value} {request_id} {pairs}".rstrip().encode() + b"\n"


def parse(body: bytes) -> tuple[Event, str, dict[str, str]]:
    words = body.decode("utf-8").split()
    if len(words) < 2 or words[0] not in {e.value for e in EVENTS}:
        raise ValueError("expected '<Event> <request id> key=value ...'")
    fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
    return Event(words[0]), words[1], {k: unquote(v) for k, v in fields.items()}


class LineCodec:
    protocol = PROTOCOL
    content_type = "text/plain; charset=utf-8"
    events_in = EVENTS
    events_out = EVENTS
    not_applicable = frozenset(Event) - EVENTS

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[None]:
        try:
            event, request_id, fields = parse(body)
            title = fields.get("title")
            message = Message(
                event=event,
                request_id=request_id,
                sender=sender,
                source_protocol=PROTOCOL,
                item_id=fields.get("item"),
                bibliographic=Bibliographic(title=title) if title else None,
            )
        except ValueError as error:
            raise Refusal(str(error), self.fault(Fault.SYNTAX, str(error))) from None
        return Decoded(message, None)

    def accept(self, decoded: Decoded[None], state: str | None = None) -> Answer:
        return Answer(f"OK {state or '-'}\n".encode(), self.content_type)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[None] | None = None,
        state: str | None = None,
    ) -> Answer:
        return Answer(f"ERR {fault.value} {detail}\n".encode(), self.content_type)

    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event not in EVENTS:
            raise NotApplicable(f"the line protocol has no {message.event.value}")
        title = message.bibliographic.title if message.bibliographic else None
        return _line(message.event, message.request_id, item=message.item_id, title=title)

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        text = body.decode("utf-8", "replace").strip()
        return Attempt(text.startswith("OK"), False, text or "no answer", answer=body)

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None


class LineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 0


CODEC = LineCodec()


class LineListener:
    def __init__(self, limits: Limits, settings: LineSettings) -> None:
        self.limits, self.settings = limits, settings
        self.sock: socket.socket | None = None
        self.server: asyncio.Server | None = None

    def bind(self) -> None:
        self.sock = bind(self.limits.host, self.settings.port, "the line protocol")

    def health(self) -> dict[str, Any]:
        return {"state": "running" if self.server and self.server.is_serving() else "stopped"}

    async def start(self, intake: Intake) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            address = str((writer.get_extra_info("peername") or ("?",))[0])
            with contextlib.suppress(ConnectionError):
                while line := await reader.readline():
                    writer.write((await self._one(intake, line, address)).body)
                    await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(serve, sock=self.sock)

    async def _one(self, intake: Intake, line: bytes, address: str) -> Answer:
        try:
            claimed = parse(line)[2].get("from", "")
        except (ValueError, UnicodeDecodeError) as error:
            refusal = Refusal(str(error), CODEC.fault(Fault.SYNTAX, str(error)))
            await intake.refuse(refusal, address, PROTOCOL)
            return refusal.answer
        partner = intake.directory.partner(claimed)
        if partner is None or partner.protocol != PROTOCOL or not partner.connects_from(address):
            refusal = Refusal(
                f"{claimed!r} may not connect from {address}",
                CODEC.fault(Fault.UNAUTHENTICATED, "unknown partner"),
                "authenticate",
            )
            await intake.refuse(refusal, address, PROTOCOL)
            return refusal.answer
        try:
            return await intake.take(CODEC, partner.symbol, line.strip(), CODEC.content_type)
        except Refusal as refusal:
            await intake.refuse(refusal, partner.symbol, PROTOCOL)
            return refusal.answer

    async def stop(self) -> None:
        if self.server:
            self.server.close()


class LineSender:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        target = urlsplit(partner.endpoint or "")
        try:
            reader, writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError as error:
            return Attempt(False, True, f"{type(error).__name__}: {error}")
        try:
            writer.write(body)
            await writer.drain()
            return CODEC.judge(await asyncio.wait_for(reader.readline(), 10))
        except (OSError, TimeoutError) as error:
            return Attempt(False, True, f"{type(error).__name__}: {error}")
        finally:
            writer.close()


def listeners(limits: Limits, settings: LineSettings, _directory: Directory) -> list[Listener]:
    return [LineListener(limits, settings)]


def sender(limits: Limits, _settings: LineSettings, _codec: Codec[Any]) -> LineSender:
    return LineSender(limits)


CONNECTOR: Connector[Any, LineSettings] = Connector(
    name=PROTOCOL,
    codec=CODEC,
    listeners=listeners,
    sender=sender,
    settings=LineSettings,
    endpoint_schemes=("tcp",),
    describe="a line protocol defined in a test",
)
