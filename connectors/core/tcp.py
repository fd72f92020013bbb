"""What the framed TCP ports (ISO 10161, SLNP) share: who a connection may be, their TLS
contexts, and the two deadlines a framed conversation is read under.

Who a connection may be is decided by what a partner cannot simply claim: a client
certificate pinned in the directory (`tls_client_cert_sha256`) makes it that partner and no
other; otherwise it may be any partner of the port's protocol without a pinned certificate
whose `addresses` hold its source. A partner with neither is never admitted: anyone can reach
the port. What a connection then says (an ISO System-Id, an SLNP login or sigel) only chooses
among these candidates; that choice is each protocol's own.

Reading: between units (APDUs, commands) a connection may be silent for `idle_s`; once a unit
has begun, it has `read_s` in all to complete, so a partner trickling bytes cannot hold a
connection open. Answers get `read_s` to be taken (a partner that sends and never reads).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from connectors.core.directory import Directory, Partner

CHUNK = 65536


def fingerprint(der: bytes | None) -> str | None:
    """SHA-256 of a DER certificate, as the directory's `tls_client_cert_sha256` holds it."""
    return hashlib.sha256(der).hexdigest() if der else None


@dataclass(frozen=True)
class PeerIdentity:
    """What a connection proves about itself: its source address and, over TLS, the
    fingerprint of the client certificate it presented (verified against the port's CA)."""

    address: str
    certificate: str | None = None

    @classmethod
    def of(cls, writer: asyncio.StreamWriter) -> PeerIdentity:
        peer = writer.get_extra_info("peername") or ("?", 0)
        tls = writer.get_extra_info("ssl_object")
        certificate = fingerprint(tls.getpeercert(binary_form=True)) if tls else None
        return cls(str(peer[0]), certificate)


def identifiable(partner: Partner) -> bool:
    """Whether a connection can be told to be this partner at all."""
    return bool(partner.addresses or partner.tls_client_cert_sha256)


def candidates(directory: Directory, protocol: str, peer: PeerIdentity) -> list[Partner]:
    """The partners of `protocol` a connection may be (see the module's docstring).
    Several partners can share a network (all the simulated ones share 127.0.0.1): partners
    that must be told apart exactly need certificates or logins."""
    partners = [p for p in directory.partners if p.protocol == protocol and identifiable(p)]
    certificate = peer.certificate
    pinned = [p for p in partners if certificate and p.tls_client_cert_sha256 == certificate]
    if pinned:
        return [p for p in pinned if p.connects_from(peer.address)]
    return [
        p
        for p in partners
        if not p.tls_client_cert_sha256 and p.addresses and p.connects_from(peer.address)
    ]


def pinned(directory: Directory, protocol: str) -> list[str]:
    """The partners of `protocol` identified by a client certificate."""
    return [
        p.symbol for p in directory.partners if p.protocol == protocol and p.tls_client_cert_sha256
    ]


class ServerTls(Protocol):
    """The settings a port is served over TLS by (each protocol's settings model has them)."""

    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...
    @property
    def tls_client_ca_file(self) -> Path | None: ...


def server_context(settings: ServerTls) -> ssl.SSLContext | None:
    """A port's TLS context (None: plain TCP, e.g. behind stunnel). Client certificates are
    asked for, verified against `tls_client_ca_file`, then matched by fingerprint."""
    if not settings.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        context.load_verify_locations(cafile=str(settings.tls_client_ca_file))
        context.verify_mode = ssl.CERT_OPTIONAL  # partners identified by address need none
    return context


def client_context(
    server_ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """TLS towards a partner's port: its server verified (the given CA or the system's),
    rshub's client certificate presented where configured."""
    context = ssl.create_default_context(cafile=str(server_ca_file) if server_ca_file else None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class Framer(Protocol):
    """Splits a byte stream into units (each protocol's splitter or framer)."""

    @property
    def pending(self) -> int: ...  # bytes of a unit begun and not complete (0: between units)
    def feed(self, data: bytes) -> list[bytes]: ...


class ReadTimedOut(Exception):
    """A deadline passed: idle between units (`pending` 0), or a unit begun and not complete
    (`pending` bytes of it)."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"read time-out ({pending} bytes pending)")
        self.pending = pending


class FramedReader:
    """Reads a connection's units under the idle and read deadlines.

    The deadline of a unit is started when its first bytes arrive, or, when they came with
    the end of the unit before, once the caller has dealt with that one (the time an answer
    takes is the hub's, not the partner's)."""

    def __init__(
        self, reader: asyncio.StreamReader, framer: Framer, idle_s: float, read_s: float
    ) -> None:
        self.reader, self.framer = reader, framer
        self.idle_s, self.read_s = idle_s, read_s
        self.begun: float | None = None  # when the first byte of the pending unit arrived
        self._completed = False  # the last read completed units

    async def next(self) -> list[bytes] | None:
        """The units the next read completes (maybe none); None when the partner has closed.
        Raises ReadTimedOut, and whatever the framer raises on a stream it cannot split."""
        loop = asyncio.get_running_loop()
        if not self.framer.pending:
            self.begun = None
        elif self.begun is None or self._completed:
            self.begun = loop.time()
        deadline = loop.time() + self.idle_s if self.begun is None else self.begun + self.read_s
        try:
            async with asyncio.timeout_at(deadline):
                data = await self.reader.read(CHUNK)
        except TimeoutError:
            raise ReadTimedOut(self.framer.pending) from None
        if not data:
            return None
        units = self.framer.feed(data)
        self._completed = bool(units)
        return units


async def send_within(writer: asyncio.StreamWriter, body: bytes, seconds: float) -> None:
    """Writes an answer; a partner that does not take it within `seconds` (it sends and
    never reads) raises TimeoutError, which ends its connection."""
    writer.write(body)
    async with asyncio.timeout(seconds):
        await writer.drain()
