"""The SLNP listener: regional ILL servers connect, send commands, read each one's reply.

A session: `220` greeting; any number of commands, each answered in turn; `SLNPQuit` (or the
partner hanging up) ends it. Session commands (`SLNPServerInit` login, `SLNPServerExit`,
`SLNPQuit`) are answered here; every other command goes to `Intake.take`, whose answer (or
refusal) is the reply. A command the partner is not identified for, a format error and a
stream that lost its framing are refused with the SLNP error and a dead letter
(`Intake.refuse`); after a framing error, a command that never ends or a bad login repeated,
the connection is closed.

Logins go through the shared `LoginThrottle`: per source address and per name, across
connections, so reconnecting does not buy more guesses. A source over its limit is answered
SLNP_LOGIN_THROTTLED without its secret being checked, after a pause, and hung up on; a burst
of failures from one source is one dead letter and log line (then one per tenfold, counted).

Time-outs: `idle_timeout_s` between commands (closed quietly), `read_timeout_s` for a command
once begun (answered SLNP_END_COMMAND_LACKING, then closed) and for a reply to be taken by a
partner that does not read. `max_connections_per_source` caps the connections one address
holds, `max_connections` those of the port. When the hub hangs up it half-closes and drains
first (`hang_up`), so a partner still sending reads its refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import structlog

from connectors.core.connections import SourceLimit, bind, hang_up, server_health
from connectors.core.contract import Answer, Fault, Intake, Limits, Refusal
from connectors.core.directory import Directory, Partner
from connectors.core.tcp import FramedReader, PeerIdentity, ReadTimedOut, send_within
from connectors.core.throttle import LoginThrottle
from connectors.slnp import identity, vocabulary
from connectors.slnp.codec import (
    PROTOCOL,
    SlnpCodec,
    decode_from,
    encode_for,
    options_of,
    refusal,
)
from connectors.slnp.models import SlnpSettings
from connectors.slnp.wire import Command, CommandFramer, FramingError, ok, render_response

log = structlog.get_logger(__name__)
MAX_BAD_LOGINS = 3
REFUSED_LOGIN_DELAY_S = 1.0  # a failed or throttled login is answered after this


class SlnpListener:
    def __init__(self, limits: Limits, settings: SlnpSettings, codec: SlnpCodec) -> None:
        self.limits, self.settings, self.codec = limits, settings, codec
        self.sources = SourceLimit(
            limits.max_connections_per_source, PROTOCOL, limits.max_connections
        )
        self.throttle = LoginThrottle(delay_s=REFUSED_LOGIN_DELAY_S)
        self.server: asyncio.Server | None = None
        self.intake: Intake | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self.sock: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def bind(self) -> None:
        """Take the port now: a port in use stops start-up with one line."""
        self.sock = bind(self.limits.host, self.settings.port, "SLNP")

    async def start(self, intake: Intake) -> None:
        self.intake = intake
        tls = identity.server_context(self.settings)
        if self.sock is None:
            self.bind()
        self.server = await asyncio.start_server(
            self._connection,
            sock=self.sock,
            ssl=tls,
            ssl_handshake_timeout=self.limits.read_timeout_s if tls else None,
        )
        log.info("slnp.listening", host=self.limits.host, port=self.port, tls=tls is not None)

    def health(self) -> dict[str, Any]:
        return server_health(self.server, self.sources)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            for task in list(self._sessions):
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = PeerIdentity.of(writer)
        address = peer.address
        if not self.sources.admit(address):
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await Session(self, reader, writer, address, peer.certificate).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except TimeoutError:
            log.warning("slnp.hung_up", source=address, reason="the partner does not read replies")
        except asyncio.CancelledError:
            writer.transport.abort()  # the hub stops: no lingering
            raise
        except Exception:  # a bug must cost one session, never the listener
            log.exception("slnp.session_failed", source=address)
        finally:
            try:
                if not writer.transport.is_closing():
                    await hang_up(reader, writer)
            finally:
                if task is not None:
                    self._sessions.discard(task)
                self.sources.release(address)


class Session:
    """One connection's conversation."""

    def __init__(
        self,
        listener: SlnpListener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
        certificate: str | None,
    ) -> None:
        self.listener, self.reader, self.writer = listener, reader, writer
        self.address, self.certificate = address, certificate
        assert listener.intake is not None
        self.intake: Intake = listener.intake
        self.codec = listener.codec
        self.logged_in: Partner | None = None
        self.bad_logins = 0
        self.closing = False

    @property
    def directory(self) -> Directory:
        return self.intake.directory

    def allowed(self) -> list[Partner]:
        return identity.candidates(self.directory, self.address, self.certificate)

    def encoding(self, partner: Partner | None = None) -> str:
        """The partner's character set; before it is known, the one its possible partners
        share (UTF-8 if they differ)."""
        chosen = [partner] if partner else self.allowed()
        found = {options_of(p.options).encoding for p in chosen}
        return found.pop() if len(found) == 1 else "utf-8"

    async def write(self, body: bytes, partner: Partner | None = None) -> None:
        """Sends a reply; a partner that does not take it within the read time-out (it
        sends and never reads) is hung up on (TimeoutError ends the session)."""
        body = encode_for(body, self.encoding(partner))
        await send_within(self.writer, body, self.listener.limits.read_timeout_s)

    async def run(self) -> None:
        limits, settings = self.listener.limits, self.listener.settings
        await self.write(render_response_line(220, settings.greeting))
        framer = CommandFramer(
            max_line=settings.max_line_bytes,
            max_command=min(settings.max_command_bytes, limits.max_body_bytes),
        )
        frames = FramedReader(self.reader, framer, limits.idle_timeout_s, limits.read_timeout_s)
        while not self.closing:
            try:
                commands = await frames.next()
            except ReadTimedOut as timeout:
                if timeout.pending:
                    await self._unfinished(framer, "not complete within the read time-out")
                else:
                    log.info("slnp.idle", source=self.address)
                return
            except FramingError as exc:
                await self._dead(refusal(exc.kind, exc.detail), None)
                return
            if commands is None:
                if framer.begun:
                    await self._unfinished(framer, "the connection ended before it")
                return
            for frame in commands:
                await self.write(*await self._one(frame))
                if self.closing:
                    return

    async def _unfinished(self, framer: CommandFramer, why: str) -> None:
        detail = f"The command lacks its SLNPEndCommand line ({why}; {framer.pending} bytes)."
        await self._dead(refusal("SLNP_END_COMMAND_LACKING", detail), None)

    async def _dead(self, refused: Refusal, partner: Partner | None) -> None:
        """A refusal that ends the session, told to the partner and recorded as a dead
        letter."""
        log.warning("slnp.session_refused", source=self.address, reason=refused.reason[:200])
        await self.intake.refuse(refused, partner.symbol if partner else self.address, PROTOCOL)
        with contextlib.suppress(ConnectionError, OSError):
            await self.write(refused.answer.body, partner)

    async def _one(self, frame: bytes) -> tuple[bytes, Partner | None]:
        """The reply to one command (UTF-8) and the partner it is for (None: not known)."""
        if not self.intake.broker_up:
            return self.intake.unavailable(self.codec).answer.body, None
        body = decode_from(frame, self.encoding())
        try:
            command = self.codec.parse(body, len(body))
        except Refusal as refused:
            return await self._malformed(refused, body), None
        name = vocabulary.ALIASES.get(command.name, command.name)
        if name in vocabulary.SESSION:
            return await self._session(name, command), self.logged_in
        partner = identity.choose(self.allowed(), self.logged_in, command)
        if partner is None:
            return await self._unidentified(command), None
        if self.encoding(partner) != self.encoding():
            body = decode_from(frame, self.encoding(partner))
        try:
            taken: Answer = await self.intake.take(self.codec, partner.symbol, body, "text/plain")
        except Refusal as refused:
            await self.intake.refuse(refused, partner.symbol, PROTOCOL)
            return refused.answer.body, partner
        return taken.body, partner

    async def _malformed(self, refused: Refusal, body: bytes) -> bytes:
        """A command that is not one: dead-lettered under the partner it comes from where the
        connection tells (logged in, or the one partner at this address without a login),
        its bytes audited when the source may be a partner at all (a stranger's bytes are
        not kept: anyone can reach the port)."""
        allowed = self.allowed()
        partner = identity.choose(allowed, self.logged_in, Command(""))
        who = partner.symbol if partner else self.address
        log.warning("slnp.malformed", source=self.address, partner=who, reason=refused.reason[:200])
        if allowed:
            refused.audit_ref = await self.intake.audit("in", PROTOCOL, who, body, "text/plain")
        await self.intake.refuse(refused, who, PROTOCOL)
        return refused.answer.body

    async def _unidentified(self, command: Command) -> bytes:
        allowed = self.allowed()
        who = f"certificate {self.certificate[:16]}..." if self.certificate else "no certificate"
        if not allowed:
            detail = f"no SLNP partner connects from {self.address} ({who})"
        elif all(p.inbound_auth is not None for p in allowed):
            detail = f"log in with {vocabulary.LOGIN} first"
        else:
            detail = (
                f"the partners at {self.address} cannot be told apart: name one by "
                "SigelNB/SigelGB or log in"
            )
        refused = Refusal(detail, self.codec.fault(Fault.UNAUTHENTICATED, detail), "authenticate")
        await self.intake.refuse(refused, self.address, PROTOCOL)
        return refused.answer.body

    async def _session(self, name: str, command: Command) -> bytes:
        if name == vocabulary.QUIT:
            self.closing = True
            return response_bytes(ok(name))
        if name == vocabulary.LOGOUT:
            self.logged_in = None
            return response_bytes(ok(name))
        allowed = self.allowed()
        needs_login = any(p.inbound_auth is not None for p in allowed)
        said_credentials = any(command.get(p) for p in identity.SECRET_PARAMS)
        if allowed and not needs_login and not said_credentials:
            return response_bytes(ok(name))  # a session opening that proves nothing, needs nothing
        throttle = self.listener.throttle
        user = identity.user_of(command) or ""
        attempt = throttle.begin(self.address, user)
        partner = identity.login(allowed, command) if attempt.allowed else None
        attempt.end(partner is not None)
        if partner is not None:
            self.logged_in = partner
            log.info("slnp.login", source=self.address, partner=partner.symbol)
            return response_bytes(ok(name))
        self.bad_logins += 1
        if attempt.allowed:
            detail = f"login refused at {self.address}"
            refused = Refusal(
                detail, self.codec.fault(Fault.UNAUTHENTICATED, detail), "authenticate"
            )
        else:
            detail = f"too many failed logins from {self.address}; try again in a few minutes"
            refused = refusal("SLNP_LOGIN_THROTTLED", detail, "authenticate")
            self.closing = True
        if attempt.report:  # the first of a burst from this source, then each tenfold
            log.warning(
                "slnp.login_refused",
                source=self.address,
                user=user[:64],
                throttled=not attempt.allowed,
                failures=attempt.burst,
            )
            refused.reason = f"{detail} ({attempt.burst} failed or throttled in this burst)"
            await self.intake.refuse(refused, self.address, PROTOCOL)
        if self.bad_logins >= MAX_BAD_LOGINS:
            self.closing = True  # no guessing secrets on one connection
        await asyncio.sleep(throttle.delay_s)  # a deliberate pause: guessing is slow
        return refused.answer.body


def response_bytes(response: Any) -> bytes:
    return render_response(response).encode()


def render_response_line(code: int, text: str) -> bytes:
    return f"{code} {' '.join(text.split())}\n".encode()
