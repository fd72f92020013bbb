"""Fuzzing a running hub: a seeded sample of hostile input (tests/fuzz.py) POSTed to the NCIP
and ISO 18626 endpoints and written to the ISO 10161 TCP port. Every answer is the protocol's
error or success, never a 5xx; the hub process stays alive, logs no traceback, and a normal
loan completes afterwards."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from connectors.core.model import Event, id_key, transaction_id
from connectors.iso10161 import codec as iso10161_codec
from connectors.iso18626 import codec as iso18626_codec
from connectors.ncip import codec as ncip_codec
from connectors.simulator import Library, TcpLibrary, running
from tests import fuzz
from tests.test_e2e_ncip import DUE, ask, say

pytestmark = pytest.mark.kafka

HTTP_SAMPLE = 50
TCP_SAMPLE = 30
ANSWER_TIMEOUT_S = 60.0


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library | TcpLibrary]]:
    # Rota order: SOUTH (NCIP) lends to NORTH; WEST and VDX are there to be fuzzed from.
    libs: dict[str, Library | TcpLibrary] = {
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "WEST": Library("WEST", "DK-710100", "west-secret", protocol="iso18626"),
        "VDX": TcpLibrary("VDX", "VDX-LIB"),
    }
    async with running(libs):
        yield libs


def _protocol_answer(protocol: str, body: bytes) -> bool:
    """Whether the body is an answer in the protocol (success or error), not anything else."""
    try:
        if protocol == "ncip":
            ncip_codec.read_response(body)
        else:
            iso18626_codec.read_confirmation(body)
    except (ncip_codec.NcipError, iso18626_codec.Iso18626Error):
        return False
    return True


async def _post_all(lib: Library, inputs: list[tuple[str, bytes]]) -> None:
    url = f"{lib.hub_url}/{lib.protocol}/{lib.symbol}"
    headers = {"Authorization": f"Bearer {lib.secret}", "Content-Type": "application/xml"}
    timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for label, body in inputs:
            async with session.post(url, data=body, headers=headers) as reply:
                content = await reply.read()
                assert reply.status < 500, (label, reply.status, content[:300])
                assert _protocol_answer(lib.protocol, content), (label, content[:300])


async def _write_apdu(address: tuple[str, int], label: str, body: bytes) -> None:
    """One APDU on its own connection, then end of input: the hub answers what it could read
    and closes, so reading to the end needs no guess of how long to wait."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S)
    finally:
        writer.close()
    for apdu in iso10161_codec.Splitter().feed(answer):
        name, _value = iso10161_codec.decode(apdu)
        assert name == "Status-Or-Error-Report", label


async def test_hostile_input_never_harms_the_hub(hub, libraries) -> None:
    north, south, west, vdx = (libraries[s] for s in ("NORTH", "SOUTH", "WEST", "VDX"))
    await _post_all(north, fuzz.sample(fuzz.ncip_seeds(), fuzz.XML, HTTP_SAMPLE, seed=1))
    await _post_all(west, fuzz.sample(fuzz.iso18626_seeds(), fuzz.XML, HTTP_SAMPLE, seed=2))
    apdus = fuzz.sample(fuzz.iso10161_seeds(vdx.agency_id), fuzz.BER, TCP_SAMPLE, seed=3)
    for label, body in apdus:
        await _write_apdu(vdx.hub_tcp, label, body)

    assert hub.process is not None and hub.process.poll() is None, "the hub died"
    # A normal loan completes. The lender may first hear of requests fuzzing let through: its
    # own request id tells it apart (the id the hub derives with its deployment secret).
    key = id_key({**os.environ, "RSHUB_DATA_DIR": str(hub.log.parent)})
    await ask(north, "AFTER-FUZZ")
    lender_id = f"{transaction_id('NORTH', 'AFTER-FUZZ', key=key)}.1"
    while (asked := await south.next()).request_id != lender_id:
        continue
    assert asked.event is Event.REQUEST
    await say(south, Event.LOANED, lender_id, item_id="F-BC-1", due_date=DUE)
    while (told := await north.next()).request_id != "AFTER-FUZZ":
        continue
    assert told.event is Event.LOANED and told.item_id == "F-BC-1"

    log = hub.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
    assert hub.process.poll() is None
