"""The inbound HTTP gateway: one aiohttp server, one URL per (protocol, partner).

What every protocol's endpoint does is here, in order: size limit, partner, authentication,
audit, decode, address, write to ill.inbound (acknowledged), wait for the state machine's
verdict, answer. What differs per protocol (decoding, the success answer, the error vocabulary)
is an `Endpoint` in the protocol's connector package.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog
from aiohttp import web
from mode import Service

from hub.addressing import address
from hub.directory import AuthScheme, Credential, Directory
from hub.kafka_io import KafkaIO
from hub.model import Message
from hub.records import DeadLetter, Verdict, VerdictOutcome
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


class Gateway(Service):
    """The inbound endpoints of every partner in the directory, for every protocol given."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        io: KafkaIO,
        endpoints: list[Endpoint],
        fronts: list[Front] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.directory, self.io = settings, directory, io
        self.endpoints = {endpoint.protocol: endpoint for endpoint in endpoints}
        self.fronts = fronts or []
        self.runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        for protocol in self.endpoints:
            app.router.add_post(f"/{protocol}/{{symbol}}", self.receive)
        app.router.add_get("/health", self.health)
        return app

    async def on_start(self) -> None:
        await self.io.start()
        self.runner = web.AppRunner(self.application(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        log.info(
            "gateway.listening",
            host=self.settings.http_host,
            port=self.settings.http_port,
            protocols=sorted(self.endpoints),
        )
        for front in self.fronts:
            await front.start(self)

    async def on_stop(self) -> None:
        for front in self.fronts:
            await front.stop()
        if self.runner:
            await self.runner.cleanup()
        await self.io.stop()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

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
        limit = self.settings.max_body_bytes
        size = request.content_length
        body = b"" if size is not None and size > limit else await request.content.read(limit + 1)
        if (size is not None and size > limit) or len(body) > limit:
            detail = f"message of {size or len(body)} bytes exceeds the limit of {limit} bytes"
            raise Refusal(detail, endpoint.fault(Fault.TOO_LARGE, detail))
        partner = self.directory.partner(symbol)
        if partner is None or partner.protocol != endpoint.protocol:
            detail = f"no {endpoint.protocol} partner {symbol!r} in this consortium"
            raise Refusal(detail, endpoint.fault(Fault.UNKNOWN_PARTNER, detail), "authenticate")
        if not authenticated(partner.inbound_auth, request.headers.get("Authorization")):
            detail = f"credentials for {symbol} not accepted"
            raise Refusal(detail, endpoint.fault(Fault.UNAUTHENTICATED, detail), "authenticate")
        return await self.take(endpoint, symbol, body, request.content_type)

    async def take(
        self, endpoint: Endpoint, symbol: str, body: bytes, content_type: str | None = None
    ) -> Reply:
        """From an authenticated partner: audit, decode, address, write to Kafka, answer.
        Raises Refusal; the caller dead-letters it and sends its reply."""
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
