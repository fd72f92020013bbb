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
import random
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)
LINGER_S = 2.0  # how long a hung-up partner may go on sending before the socket is closed
LINGER_BYTES = 1_048_576  # and how much of it is read (and dropped) meanwhile
ACCEPT_RETRY_S = 1.0  # out of descriptors: wait as asyncio's own server does, then accept again
ACCEPT_BATCH = 16  # connections accepted per readiness call of a capped port


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


class _Admitted(asyncio.Protocol):
    """Wraps a protocol (aiohttp's request handler) for a connection already admitted: passes
    everything through and gives the connection's place back, once, when it ends."""

    def __init__(self, inner: asyncio.Protocol, limit: SourceLimit, source: str) -> None:
        self.inner, self.limit, self.source = inner, limit, source
        self.made = self.given_back = False

    def give_back(self) -> None:
        if not self.given_back:
            self.given_back = True
            self.limit.release(self.source)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.give_back()
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class CappedServer:
    """A listening port that admits or refuses each connection the moment it accepts it.

    A refused connection is closed in the same call that accepted it, so a flood over the caps
    holds no more descriptors than the caps allow. (asyncio's own server accepts up to 100
    connections at a time and a protocol can refuse one only a few loop turns later: a flood
    of idle connections on the console held every spare descriptor for a moment, and the
    partners' ports could not accept.) Accepting is a reader callback, as in asyncio's server:
    no task holds an accepted socket that a cancel could drop, and an error in one accept is
    the loop's to log while the port goes on accepting."""

    def __init__(self, factory: Callable[[], Any], limit: SourceLimit, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.factory, self.limit = factory, limit
        self.sockets = [sock]
        self.loop = asyncio.get_running_loop()
        self.starting: dict[asyncio.Task[Any], tuple[socket.socket, _Admitted]] = {}
        self.retry: asyncio.TimerHandle | None = None
        self.serving = True
        self.loop.add_reader(sock.fileno(), self._accept, sock)

    def is_serving(self) -> bool:
        return self.serving

    def close(self) -> None:
        """Stops accepting and closes the listening socket now; connections already admitted
        are the wrapped server's to close (aiohttp's runner does on clean-up)."""
        if not self.serving:
            return
        self.serving = False
        sock = self.sockets[0]
        self.loop.remove_reader(sock.fileno())
        sock.close()
        if self.retry is not None:
            self.retry.cancel()
        for task in list(self.starting):
            task.cancel()  # `_started` gives its place back and closes its socket

    def _resume(self, sock: socket.socket) -> None:
        self.retry = None
        if self.serving:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        """Up to ACCEPT_BATCH queued connections per call; the loop calls again while more
        wait, with the rest of the hub's work in between."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none left, or one reset by its client before it was accepted
            except OSError as error:
                # Out of descriptors or buffers: the kernel keeps the queue while the port
                # pauses, as asyncio's own server does.
                log.error("connection.accept_failed", port=self.limit.port_name, error=str(error))
                self.loop.remove_reader(sock.fileno())
                self.retry = self.loop.call_later(ACCEPT_RETRY_S, self._resume, sock)
                return
            self._admit(conn, address)

    def _admit(self, conn: socket.socket, address: Any) -> None:
        """Refused: closed at once. An error here (a log sink gone, say) closes the
        connection and is the loop's exception handler's to log; the port goes on."""
        source = str(address[0]) if isinstance(address, tuple) else "?"
        try:
            admitted = self.limit.admit(source)
        except BaseException:
            conn.close()
            raise
        if not admitted:
            conn.close()
            return
        try:
            protocol = _Admitted(self.factory(), self.limit, source)
        except BaseException:
            self.limit.release(source)
            conn.close()
            raise
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: protocol, conn))
        self.starting[task] = (conn, protocol)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[Any]) -> None:
        conn, protocol = self.starting.pop(task)
        if not protocol.made:  # never started (cancelled, perhaps before it ran)
            protocol.give_back()
            conn.close()
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "connection.start_failed", port=self.limit.port_name, error=repr(task.exception())
            )


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


# Where `free_port` looks: below the kernel's ephemeral range, which outgoing connections
# take their local ports from. A port the kernel picks for a bind to port 0 is in that range,
# so a connection made in between (to the broker, say) could take it before whoever asked
# listened on it ("address already in use"; a CI run failed so).
LOWEST_FREE_PORT = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()  # never the same port twice from one process


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port free on loopback now, outside the ephemeral range where possible (for
    simulators, tests and the embedded broker)."""
    top = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(LOWEST_FREE_PORT, top) if top > LOWEST_FREE_PORT else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = int(sock.getsockname()[1])
        _handed_out.add(chosen)
        return chosen
    raise OSError("no free TCP port on loopback")


def server_health(server: asyncio.Server | None, sources: SourceLimit) -> dict[str, Any]:
    """A TCP listener's line in /health: serving or not, and the connections it holds."""
    serving = server is not None and server.is_serving()
    return {"state": "running" if serving else "stopped", "connections": sources.count}
