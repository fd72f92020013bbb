"""A simulated NCIP library for the demo, the tests and the benchmark: a real HTTP server that
records what the hub delivers to it and sends its own messages to the hub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from connectors.ncip import codec, writer
from hub.broker import free_port
from hub.model import Message


@dataclass
class Library:
    symbol: str
    agency_id: str
    secret: str
    hub_url: str = ""
    port: int = field(default_factory=free_port)
    received: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    runner: web.AppRunner | None = None
    refuse_requests: bool = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/ncip"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/ncip", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        parsed = codec.parse(body)
        self.received.put_nowait(codec.to_canonical(parsed, sender="rshub"))
        return web.Response(body=writer.encode_response(parsed), content_type="application/xml")

    async def next(self, timeout: float = 60.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def send(
        self, message: Message, to_agency: str = "RSHUB", secret: str | None = None
    ) -> tuple[int, codec.Response]:
        body = writer.encode(
            message, from_agency=self.agency_id, to_agency=to_agency, system_id=self.symbol
        )
        return await self.post(body, secret)

    async def post(
        self, body: bytes, secret: str | None = None, symbol: str | None = None
    ) -> tuple[int, codec.Response]:
        headers = {
            "Authorization": f"Bearer {secret or self.secret}",
            "Content-Type": "application/xml",
        }
        url = f"{self.hub_url}/ncip/{symbol or self.symbol}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as reply,
        ):
            content = await reply.read()
            return reply.status, codec.read_response(content)


def directory_yaml(libraries: list[Library], rota: list[str]) -> str:
    lines = ["consortium: Test Consortium", "partners:"]
    for lib in libraries:
        lines += [
            f"  - symbol: {lib.symbol}",
            f"    name: {lib.symbol} library",
            "    protocol: ncip",
            f"    endpoint: {lib.endpoint}",
            f'    agency_ids: ["{lib.agency_id}"]',
            f"    inbound_auth: {{scheme: bearer, secret_env: RSHUB_SECRET_{lib.symbol}}}",
        ]
    lines += [
        "rotas:",
        "  - name: default",
        f"    members: [{', '.join(rota)}]",
        "default_rota: default",
    ]
    return "\n".join(lines) + "\n"
