"""The capped accept loop of the HTTP port and the console (`CappedServer`): every admitted
connection gives its place back, also one whose start a stop cut short, and an error while
admitting one connection never stops the port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from connectors.core.connections import CappedServer, SourceLimit, bind


@asynccontextmanager
async def serving(limit: SourceLimit) -> AsyncIterator[tuple[CappedServer, int]]:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    server = CappedServer(runner.server, limit, bind("127.0.0.1", 0, "a test port"))
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await runner.cleanup()


async def closed_on_us(port: int) -> bool:
    """Connects to the port and says whether the hub closes the connection (EOF or reset)
    within 5 s."""
    loop = asyncio.get_running_loop()
    conn = socket.socket()
    conn.setblocking(False)
    try:
        await loop.sock_connect(conn, ("127.0.0.1", port))
        return await asyncio.wait_for(loop.sock_recv(conn, 1), 5) == b""
    except ConnectionError:
        return True
    finally:
        conn.close()


async def test_a_connection_admitted_as_the_port_closes_gives_its_place_back() -> None:
    """The stop comes in the same loop turn as the admission, before the connection's start
    has run: the place is given back and the socket closed (not left to the collector)."""
    limit = SourceLimit(8, "test", 40)
    async with serving(limit) as (server, port):
        admit = limit.admit

        def admit_then_stop(source: str) -> bool:
            admitted = admit(source)
            asyncio.get_running_loop().call_soon(server.close)
            return admitted

        limit.admit = admit_then_stop  # type: ignore[method-assign]
        assert await closed_on_us(port)
        assert not server.is_serving()
    assert limit.count == 0 and not limit.open


async def test_an_error_admitting_one_connection_leaves_the_port_accepting() -> None:
    """A log sink gone (the refusal's warning raises) or any other error in one admission:
    that connection is closed, the loop's handler hears of it, the next one is served."""
    limit = SourceLimit(8, "test", 40)
    heard: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: heard.append(context))
    try:
        async with serving(limit) as (server, port):
            admit = limit.admit
            failures = [BrokenPipeError("the log sink went away")]

            def failing_once(source: str) -> bool:
                if failures:
                    raise failures.pop()
                return admit(source)

            limit.admit = failing_once  # type: ignore[method-assign]
            assert await closed_on_us(port)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/") as reply,
            ):
                assert reply.status == 200 and await reply.text() == "ok"
            assert server.is_serving()
    finally:
        loop.set_exception_handler(None)
    assert any(isinstance(c.get("exception"), BrokenPipeError) for c in heard)
    assert limit.count == 0 and not limit.open
