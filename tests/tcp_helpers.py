"""Clients that misbehave on a TCP port, for the listeners' tests."""

from __future__ import annotations

import asyncio
import socket


def _send_then_read(port: int, data: bytes, host: str) -> tuple[bytes, str | None]:
    received, error = b"", None
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError as exc:
            error = f"sending: {exc}"
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            error = f"{error or ''} reading: {exc}".strip()
    return received, error


async def send_then_read(
    port: int, data: bytes, host: str = "127.0.0.1"
) -> tuple[bytes, str | None]:
    """As a simple blocking client does it: sends all of `data` (more than the hub reads
    before it refuses), then reads to the end. What it read, and how sending or reading
    failed (None: both ended cleanly). A connection the hub closes with unread bytes in it
    is reset, and the partner sees an error instead of (or besides) the refusal."""
    return await asyncio.to_thread(_send_then_read, port, data, host)
