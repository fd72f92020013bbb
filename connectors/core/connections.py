"""What the inbound ports share: binding them up front with a clear error, and a cap on the
connections one source address may hold open.

Nothing here reads or writes a message; the time-outs on reading live with the code that
reads (the gateway for HTTP bodies, aiohttp's keep-alive timer for request heads, the ISO
10161 server for APDUs).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class ListenError(OSError):
    """A port could not be listened on; the message says which and why."""


def bind(host: str, port: int, what: str) -> socket.socket:
    """A listening socket, bound now so a port in use stops start-up before anything runs."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        raise ListenError(
            f"cannot listen on {host}:{port} for {what}: {error.strerror or error}"
        ) from None


def source_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


class SourceLimit:
    """Counts open connections per source address; `admit` refuses one over the cap."""

    def __init__(self, cap: int, port_name: str) -> None:
        self.cap, self.port_name = cap, port_name
        self.open: Counter[str] = Counter()

    def admit(self, source: str) -> bool:
        if self.open[source] >= self.cap:
            log.warning(
                "connection.refused",
                port=self.port_name,
                source=source,
                reason=f"already {self.cap} connections open from this address",
            )
            return False
        self.open[source] += 1
        return True

    def release(self, source: str) -> None:
        self.open[source] -= 1
        if self.open[source] <= 0:
            del self.open[source]


class _Capped(asyncio.Protocol):
    """Wraps a protocol (aiohttp's request handler): aborts a connection over the source's
    cap before the wrapped protocol sees it, and passes everything else through."""

    def __init__(self, inner: asyncio.Protocol, limit: SourceLimit) -> None:
        self.inner, self.limit = inner, limit
        self.source: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        source = source_of(transport)
        if not self.limit.admit(source):
            assert isinstance(transport, asyncio.Transport)  # a server's stream transport
            transport.abort()
            return
        self.source = source
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.source is None:
            return
        self.limit.release(self.source)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.source is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.source is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def capped(factory: Callable[[], Any], limit: SourceLimit) -> Callable[[], asyncio.Protocol]:
    return lambda: _Capped(factory(), limit)


def free_port() -> int:
    """A TCP port free on loopback now (for simulators, tests and the embedded broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
