"""The inbound gateway: the hub's side of the connector contract (`Intake`).

It serves every connector's HTTP endpoints on one aiohttp server (POST /<path>/<symbol>, and
the connectors' own web routes), starts the connectors' listeners (TCP sessions, mailboxes),
and does what every way in shares, in order: size limit, partner, authentication, audit,
decode, address, write to ill.inbound (acknowledged), wait for the state machine's verdict,
answer. What differs per protocol (decoding, the answers, the error vocabulary) is the
connector's codec.

The gateway also watches the broker: while it does not answer, every endpoint answers the
protocol's temporary failure at once (nothing can be made durable, so nothing is accepted),
and `/health` says so, with the state of each faust agent.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiokafka.errors import KafkaError
from mode import Service

from connectors.core.connections import CappedServer, SourceLimit, bind
from connectors.core.contract import (
    Answer,
    Attempt,
    Codec,
    Connector,
    Fault,
    Limits,
    Listener,
    Refusal,
    Registry,
    WebRequest,
    WebResponse,
    WebRoute,
)
from connectors.core.directory import Directory, authenticated
from connectors.core.model import Event, Message
from connectors.core.records import DeadLetter, Verdict, VerdictOutcome
from connectors.core.topics import Topic
from hub.domain.addressing import address
from hub.domain.lifecycle import State
from hub.kafka.checkpoints import Checkpoints
from hub.kafka.producer import KafkaIO
from hub.runtime import metrics
from hub.runtime.refused import RefusedBudget
from hub.runtime.relay import RelayDesk
from hub.runtime.settings import Settings

log = structlog.get_logger(__name__)
MAX_REQUEST_LINE = 32_768

UNAVAILABLE = "unavailable"  # the Refusal stage of a temporary failure: nothing to dead-letter


def web_request(request: web.Request, body: bytes) -> WebRequest:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return WebRequest(
        method=request.method,
        path=request.path,
        match=dict(request.match_info),
        query=tuple(request.query.items()),
        headers=dict(request.headers),
        body=body,
        remote=str(peer[0]) if peer else "?",
        raw_query=request.rel_url.raw_query_string.encode(),
    )


def web_response(answer: WebResponse) -> web.Response:
    return web.Response(
        body=answer.body,
        status=answer.status,
        headers={"Content-Type": answer.content_type, **answer.headers},
    )


def response(answer: Answer) -> web.Response:
    return web.Response(
        body=answer.body, status=answer.status, headers={"Content-Type": answer.content_type}
    )


class Gateway(Service):
    """The inbound side of every connector in the registry, for every partner in the
    directory. Implements `connectors.core.contract.Intake`."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        io: KafkaIO,
        connectors: Registry,
        limits: Limits,
        connector_settings: dict[str, Any] | None = None,
        listeners: list[Listener] | None = None,
        http_socket: socket.socket | None = None,
        agents: Callable[[], dict[str, str]] | None = None,
        relayer: RelayDesk | None = None,
        states: Callable[[str], str | None] | None = None,
        notes: dict[str, Any] | None = None,
        ready: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
        **kwargs: Any,
    ) -> None:
        """`listeners`: the connectors' own inbound channels, already bound; `http_socket`:
        the HTTP port bound before start-up; `agents`: the state of each faust agent, for
        /health; `relayer`: carries out `relay` calls (the relay agent's client); `states`:
        a transaction's state in this worker's table, for status pages; `notes`: added to
        /health as they are (what the operator must know: the embedded broker's storage);
        `ready`: whether the workers' agents are assigned and recovered, for /ready."""
        super().__init__(**kwargs)
        self.settings, self.directory, self.io = settings, directory, io
        self.connectors, self.limits = connectors, limits
        self.connector_settings = connector_settings or {}
        self.listeners = listeners or []
        self.http_socket = http_socket
        self.agents = agents
        self.relayer = relayer
        self.states = states
        self.notes = notes or {}
        self.ready = ready
        # Applications the composition root adds to the HTTP port (the JSON API, hub.ops.api),
        # which the runtime may not import.
        self.mounts: list[Callable[[web.Application], None]] = []
        self.checkpoints = Checkpoints(io)
        self.refused_budget = RefusedBudget(settings.refused_audits_per_minute)
        self.runner: web.AppRunner | None = None
        self.http: CappedServer | None = None
        self._broker_up = True
        self.broker_error = ""

    @property
    def broker_up(self) -> bool:
        return self._broker_up

    def http_paths(self) -> dict[str, list[Connector[Any, Any]]]:
        paths: dict[str, list[Connector[Any, Any]]] = {}
        for connector in self.connectors:
            if connector.http is not None:
                paths.setdefault(connector.http.path or connector.name, []).append(connector)
        return paths

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        for path, connectors in self.http_paths().items():
            app.router.add_post(f"/{path}/{{symbol}}", self._receiver(path, connectors))
        for connector in self.connectors:
            if connector.web is not None:
                settings = self.connector_settings.get(connector.name) or connector.settings()
                for route in connector.web(self, self.limits, settings):
                    app.router.add_route(route.method, route.path, self._web(route))
        for mount in self.mounts:
            mount(app)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.readiness)
        app.router.add_get("/metrics", self.scrape)
        return app

    async def on_start(self) -> None:
        await self.io.start()
        if self.relayer is not None:
            await self.relayer.start()  # its follower reads relay results from now on
        # keepalive_timeout: aiohttp closes a connection that has not completed a request
        # head within it (from connect, or from the last answer): the idle and header limit.
        # max_line_size: twice OpenURL's query limit, so an over-long link gets the OpenURL
        # page's own 413 rather than aiohttp's plain-text 400 (aiohttp's default is 8190).
        self.runner = web.AppRunner(
            self.application(),
            access_log=None,
            keepalive_timeout=self.settings.idle_timeout_s,
            max_line_size=MAX_REQUEST_LINE,
        )
        await self.runner.setup()
        assert self.runner.server is not None
        limit = SourceLimit(
            self.settings.max_connections_per_source, "http", self.settings.max_connections
        )
        sock = self.http_socket or bind(self.settings.http_host, self.settings.http_port, "HTTP")
        self.http = CappedServer(self.runner.server, limit, sock)
        log.info(
            "gateway.listening",
            host=self.settings.http_host,
            port=self.http.sockets[0].getsockname()[1],
            paths=sorted(self.http_paths()),
        )
        for listener in self.listeners:
            await listener.start(self)
        self.add_future(self._watch_broker())

    async def on_stop(self) -> None:
        for listener in self.listeners:
            await listener.stop()
        if self.relayer is not None:
            await self.relayer.stop()
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
            if up != self._broker_up:
                if up:
                    log.info("broker.reachable")
                else:
                    log.error("broker.unreachable", error=error)
            self._broker_up, self.broker_error = up, error
            await self.sleep(interval)

    async def health(self, request: web.Request) -> web.Response:
        """200 when the broker answers and every agent runs; 503 with what is wrong."""
        agents = self.agents() if self.agents else {}
        listeners = self.listener_health()
        ok = (
            self._broker_up
            and all(state == "running" for state in agents.values())
            # A mailbox reconnecting to its IMAP server is the server's trouble, shown but
            # not the hub's failure; a listener that stopped by itself is.
            and all(found.get("state") != "dead" for found in listeners.values())
        )
        body = {
            "status": "ok" if ok else "unavailable",
            "broker": "reachable" if self._broker_up else f"unreachable: {self.broker_error}",
            "agents": agents,
            "listeners": listeners,
            **self.notes,
        }
        return web.json_response(body, status=200 if ok else 503)

    def listener_health(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for number, listener in enumerate(self.listeners):
            name = str(getattr(listener, "key", "") or f"{type(listener).__name__}-{number}")
            try:
                found[name] = listener.health()
            except Exception as error:  # a listener's report must not break /health
                found[name] = {"state": "unknown", "error": f"{type(error).__name__}: {error}"}
        return found

    async def readiness(self, request: web.Request) -> web.Response:
        """200 when this worker can take traffic: the broker answers, every agent runs, its
        partitions are assigned and its tables recovered; 503 with what is missing."""
        agents = self.agents() if self.agents else {}
        ready, found = self.ready() if self.ready else (True, {})
        running = all(state == "running" for state in agents.values())
        ok = self._broker_up and running and ready
        body = {
            "status": "ready" if ok else "not ready",
            "broker": "reachable" if self._broker_up else f"unreachable: {self.broker_error}",
            "agents": agents,
            **found,
        }
        return web.json_response(body, status=200 if ok else 503)

    async def scrape(self, request: web.Request) -> web.Response:
        """Prometheus text format (hub.runtime.metrics)."""
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE}
        )

    # -- the Intake ------------------------------------------------------------------------

    def unavailable(self, codec: Codec[Any], decoded: Any = None) -> Refusal:
        detail = "the hub cannot store messages at the moment (broker unreachable); try again"
        return Refusal(detail, codec.fault(Fault.UNAVAILABLE, detail, decoded), UNAVAILABLE)

    def authenticated(self, partner: str, authorization: str | None) -> bool:
        found = self.directory.partner(partner)
        return found is not None and authenticated(found.inbound_auth, authorization)

    async def audit(
        self,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
    ) -> str:
        return await self.io.audit(direction, protocol, partner, body, content_type)

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        metrics.refused(protocol, refusal.stage)
        if refusal.stage == UNAVAILABLE:
            # The dead letter could not be written either; the partner was told to retry.
            log.warning("gateway.unavailable", partner=partner, protocol=protocol)
            return
        letter = DeadLetter(
            stage=refusal.stage,
            error=refusal.reason[:2000],
            partner=partner,
            protocol=protocol,
            audit_ref=refusal.audit_ref,
        )
        try:
            await self.io.deadletter(letter)
        except KafkaError as error:
            # The partner still gets its refusal; the operator sees this line instead.
            log.error(
                "gateway.deadletter_failed",
                partner=partner,
                protocol=protocol,
                stage=refusal.stage,
                error=f"{type(error).__name__}: {error}",
            )
            return
        metrics.dead_letter(refusal.stage)

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        if self.relayer is None:
            return Attempt(False, False, "this hub relays no calls")
        return await self.relayer.relay(protocol, caller, target, body, content_type)

    async def status(self, transaction_id: str) -> str | None:
        return self.states(transaction_id) if self.states else None

    async def load_checkpoint(self, key: str) -> str | None:
        return await self.checkpoints.load(key)

    async def save_checkpoint(self, key: str, value: str) -> None:
        await self.checkpoints.save(key, value)

    async def take(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> Answer:
        """From an authenticated partner: audit, decode, address, write to Kafka, answer.
        Raises Refusal; the caller dead-letters it (`refuse`) and sends its answer. A broker
        that fails on the way is a temporary failure for the partner, not an HTTP 500."""
        answer, _verdict = await self.judged(codec, partner, body, content_type, wait=wait)
        return answer

    async def judged(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> tuple[Answer, Verdict | None]:
        """As `take`, with the state machine's verdict (None: none came in time): a replay
        must tell a step applied from one the state machine refused again, which the partner
        is answered in its protocol, not with a Refusal."""
        if not self._broker_up:
            raise self.unavailable(codec)
        try:
            limit = self.settings.max_body_bytes
            if len(body) > limit:
                # Every channel's door: past the body limit what is derived from a message
                # might not fit the broker (issue 22.3). Its prefix and digest are kept.
                detail = f"message of {len(body)} bytes exceeds the limit of {limit} bytes"
                ref = await self.io.audit(
                    "in",
                    codec.protocol,
                    partner,
                    body,
                    content_type,
                    keep=self.settings.refused_keep_bytes,
                )
                raise Refusal(detail, codec.fault(Fault.TOO_LARGE, detail), "parse", ref)
            return await self._take(codec, partner, body, content_type, wait)
        except KafkaError as error:
            log.error("gateway.broker_failed", error=f"{type(error).__name__}: {error}")
            raise self.unavailable(codec) from None

    # -- HTTP ------------------------------------------------------------------------------

    def _receiver(
        self, path: str, connectors: list[Connector[Any, Any]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        by_name = {c.name: c for c in connectors}
        first = connectors[0]

        async def receive(request: web.Request) -> web.Response:
            symbol = request.match_info["symbol"]
            partner = self.directory.partner(symbol)
            connector = by_name.get(partner.protocol) if partner else None
            codec = (connector or first).codec
            try:
                if connector is None:
                    # Read (bounded) before answering, as for a known partner: the answer
                    # must not tell who is a partner by how fast it comes.
                    body = await self._body(codec, request)
                    detail = f"no {path} partner {symbol!r} in this consortium"
                    raise Refusal(
                        detail,
                        codec.fault(Fault.UNKNOWN_PARTNER, detail),
                        "authenticate",
                        await self.audit_refused(
                            path, symbol, body, request.content_type, request.remote
                        ),
                    )
                assert connector.http is not None
                if connector.http.handler is not None:
                    # The connector answers itself (a relay); the body is bounded here.
                    body = await self._body(codec, request)
                    own = self.connector_settings.get(connector.name) or connector.settings()
                    seen = web_request(request, body)
                    return web_response(await connector.http.handler(self, own, symbol, seen))
                return response(await self._receive(codec, symbol, request))
            except KafkaError as error:
                # A record the broker would not take (a relayed call) or a broker gone on
                # the way: the protocol's temporary failure, not an HTTP 500.
                log.error("gateway.broker_failed", error=f"{type(error).__name__}: {error}")
                refusal = self.unavailable(codec)
            except Refusal as caught:
                refusal = caught
            await self.refuse(refusal, symbol, connector.name if connector else path)
            return response(refusal.answer)

        return receive

    def _web(self, route: WebRoute) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            limit = self.settings.max_body_bytes
            if request.content_length is not None and request.content_length > limit:
                return web.Response(status=413, text=f"body over {limit} bytes")
            try:
                async with asyncio.timeout(self.settings.read_timeout_s):
                    body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return web.Response(status=413, text=f"body over {limit} bytes")
            except TimeoutError:
                return web.Response(status=408, text="body not complete in time")
            try:
                answer: WebResponse = await route.handler(web_request(request, body))
            except Exception as exc:  # a defect in a connector's page must not be a 500
                log.error("web.route_failed", path=route.path, error=f"{type(exc).__name__}: {exc}")
                return web.Response(status=400, text="the request could not be handled")
            return web_response(answer)

        return handle

    async def _receive(self, codec: Codec[Any], symbol: str, request: web.Request) -> Answer:
        if not self._broker_up:
            raise self.unavailable(codec)
        body = await self._body(codec, request)
        if not self.authenticated(symbol, request.headers.get("Authorization")):
            detail = f"credentials for {symbol} not accepted"
            audit_ref = await self.audit_refused(
                codec.protocol, symbol, body, request.content_type, request.remote
            )
            raise Refusal(
                detail, codec.fault(Fault.UNAUTHENTICATED, detail), "authenticate", audit_ref
            )
        return await self.take(codec, symbol, body, request.content_type)

    async def audit_refused(
        self,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
        source: str | None,
    ) -> str | None:
        """Input refused before authentication: its first `RSHUB_REFUSED_KEEP_BYTES`, size and
        digest on ill.audit (enough to recognise it and to replay a small message once the
        directory is fixed), at most `RSHUB_REFUSED_AUDITS_PER_MINUTE` per source address;
        None when not kept (the refusal stands either way)."""
        if not self.refused_budget.allow(source or "?"):
            metrics.refused_unaudited(protocol)
            return None
        try:
            return await self.io.audit(
                "in", protocol, partner, body, content_type, keep=self.settings.refused_keep_bytes
            )
        except KafkaError:
            return None

    async def _body(self, codec: Codec[Any], request: web.Request) -> bytes:
        """The whole body (Content-Length or chunked) up to the limit, within
        `read_timeout_s`: a body arriving in several segments is read to its end."""
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            detail = f"message of {request.content_length} bytes exceeds the limit of {limit} bytes"
            raise Refusal(detail, codec.fault(Fault.TOO_LARGE, detail))
        try:
            async with asyncio.timeout(self.settings.read_timeout_s):
                return await request.read()  # bounded by client_max_size (= the limit)
        except web.HTTPRequestEntityTooLarge:
            detail = f"message exceeds the limit of {limit} bytes"
            raise Refusal(detail, codec.fault(Fault.TOO_LARGE, detail)) from None
        except TimeoutError:
            detail = f"message body not complete after {self.settings.read_timeout_s:g} s"
            raise Refusal(detail, codec.fault(Fault.SYNTAX, detail)) from None

    async def _take(
        self,
        codec: Codec[Any],
        symbol: str,
        body: bytes,
        content_type: str | None,
        wait: bool,
    ) -> tuple[Answer, Verdict | None]:
        audit_ref = await self.io.audit("in", codec.protocol, symbol, body, content_type)
        try:
            decoded = codec.decode(body, symbol, self.limits)
        except Refusal as refusal:
            refusal.audit_ref = audit_ref
            raise
        # Every message of the body is addressed before any is published: a body naming one
        # request rshub does not know is refused whole, none of it applied (no half-read).
        addressed = []
        for part in decoded.messages:
            txn = address(part, self.io.items)
            if txn is None:
                detail = "the message names no request or item rshub knows"
                if len(decoded.messages) > 1:
                    detail += f" ({part.request_id or 'no reference'}; nothing of it is applied)"
                raise Refusal(
                    detail,
                    codec.fault(Fault.UNKNOWN_REQUEST, detail, decoded),
                    "address",
                    audit_ref,
                )
            addressed.append(
                part.model_copy(update={"transaction_id": txn, "audit_ref": audit_ref})
            )

        def too_large(detail: str) -> Refusal:
            return Refusal(
                detail, codec.fault(Fault.TOO_LARGE, detail, decoded), "parse", audit_ref
            )

        # Each message is its own request's step: published one by one, each judged by its
        # transaction. A body read again after a crash republishes them all; the engine drops
        # those already applied by their content id. The answer is the first refusal, if any
        # (its dead letter is written by the state machine), else the last verdict.
        refused: tuple[Message, Verdict] | None = None
        verdict: Verdict | None = None
        for message in addressed:
            metrics.message_in(symbol, codec.protocol, message.event.value)
            verdict = await self._publish(message, wait, too_large)
            if verdict is not None and verdict.outcome is VerdictOutcome.REFUSED:
                metrics.refused(codec.protocol, "state")
                refused = refused or (message, verdict)
        if refused is not None:
            message, verdict = refused
            # A step for a transaction that was never requested (the engine refuses it in
            # state New) is each protocol's unknown request, not a state error (issue 24).
            unknown = verdict.state == State.NEW.value and message.event is not Event.REQUEST
            fault = Fault.UNKNOWN_REQUEST if unknown else Fault.STATE
            return codec.fault(fault, verdict.error or "", decoded, verdict.state), verdict
        return codec.accept(decoded, verdict.state if verdict else None), verdict

    async def _publish(
        self, message: Message, wait: bool, refusal: Callable[[str], Refusal]
    ) -> Verdict | None:
        """Write to ill.inbound (acknowledged), then wait a while for the verdict."""
        value = message.model_dump_json().encode()
        if len(value) > self.settings.max_record_bytes:
            # Possible only for a body near the limit whose text JSON escapes heavily: the
            # protocol's own "too large", never a temporary failure for ever.
            raise refusal(
                f"the message makes a record of {len(value)} bytes, over the limit of "
                f"{self.settings.max_record_bytes}"
            )
        if not wait:
            await self.io.send(Topic.INBOUND, message.transaction_id, value)
            return None
        waiting = self.io.verdicts.expect(message.message_id)
        await self.io.send(Topic.INBOUND, message.transaction_id, value, wait_verdict=True)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.settings.reply_timeout_s)
        except TimeoutError:
            # Durable in Kafka, so it will be applied: answer now rather than keep the partner.
            log.warning("gateway.verdict_timeout", transaction_id=message.transaction_id)
            self.io.verdicts.forget(message.message_id)
            return None
