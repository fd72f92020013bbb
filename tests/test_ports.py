"""Every listening port bounded (issue 22): the partners' TCP ports cap connections in all and
let a refused partner read its refusal; a flood of idle connections on the console's port
neither takes the descriptors the partners' ports need nor stays."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import aiohttp

from connectors.core.directory import Directory
from connectors.iso10161 import codec
from connectors.slnp.server import SlnpListener
from hub.console.app import Console
from tests.edge_helpers import gateway, port
from tests.tcp_helpers import send_then_read

ROOT = Path(__file__).resolve().parent.parent
NORTH = {
    "symbol": "NORTH",
    "name": "North",
    "protocol": "ncip",
    "endpoint": "http://127.0.0.1:9/ncip",
    "agency_ids": ["01NORTH_INST||MAIN"],
}
DIRECTORY = Directory.model_validate({"consortium": "Ports", "partners": [NORTH]})


def slnp_port(running: object) -> int:
    listeners = getattr(running, "listeners")  # noqa: B009
    return next(lst for lst in listeners if isinstance(lst, SlnpListener)).port


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True


async def test_a_partner_still_sending_reads_the_iso10161_error_report() -> None:
    async with gateway(DIRECTORY) as (running, _kafka):
        # A byte that starts no APDU, then more: the stream is refused while it goes on.
        said, error = await send_then_read(port(running, "iso10161"), b"\x00" * 600_000)
    assert error is None  # not reset: the hub half-closed and read what still came
    name, value = codec.decode(codec.Splitter(max_apdu=65536).feed(said)[0])
    assert name == "Status-Or-Error-Report" and "error-report" in value
    assert "does not start an APDU" in str(value["note"])


async def test_the_partners_tcp_ports_cap_connections_in_all() -> None:
    async with gateway(DIRECTORY, max_connections=3, max_connections_per_source=10) as (
        running,
        _kafka,
    ):
        for name, number in (("iso10161", port(running, "iso10161")), ("slnp", slnp_port(running))):
            held = [
                await asyncio.open_connection("127.0.0.1", number, local_addr=(f"127.0.0.{n}", 0))
                for n in (2, 3, 4)
            ]
            # A fourth, from yet another address: over the port's cap, closed at once.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", number, local_addr=("127.0.0.5", 0)
            )
            if name == "slnp":
                assert await asyncio.wait_for(reader.read(), 5) == b"", name
            else:
                assert await closed_by_peer(reader, 5), name
            writer.close()
            for _reader, held_writer in held:
                held_writer.close()
