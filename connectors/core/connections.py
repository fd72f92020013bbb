"""What the inbound ports share: binding them up front with a clear error, caps on the
connections one source address and the port in all may hold open, and hanging up so that
the last answer is read.

Every port has both caps so that no port can use up the process's file descriptors: a flood
on one (the console, say) is refused there, and the others go on accepting.

Nothing here reads or writes a message; the time-outs on reading live with the code that
reads (the gateway for HTTP bodies, aiohttp's keep-alive timer for request heads, the ISO
10161 and SLNP servers for their commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)
LINGER_S = 2.0  # how long a hung-up partner may go on sending before the socket is closed
LINGER_BYTES = 1_048_576  # and how much of it is read (and dropped) meanwhile


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
    """Counts open connections per source address and on the port in all; `admit` refuses
    one over either cap (one warning line per refused connection)."""

    def __init__(self, cap: int, port_name: str, total: int | None = None) -> None:
        self.cap, self.port_name, self.total = cap, port_name, total
        self.open: Counter[str] = Counter()
        self.count = 0

    def admit(self, source: str) -> bool:
        if self.total is not None and self.count >= self.total:
            reason = f"the port holds its limit of {self.total} connections"
        elif self.open[source] >= self.cap:
            reason = f"already {self.cap} connections open from this address"
        else:
            self.open[source] += 1
            self.count += 1
            return True
        log.warning("connection.refused", port=self.port_name, source=source, reason=reason)
        return False

    def release(self, source: str) -> None:
        self.count -= 1
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


async def hang_up(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger_s: float = LINGER_S
) -> None:
    """Ends a connection the hub is done with so that the partner reads what it was told
    last. Closing a socket with unread bytes in it (a partner still sending) makes the
    kernel reset the connection, and a reset throws away what the partner had not yet read:
    the refusal. So: flush, half-close (FIN after the answer), read and drop what still
    comes for at most `linger_s` or LINGER_BYTES, then close."""
    try:
        with contextlib.suppress(ConnectionError, OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(linger_s):
                await writer.drain()
                if writer.can_write_eof():  # TLS cannot half-close; its close_notify comes last
                    writer.write_eof()
                dropped = 0
                while dropped < LINGER_BYTES and (data := await reader.read(65536)):
                    dropped += len(data)
    finally:  # also when the hub stops meanwhile (cancelled): the socket is never left open
        writer.close()
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
        await writer.wait_closed()


def free_port() -> int:
    """A TCP port free on loopback now (for simulators, tests and the embedded broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_health(server: asyncio.Server | None, sources: SourceLimit) -> dict[str, Any]:
    """A TCP listener's line in /health: serving or not, and the connections it holds."""
    serving = server is not None and server.is_serving()
    return {"state": "running" if serving else "stopped", "connections": sources.count}
