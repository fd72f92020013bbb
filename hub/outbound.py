"""Outbound delivery over HTTP, shared by the HTTP protocols: time-outs, retries with
back-off. What differs per protocol (rendering, reading the partner's answer) is an
`Outbound` in the protocol's connector package."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

import aiohttp
import structlog

from connectors.core.directory import Partner
from connectors.core.model import Message, NotApplicable
from hub.gateway import authorization
from hub.settings import Settings

log = structlog.get_logger(__name__)
__all__ = ["Attempted", "HttpDelivery", "NotApplicable", "Outbound"]


@dataclass
class Attempted:
    ok: bool
    retryable: bool
    detail: str


class Outbound(ABC):
    protocol: str
    content_type: str = "application/xml; charset=utf-8"

    @abstractmethod
    def render(self, message: Message, sender_agency: str, recipient: Partner) -> bytes:
        """The message in the recipient's protocol; raise NotApplicable if it has none."""

    @abstractmethod
    def judge(self, status: int, body: bytes, limit: int) -> Attempted:
        """Did the partner accept it? Read its answer in the protocol's terms."""

    def delivery(self, settings: Settings) -> HttpDelivery:
        """How messages reach partners of this protocol (HTTP POST unless overridden)."""
        return HttpDelivery(settings, self)


class HttpDelivery:
    def __init__(self, settings: Settings, outbound: Outbound) -> None:
        self.settings, self.outbound = settings, outbound
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.outbound_timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    async def _post(self, partner: Partner, body: bytes) -> Attempted:
        assert self.session is not None and partner.endpoint
        headers = {
            "Content-Type": self.outbound.content_type,
            **authorization(partner.outbound_auth),
        }
        limit = self.settings.max_body_bytes
        try:
            async with self.session.post(partner.endpoint, data=body, headers=headers) as reply:
                content = await reply.content.read(limit + 1)
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempted(False, True, f"{type(exc).__name__}: {exc}")
        if status >= 500 or status == 429:
            return Attempted(False, True, f"HTTP {status}")
        return self.outbound.judge(status, content, limit)

    async def deliver(self, partner: Partner, body: bytes) -> tuple[Attempted, int]:
        """Post with retries and doubling back-off; the last attempt and the number of tries."""
        delay = self.settings.outbound_backoff_s
        tries = 0
        while True:
            tries += 1
            attempted = await self._post(partner, body)
            if attempted.ok or not attempted.retryable or tries >= self.settings.outbound_retries:
                return attempted, tries
            log.info(
                "delivery.retry",
                protocol=self.outbound.protocol,
                partner=partner.symbol,
                tries=tries,
                detail=attempted.detail,
                delay_s=delay,
            )
            await asyncio.sleep(delay)
            delay *= 2
