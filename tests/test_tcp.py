"""The framed TCP ports' shared part (connectors.core.tcp): who a connection may be, the TLS
context, and the idle and read deadlines a conversation is read under."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.core.directory import Directory
from connectors.core.tcp import (
    FramedReader,
    PeerIdentity,
    ReadTimedOut,
    candidates,
    fingerprint,
    pinned,
    server_context,
)
from connectors.iso10161.transport import Iso10161Settings

PIN = fingerprint(b"a certificate")


def partner(symbol: str, protocol: str = "slnp", **fields: Any) -> dict[str, Any]:
    return {"symbol": symbol, "name": symbol, "protocol": protocol, "lends": False, **fields}


DIRECTORY = Directory.model_validate(
    {
        "consortium": "test",
        "partners": [
            partner("NET", addresses=["10.0.0.0/24"]),
            partner("ALSO", addresses=["10.0.0.7"]),
            partner("PIN", addresses=["10.0.0.0/24"], tls_client_cert_sha256=PIN),
            partner("NOWHERE"),  # neither addresses nor a certificate: never admitted
            partner("ISO", "iso10161", addresses=["10.0.0.0/24"]),
        ],
    }
)


def symbols(peer: PeerIdentity, protocol: str = "slnp") -> list[str]:
    return [p.symbol for p in candidates(DIRECTORY, protocol, peer)]


def test_a_pinned_certificate_is_that_partner_and_no_other() -> None:
    assert symbols(PeerIdentity("10.0.0.7", PIN)) == ["PIN"]
    assert symbols(PeerIdentity("192.0.2.1", PIN)) == []  # and only from its networks


def test_without_a_pinned_certificate_the_source_address_decides() -> None:
    assert symbols(PeerIdentity("10.0.0.7")) == ["NET", "ALSO"]
    assert symbols(PeerIdentity("10.0.0.8", fingerprint(b"unknown"))) == ["NET"]
    assert symbols(PeerIdentity("::ffff:10.0.0.8")) == ["NET"]
    assert symbols(PeerIdentity("192.0.2.1")) == []
    assert symbols(PeerIdentity("10.0.0.7"), "iso10161") == ["ISO"]  # per protocol
    assert pinned(DIRECTORY, "slnp") == ["PIN"] and pinned(DIRECTORY, "iso10161") == []


def test_plain_tcp_without_a_certificate_file() -> None:
    assert server_context(Iso10161Settings()) is None


class Framer:
    """Units are lines."""

    def __init__(self) -> None:
        self.buffer = b""

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def feed(self, data: bytes) -> list[bytes]:
        *units, self.buffer = (self.buffer + data).split(b"\n")
        return units


def reading(idle_s: float = 5.0, read_s: float = 0.3) -> tuple[asyncio.StreamReader, FramedReader]:
    stream = asyncio.StreamReader()
    return stream, FramedReader(stream, Framer(), idle_s, read_s)


async def test_units_come_as_they_complete_and_none_at_the_end() -> None:
    stream, frames = reading()
    stream.feed_data(b"one\ntw")
    assert await frames.next() == [b"one"]
    stream.feed_data(b"o\n")
    assert await frames.next() == [b"two"]
    stream.feed_eof()
    assert await frames.next() is None


async def test_silence_between_units_is_the_idle_deadline() -> None:
    _, frames = reading(idle_s=0.05)
    with pytest.raises(ReadTimedOut) as timeout:
        await frames.next()
    assert timeout.value.pending == 0


async def test_a_unit_begun_has_the_read_deadline_in_all_however_it_trickles() -> None:
    stream, frames = reading(idle_s=5.0, read_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        while True:
            stream.feed_data(b"x")
            await asyncio.sleep(0.05)

    feeding = asyncio.create_task(trickle())
    try:
        with pytest.raises(ReadTimedOut) as timeout:
            while True:
                assert await frames.next() == []
    finally:
        feeding.cancel()
    assert timeout.value.pending > 0
    assert 0.25 < loop.time() - started < 1.0


async def test_the_time_an_answer_takes_is_not_the_partners() -> None:
    stream, frames = reading(idle_s=5.0, read_s=0.2)
    stream.feed_data(b"one\ntw")  # the next unit begins with the end of this one
    assert await frames.next() == [b"one"]
    await asyncio.sleep(0.3)  # the hub answers slowly: longer than read_s
    asyncio.get_running_loop().call_later(0.05, stream.feed_data, b"o\n")
    assert await frames.next() == [b"two"]
