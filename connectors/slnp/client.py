"""Delivering SLNP commands to a partner's server: one session per delivery.

A session: connect (slnp:// plain, slnps:// TLS) within `outbound_timeout_s`, read the `220`
greeting, log in with `SLNPServerInit` where the partner has an `outbound_auth`, send the
command, read its reply (within `answer_wait_s`) and judge it through the codec, say
`SLNPQuit`. A failure another try may cure (no connection, no reply, the partner's server
erring) is tried again `outbound_retries` times with doubling back-off; the partner's refusal
of the command is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

import structlog
from pydantic import ValidationError

from connectors.core.contract import Attempt, Limits
from connectors.core.directory import Partner
from connectors.slnp import identity, vocabulary
from connectors.slnp.codec import SlnpCodec, decode_from, encode_for, options_of
from connectors.slnp.models import SlnpOptions, SlnpSettings
from connectors.slnp.wire import (
    Command,
    FramingError,
    ResponseFramer,
    SlnpError,
    parse_response,
    render_command,
)

log = structlog.get_logger(__name__)
SCHEMES = ("slnp", "slnps")


class NoReply(Exception):
    pass


class Channel:
    """A connection to a partner's SLNP server, reading whole replies."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: SlnpOptions,
        settings: SlnpSettings,
        max_bytes: int,
    ) -> None:
        self.reader, self.writer, self.options, self.settings = reader, writer, options, settings
        self.framer = ResponseFramer(settings.max_line_bytes, max_bytes)
        self.ready: list[bytes] = []

    async def reply(self) -> bytes:
        """The next reply, as UTF-8; NoReply when none comes within `answer_wait_s`."""
        try:
            async with asyncio.timeout(self.settings.answer_wait_s):
                while not self.ready:
                    chunk = await self.reader.read(65536)
                    if not chunk:
                        raise NoReply("the partner closed the connection")
                    self.ready.extend(self.framer.feed(chunk))
        except TimeoutError:
            raise NoReply(f"no reply within {self.settings.answer_wait_s:g} s") from None
        return decode_from(self.ready.pop(0), self.options.encoding)

    async def send(self, body: bytes) -> None:
        self.writer.write(encode_for(body, self.options.encoding))
        await self.writer.drain()

    def line_end(self) -> str:
        return "\r\n" if self.options.line_end == "crlf" else "\n"


class SlnpSender:
    def __init__(self, limits: Limits, settings: SlnpSettings, codec: SlnpCodec) -> None:
        self.limits, self.settings, self.codec = limits, settings, codec

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        delay, tries = self.limits.outbound_backoff_s, 0
        while True:
            tries += 1
            attempt = await self._session(partner, body)
            if attempt.ok or not attempt.retryable or tries >= max(1, self.limits.outbound_retries):
                return attempt
            log.info("slnp.retry", partner=partner.symbol, detail=attempt.detail, tries=tries)
            await asyncio.sleep(delay)
            delay *= 2

    async def _session(self, partner: Partner, body: bytes) -> Attempt:
        target = urlsplit(partner.endpoint or "")
        try:
            port = target.port
        except ValueError:
            port = None
        if target.scheme not in SCHEMES or not target.hostname or not port:
            return Attempt(False, False, f"endpoint {partner.endpoint!r} is not slnp://host:port")
        try:
            options = options_of(partner.options)
        except ValidationError as exc:
            return Attempt(False, False, f"options: {exc}")
        try:
            tls = identity.client_context(self.settings) if target.scheme == "slnps" else None
        except (OSError, ssl.SSLError) as exc:
            return Attempt(False, False, f"TLS set-up: {exc}")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.hostname, port, ssl=tls),
                self.limits.outbound_timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return Attempt(False, True, f"cannot connect: {type(exc).__name__}: {exc}")
        channel = Channel(reader, writer, options, self.settings, self.limits.max_body_bytes)
        try:
            async with asyncio.timeout(self.limits.outbound_timeout_s):
                return await self._converse(channel, partner, body)
        except TimeoutError:
            return Attempt(False, True, f"no end within {self.limits.outbound_timeout_s:g} s")
        except NoReply as exc:
            return Attempt(False, True, f"sent; {exc}")
        except (OSError, FramingError) as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _converse(self, channel: Channel, partner: Partner, body: bytes) -> Attempt:
        if channel.options.greeting:
            greeting = await self._greeting(channel)
            if greeting is not None:
                return greeting
        credential = partner.outbound_auth
        if credential is not None and credential.username:
            secret = credential.secret()
            if secret is None:
                return Attempt(False, False, f"no secret in {credential.source()} for the login")
            login = Command(
                channel.options.login_command,
                (("Kennung", credential.username), ("Kennwort", secret)),
            )
            await channel.send(render_command(login, channel.line_end()).encode())
            said = self.codec.judge(await channel.reply())
            if not said.ok:
                return Attempt(False, said.retryable, f"login refused: {said.detail}")
        await channel.send(body)
        attempt = self.codec.judge(await channel.reply())
        with contextlib.suppress(OSError):
            quit_ = render_command(Command(vocabulary.QUIT), channel.line_end()).encode()
            await channel.send(quit_)
        return attempt

    async def _greeting(self, channel: Channel) -> Attempt | None:
        """None when the partner greeted (or said nothing: some servers do not greet)."""
        try:
            first = await channel.reply()
        except NoReply:
            return None
        try:
            response = parse_response(first.decode())
        except SlnpError as exc:
            return Attempt(False, True, f"greeting unreadable: {exc.detail}")
        if response.is_error:
            return Attempt(False, True, f"the partner refused the session: {response.text}")
        return None
