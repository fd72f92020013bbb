"""NCIP over HTTP: the inbound endpoint (one URL per partner) and the outbound client.

Inbound: POST /ncip/{symbol}. The partner is authenticated, the raw message audited, the
canonical message written to ill.inbound; only once Kafka acknowledged it does the partner get
its answer: the NCIP response, or the Problem the state machine refused it with.
Outbound: an HTTP client with time-outs and retries with back-off.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from mode import Service

from connectors.ncip import codec, tables, writer
from hub.addressing import address
from hub.directory import AuthScheme, Credential, Directory, Partner
from hub.kafka_io import KafkaIO
from hub.records import DeadLetter, VerdictOutcome
from hub.settings import Settings

log = structlog.get_logger(__name__)
XML = "application/xml; charset=utf-8"


def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": XML})


def authenticated(credential: Credential | None, header: str | None) -> bool:
    """Constant-time check of an Authorization header against a partner's credential."""
    if credential is None:
        return False
    if credential.scheme is AuthScheme.NONE:
        return True
    secret = credential.secret()
    if not secret or not header:
        return False
    if credential.scheme is AuthScheme.BEARER:
        expected = f"Bearer {secret}"
    else:
        token = base64.b64encode(f"{credential.username}:{secret}".encode()).decode()
        expected = f"Basic {token}"
    return hmac.compare_digest(header.encode(), expected.encode())


def authorization(credential: Credential | None) -> dict[str, str]:
    if credential is None or credential.scheme is AuthScheme.NONE:
        return {}
    secret = credential.secret() or ""
    if credential.scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    token = base64.b64encode(f"{credential.username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


STATE_PROBLEM = "State Transition Prohibited"


class NcipGateway(Service):
    """The inbound NCIP endpoints of every NCIP partner in the directory."""

    def __init__(
        self, settings: Settings, directory: Directory, io: KafkaIO, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.directory, self.io = settings, directory, io
        self.runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_post("/ncip/{symbol}", self.receive)
        app.router.add_get("/health", self.health)
        return app

    async def on_start(self) -> None:
        await self.io.start()
        self.runner = web.AppRunner(self.application(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        log.info("ncip.listening", host=self.settings.http_host, port=self.settings.http_port)

    async def on_stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        await self.io.stop()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _reject(
        self,
        problem: codec.Problem,
        stage: str,
        partner: str | None,
        response_name: str | None = None,
        audit_ref: str | None = None,
        transaction_id: str | None = None,
    ) -> web.Response:
        await self.io.deadletter(
            DeadLetter(
                stage=stage,
                error=f"{problem.type}: {problem.detail}",
                partner=partner,
                protocol="ncip",
                audit_ref=audit_ref,
                transaction_id=transaction_id,
            )
        )
        return _xml(writer.encode_problem(problem, response_name), problem.http_status)

    async def receive(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return await self._reject(
                codec.syntax_problem(
                    f"message of {request.content_length} bytes exceeds the limit of {limit} bytes",
                    413,
                ),
                "parse",
                symbol,
            )
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return await self._reject(
                codec.syntax_problem(f"message exceeds the limit of {limit} bytes", 413),
                "parse",
                symbol,
            )
        partner = self.directory.partner(symbol)
        if partner is None or partner.protocol != "ncip":
            return await self._reject(
                codec.Problem(
                    type="Unknown Agency",
                    detail=f"no NCIP partner {symbol!r} in this consortium",
                    http_status=404,
                ),
                "authenticate",
                symbol,
            )
        if not authenticated(partner.inbound_auth, request.headers.get("Authorization")):
            return await self._reject(
                codec.Problem(
                    type="Agency Authentication Failed",
                    detail=f"credentials for {symbol} not accepted",
                    http_status=401,
                ),
                "authenticate",
                symbol,
            )
        audit_ref = await self.io.audit("in", "ncip", symbol, body, request.content_type)
        try:
            parsed = codec.parse(body, limit)
        except codec.NcipError as error:
            return await self._reject(error.problem, "parse", symbol, audit_ref=audit_ref)
        response_name = f"{parsed.name}Response"
        try:
            message = codec.to_canonical(parsed, sender=symbol)
        except codec.NcipError as error:
            return await self._reject(error.problem, "parse", symbol, response_name, audit_ref)
        if self.settings.validate_xsd:
            from connectors.ncip.schema import diagnose

            problems = diagnose(parsed.root)
            if problems:
                log.info(
                    "ncip.schema_diagnostic",
                    partner=symbol,
                    message=parsed.name,
                    errors=problems[:3],
                )
        txn = address(message, self.io.items.lookup)
        if txn is None:
            return await self._reject(
                codec.Problem(
                    type="Unknown Request",
                    detail="the message names no request or item rshub knows",
                    element="RequestId",
                ),
                "address",
                symbol,
                response_name,
                audit_ref,
            )
        message = message.model_copy(update={"transaction_id": txn, "audit_ref": audit_ref})
        verdict = self.io.verdicts.expect(message.message_id)
        try:
            await self.io.send("ill.inbound", txn, message.model_dump_json().encode())
            outcome = await asyncio.wait_for(asyncio.shield(verdict), self.settings.reply_timeout_s)
        except TimeoutError:
            # Durable in Kafka: it will be applied. Answer now rather than make the partner wait.
            log.warning("ncip.verdict_timeout", partner=symbol, transaction_id=txn)
            self.io.verdicts.forget(message.message_id)
            return _xml(writer.encode_response(parsed))
        if outcome.outcome is VerdictOutcome.REFUSED:
            # The state machine already wrote the dead letter for a refusal.
            problem = codec.Problem(
                type=STATE_PROBLEM,
                scheme=tables.SCHEME_RSHUB,
                detail=outcome.error or "",
                value=outcome.state,
            )
            return _xml(writer.encode_problem(problem, response_name))
        return _xml(writer.encode_response(parsed))


@dataclass
class Attempted:
    ok: bool
    retryable: bool
    detail: str


class NcipClient:
    """Delivers NCIP messages to partners' endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.outbound_timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    async def _post(self, partner: Partner, body: bytes) -> Attempted:
        assert self.session is not None and partner.endpoint
        headers = {"Content-Type": XML, **authorization(partner.outbound_auth)}
        try:
            async with self.session.post(partner.endpoint, data=body, headers=headers) as reply:
                content = await reply.content.read(self.settings.max_body_bytes + 1)
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempted(False, True, f"{type(exc).__name__}: {exc}")
        if status >= 500 or status == 429:
            return Attempted(False, True, f"HTTP {status}")
        try:
            response = codec.read_response(content, self.settings.max_body_bytes)
        except codec.NcipError as error:
            return Attempted(False, status >= 500, f"HTTP {status}, unreadable answer: {error}")
        if response.problems:
            text = "; ".join(f"{p.type}: {p.detail}".rstrip(": ") for p in response.problems)
            return Attempted(False, False, f"NCIP Problem: {text}")
        if status >= 400:
            return Attempted(False, False, f"HTTP {status}")
        return Attempted(True, False, f"HTTP {status} {response.name}")

    async def deliver(self, partner: Partner, body: bytes) -> tuple[Attempted, int]:
        """Post with retries and doubling back-off; returns the last attempt and the tries."""
        delay = self.settings.outbound_backoff_s
        tries = 0
        while True:
            tries += 1
            attempted = await self._post(partner, body)
            if attempted.ok or not attempted.retryable or tries >= self.settings.outbound_retries:
                return attempted, tries
            log.info(
                "ncip.retry",
                partner=partner.symbol,
                tries=tries,
                detail=attempted.detail,
                delay_s=delay,
            )
            await asyncio.sleep(delay)
            delay *= 2
