"""OpenURL out: the link `render` wrote is fetched (GET), posted as a form (POST), or, for
partners that make a person log in to submit (ILLiad), recorded for staff: the delivery
succeeds with the link as its detail and answer, so `rshub deliveries` shows it to staff
(the notification to the borrower is requested of the engine, see docs/openurl.md)."""

from __future__ import annotations

import aiohttp

from connectors.core.contract import Attempt, Codec, Limits
from connectors.core.directory import Partner
from connectors.openurl.options import OpenUrlOptions, OpenUrlSettings

STAFF_LINK = "link for staff (the partner requires a login to submit): "


class OpenUrlSender:
    def __init__(self, limits: Limits, settings: OpenUrlSettings, codec: Codec[object]) -> None:
        self.limits, self.settings, self.codec = limits, settings, codec
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.limits.outbound_timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        url = body.decode()
        options = OpenUrlOptions.model_validate(partner.options)
        if options.resolved_login_required():
            return Attempt(True, False, STAFF_LINK + url, body)
        if self.session is None:
            await self.start()
        assert self.session is not None
        try:
            if options.method == "POST":
                base, _, query = url.partition("?")
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                call = self.session.post(base, data=query.encode(), headers=headers)
            else:
                call = self.session.get(url, allow_redirects=True)
            async with call as reply:
                answer = await reply.content.read(self.settings.answer_bytes)
                attempt = self.codec.judge(answer, reply.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Attempt(False, True, f"{type(error).__name__}: {error}".rstrip(": "))
        attempt.detail = f"{options.method} {url[:200]}: {attempt.detail}"
        return attempt


def build(limits: Limits, settings: OpenUrlSettings, codec: Codec[object]) -> OpenUrlSender:
    return OpenUrlSender(limits, settings, codec)
