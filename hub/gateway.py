"""The inbound HTTP gateway: one aiohttp server, one URL per (protocol, partner).

What every protocol's endpoint does is here, in order: size limit, partner, authentication,
audit, decode, address, write to ill.inbound (acknowledged), wait for the state machine's
verdict, answer. What differs per protocol (decoding, the success answer, the error vocabulary)
is an `Endpoint` in the protocol's connector package.

The gateway also watches the broker: while it does not answer, every endpoint answers the
protocol's temporary failure at once (nothing can be made durable, so nothing is accepted),
and `/health` says so, with the state of each faust agent.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiokafka.errors import KafkaError
from mode import Service

from connectors.core.connections import SourceLimit, capped
from connectors.core.directory import AuthScheme, Credential, Directory
from connectors.core.model import Message
from connectors.core.records import DeadLetter, Verdict, VerdictOutcome
from hub.addressing import address
from hub.kafka_io import KafkaIO
from hub.settings import Settings

log = structlog.get_logger(__name__)


class Fault(StrEnum):
    """Failures every protocol must be able to report, each in its own vocabulary."""

    SYNTAX = "syntax"
    TOO_LARGE = "too_large"
    UNKNOWN_PARTNER = "unknown_partner"
    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_REQUEST = "unknown_request"
    STATE = "state"
    UNAVAILABLE = "unavailable"  # the broker cannot take the message now; try again later


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/xml; charset=utf-8"

    def response(self) -> web.Response:
        return web.Response(
            body=self.body, status=self.status, headers={"Content-Type": self.content_type}
        )


class Refusal(Exception):
    """A protocol-level refusal, with the reply the partner gets and the stage it failed at."""

    def __init__(
        self, reason: str, reply: Reply, stage: str = "parse", audit_ref: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.reply, self.stage, self.audit_ref = reason, reply, stage, audit_ref


@dataclass
class Decoded:
    message: Message
    context: Any  # whatever the endpoint needs to build its answer (parsed document)


class Endpoint(ABC):
    protocol: str

    @abstractmethod
    def decode(self, body: bytes, sender: str, limit: int) -> Decoded:
        """The canonical message, or raise Refusal with the protocol's error reply."""

    @abstractmethod
    def accept(self, decoded: Decoded, state: str | None = None) -> Reply:
        """The answer to a message the hub accepted (`state`: the transaction's state after
        it, when the verdict came in time)."""

    @abstractmethod
    def fault(
        self, fault: Fault, detail: str, decoded: Decoded | None = None, state: str | None = None
    ) -> Reply:
        """The protocol's error reply for a failure the gateway found (`state`: the
        transaction's state, for a refused step)."""


def authenticated(credential: Credential | None, header: str | None) -> bool:
    """Constant-time check of an Authorization header against a partner's credential."""
    if credential is None:
        return False
    if credential.scheme is AuthScheme.NONE:
        return True
    expected = authorization(credential).get("Authorization")
    if not expected or not header or not credential.secret():
        return False
    return hmac.compare_digest(header.encode(), expected.encode())


def authorization(credential: Credential | None) -> dict[str, str]:
    """The Authorization header rshub sends with a credential (none for scheme none)."""
    if credential is None or credential.scheme is AuthScheme.NONE:
        return {}
    secret = credential.secret() or ""
    if credential.scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    token = base64.b64encode(f"{credential.username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Front(Protocol):
    """A non-HTTP way in (the ISO 10161 TCP server): it hands messages to `Gateway.take`."""

    async def start(self, gateway: Gateway) -> None: ...

    async def stop(self) -> None: ...


UNAVAILABLE = "unavailable"  # the Refusal stage of a temporary failure: nothing to dead-letter


class Gateway(Service):
    """The inbound endpoints of every partner in the directory, for every protocol given."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        io: KafkaIO,
        endpoints: list[Endpoint],
        fronts: list[Front] | None = None,
        sockets: dict[str, socket.socket] | None = None,
        agents: Callable[[], dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        """`sockets`: listening sockets bound before start-up, by port name ("http",
        "iso10161"); `agents`: the state of each faust agent, for /health."""
        super().__init__(**kwargs)
        self.settings, self.directory, self.io = settings, directory, io
        self.endpoints = {endpoint.protocol: endpoint for endpoint in endpoints}
        self.fronts = fronts or []
        self.sockets = sockets or {}
        self.agents = agents
        self.runner: web.AppRunner | None = None
        self.http: asyncio.Server | None = None
        self.broker_up = True
        self.broker_error = ""

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        for protocol in self.endpoints:
            app.router.add_post(f"/{protocol}/{{symbol}}", self.receive)
        app.router.add_get("/health", self.health)
        return app

    async def on_start(self) -> None:
        await self.io.start()
        # keepalive_timeout: aiohttp closes a connection that has not completed a request
        # head within it (from connect, or from the last answer): the idle and header limit.
        self.runner = web.AppRunner(
            self.application(), access_log=None, keepalive_timeout=self.settings.idle_timeout_s
        )
        await self.runner.setup()
        assert self.runner.server is not None
        limit = SourceLimit(self.settings.max_connections_per_source, "http")
        factory = capped(self.runner.server, limit)
        loop = asyncio.get_running_loop()
        if "http" in self.sockets:
            self.http = await loop.create_server(factory, sock=self.sockets["http"])
        else:
            self.http = await loop.create_server(
                factory, self.settings.http_host, self.settings.http_port
            )
        log.info(
            "gateway.listening",
            host=self.settings.http_host,
            port=self.http.sockets[0].getsockname()[1],
            protocols=sorted(self.endpoints),
        )
        for front in self.fronts:
            await front.start(self)
        self.add_future(self._watch_broker())

    async def on_stop(self) -> None:
        for front in self.fronts:
            await front.stop()
        if self.http:
            self.http.close()
        if self.runner:
            await self.runner.cleanup()
        await self.io.stop()

    async def _watch_broker(self) -> None:
        """Asks the broker for metadata every `broker_check_interval_s`; logs each change."""
        interval = self.settings.broker_check_interval_s
        while not self.should_stop:
            try:
                assert self.io.producer is not None
                async with asyncio.timeout(max(interval, 1.0)):
                    await self.io.producer.client.fetch_all_metadata()
                up, error = True, ""
            except (KafkaError, OSError, TimeoutError) as exc:
                text = str(exc)
                name = type(exc).__name__
                up, error = False, text if text.startswith(name) else f"{name}: {text}".rstrip(": ")
            if up != self.broker_up:
                if up:
                    log.info("broker.reachable")
                else:
                    log.error("broker.unreachable", error=error)
            self.broker_up, self.broker_error = up, error
            await self.sleep(interval)

    async def health(self, request: web.Request) -> web.Response:
        """200 when the broker answers and every agent runs; 503 with what is wrong."""
        agents = self.agents() if self.agents else {}
        ok = self.broker_up and all(state == "running" for state in agents.values())
        body = {
            "status": "ok" if ok else "unavailable",
            "broker": "reachable" if self.broker_up else f"unreachable: {self.broker_error}",
            "agents": agents,
        }
        return web.json_response(body, status=200 if ok else 503)

    def unavailable(self, endpoint: Endpoint, decoded: Decoded | None = None) -> Refusal:
        detail = "the hub cannot store messages at the moment (broker unreachable); try again"
        return Refusal(detail, endpoint.fault(Fault.UNAVAILABLE, detail, decoded), UNAVAILABLE)

    async def receive(self, request: web.Request) -> web.Response:
        protocol = request.path.split("/")[1]
        endpoint = self.endpoints[protocol]
        symbol = request.match_info["symbol"]
        try:
            return (await self._receive(endpoint, symbol, request)).response()
        except Refusal as refusal:
            await self.dead(refusal, symbol, protocol)
            return refusal.reply.response()

    async def dead(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        if refusal.stage == UNAVAILABLE:
            # The dead letter could not be written either; the partner was told to retry.
            log.warning("gateway.unavailable", partner=partner, protocol=protocol)
            return
        await self.io.deadletter(
            DeadLetter(
                stage=refusal.stage,
                error=refusal.reason,
                partner=partner,
                protocol=protocol,
                audit_ref=refusal.audit_ref,
            )
        )

    async def _receive(self, endpoint: Endpoint, symbol: str, request: web.Request) -> Reply:
        if not self.broker_up:
            raise self.unavailable(endpoint)
        body = await self._body(endpoint, request)
        partner = self.directory.partner(symbol)
        if partner is None or partner.protocol != endpoint.protocol:
            detail = f"no {endpoint.protocol} partner {symbol!r} in this consortium"
            raise Refusal(detail, endpoint.fault(Fault.UNKNOWN_PARTNER, detail), "authenticate")
        if not authenticated(partner.inbound_auth, request.headers.get("Authorization")):
            detail = f"credentials for {symbol} not accepted"
            raise Refusal(detail, endpoint.fault(Fault.UNAUTHENTICATED, detail), "authenticate")
        return await self.take(endpoint, symbol, body, request.content_type)

    async def _body(self, endpoint: Endpoint, request: web.Request) -> bytes:
        """The whole body (Content-Length or chunked) up to the limit, within
        `read_timeout_s`: a body arriving in several segments is read to its end."""
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            detail = f"message of {request.content_length} bytes exceeds the limit of {limit} bytes"
            raise Refusal(detail, endpoint.fault(Fault.TOO_LARGE, detail))
        try:
            async with asyncio.timeout(self.settings.read_timeout_s):
                return await request.read()  # bounded by client_max_size (= the limit)
        except web.HTTPRequestEntityTooLarge:
            detail = f"message exceeds the limit of {limit} bytes"
            raise Refusal(detail, endpoint.fault(Fault.TOO_LARGE, detail)) from None
        except TimeoutError:
            detail = f"message body not complete after {self.settings.read_timeout_s:g} s"
            raise Refusal(detail, endpoint.fault(Fault.SYNTAX, detail)) from None

    async def take(
        self, endpoint: Endpoint, symbol: str, body: bytes, content_type: str | None = None
    ) -> Reply:
        """From an authenticated partner: audit, decode, address, write to Kafka, answer.
        Raises Refusal; the caller dead-letters it and sends its reply. A broker that fails
        on the way is a temporary failure for the partner, not an HTTP 500."""
        if not self.broker_up:
            raise self.unavailable(endpoint)
        try:
            return await self._take(endpoint, symbol, body, content_type)
        except KafkaError as error:
            log.error("gateway.broker_failed", error=f"{type(error).__name__}: {error}")
            raise self.unavailable(endpoint) from None

    async def _take(
        self, endpoint: Endpoint, symbol: str, body: bytes, content_type: str | None
    ) -> Reply:
        limit = self.settings.max_body_bytes
        audit_ref = await self.io.audit("in", endpoint.protocol, symbol, body, content_type)
        try:
            decoded = endpoint.decode(body, symbol, limit)
        except Refusal as refusal:
            refusal.audit_ref = audit_ref
            raise
        txn = address(decoded.message, self.io.items.lookup)
        if txn is None:
            detail = "the message names no request or item rshub knows"
            raise Refusal(
                detail, endpoint.fault(Fault.UNKNOWN_REQUEST, detail, decoded), "address", audit_ref
            )
        message = decoded.message.model_copy(update={"transaction_id": txn, "audit_ref": audit_ref})
        verdict = await self._publish(message)
        if verdict is not None and verdict.outcome is VerdictOutcome.REFUSED:
            # The state machine has already written the dead letter for its refusal.
            return endpoint.fault(Fault.STATE, verdict.error or "", decoded, verdict.state)
        return endpoint.accept(decoded, verdict.state if verdict else None)

    async def _publish(self, message: Message) -> Verdict | None:
        """Write to ill.inbound (acknowledged), then wait a while for the verdict."""
        waiting = self.io.verdicts.expect(message.message_id)
        await self.io.send(
            "ill.inbound",
            message.transaction_id,
            message.model_dump_json().encode(),
            wait_verdict=True,
        )
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.settings.reply_timeout_s)
        except TimeoutError:
            # Durable in Kafka, so it will be applied: answer now rather than keep the partner.
            log.warning("gateway.verdict_timeout", transaction_id=message.transaction_id)
            self.io.verdicts.forget(message.message_id)
            return None
