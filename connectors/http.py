"""Delivery over HTTP POST, shared by the connectors whose partners take HTTP (NCIP, ISO
18626): one pooled, kept-alive aiohttp session per protocol; what the partner answered is
judged by the protocol's codec. Quick retries and back-off are the hub's (the outbound agent);
this module makes one try."""

from __future__ import annotations

from typing import Any

import aiohttp

from connectors.core.contract import Attempt, Codec, Limits
from connectors.core.directory import Partner, authorization


class HttpSender:
    def __init__(self, limits: Limits, codec: Codec[Any]) -> None:
        self.limits, self.codec = limits, codec
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.limits.outbound_timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        assert self.session is not None and partner.endpoint
        headers = {"Content-Type": self.codec.content_type, **authorization(partner.outbound_auth)}
        limit = self.limits.max_body_bytes
        try:
            async with self.session.post(partner.endpoint, data=body, headers=headers) as reply:
                content = await reply.content.read(limit + 1)
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        if status >= 500 or status == 429:
            return Attempt(False, True, f"HTTP {status}")
        if len(content) > limit:
            return Attempt(False, False, f"HTTP {status}, answer over {limit} bytes")
        return self.codec.judge(content, status)


def http_sender(limits: Limits, _settings: Any, codec: Codec[Any]) -> HttpSender:
    """`Connector.sender` for HTTP partners."""
    return HttpSender(limits, codec)
