"""The edges against the real hub (subprocess) and the real embedded broker: a body in two
TCP segments is read and audited whole; a broker that dies is reported by /health and
answered as a temporary failure at once."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from connectors.core.model import Event
from hub.kafka.embedded import EmbeddedBroker
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import request
from tests.test_edges import raw_http

pytestmark = pytest.mark.kafka


async def test_request_in_two_segments_is_answered_and_audited_whole(
    hub, libraries, bootstrap
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    body = north.encode(request("N-SEG"))
    head = (
        f"POST /ncip/NORTH HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {north.secret}\r\n"
        f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await raw_http(hub.port, head, body[:600], body[600:])
    assert answer.startswith(b"HTTP/1.1 200") and b"Problem" not in answer, answer[:400]
    audited = await wait_for_record(
        bootstrap, "ill.audit", lambda r: r["partner"] == "NORTH" and "N-SEG" in r["body"]
    )
    assert audited["body"].encode("latin-1") == body
    asked = await south.next()  # and it went on to the lender
    assert asked.event is Event.REQUEST and asked.bibliographic == request("N-SEG").bibliographic


async def test_dead_broker_is_a_temporary_failure_at_once(
    hub, libraries, broker: EmbeddedBroker
) -> None:
    north = libraries["NORTH"]
    assert broker.process is not None
    broker.process.kill()
    broker.process.wait()
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:  # the gateway checks the broker every RSHUB_BROKER_CHECK_INTERVAL_S
            async with session.get(f"{hub.url}/health") as reply:
                if reply.status == 503:
                    health = await reply.json()
                    break
            await asyncio.sleep(0.2)  # polling the endpoint under test; it has no event
    assert str(health["broker"]).startswith("unreachable")
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer = await north.send(request("N-DEAD"))
    assert loop.time() - started < 3
    assert status == 503 and answer.errors[0].startswith("Temporary Processing Failure")
    # Stopped with the broker gone, the hub still stops by itself (it hung until SIGKILL:
    # aiokafka's fetcher close raised in faust's consumer thread).
    hub.stop()
    assert hub.process is not None and hub.process.returncode != -signal.SIGKILL
    assert "Traceback" not in hub.log.read_text()
