"""OpenURL out: the link `render` wrote is fetched (GET), posted as a form (POST), or, for
partners that make a person log in to submit (ILLiad), recorded for staff: the delivery
succeeds with the link as its detail and answer, so `rshub deliveries` shows it to staff.
A partner that answers the link with its request form (Relais) has not taken the request:
that delivery is a link for staff too."""

from __future__ import annotations

import aiohttp

from connectors.core.contract import FOR_STAFF, Attempt, Codec, Limits
from connectors.core.directory import Partner
from connectors.openurl.options import OpenUrlOptions, OpenUrlSettings

STAFF_LINK = f"{FOR_STAFF} (the partner requires a login to submit): "
FORM_LINK = f"{FOR_STAFF} (the partner answered with its request form): "
# Bytes of an answer searched for a form (a Relais page has its form well past its head);
# only `answer_bytes` of them are kept.
FORM_SCAN_BYTES = 65_536


def asks_a_person(answer: bytes) -> bool:
    """An HTML page holding a form: the partner prefilled its request form for someone to
    submit (Relais answers a link so), so the request is not in its system yet."""
    text = answer.lower()
    return b"<form" in text and (b"<html" in text or b"<!doctype html" in text)


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
                read = await reply.content.read(max(self.settings.answer_bytes, FORM_SCAN_BYTES))
                answer = read[: self.settings.answer_bytes]
                attempt = self.codec.judge(answer, reply.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Attempt(False, True, f"{type(error).__name__}: {error}".rstrip(": "))
        if attempt.ok and asks_a_person(read):
            # Delivered as far as the hub can take it; staff submit it (`rshub deliveries`).
            return Attempt(True, False, FORM_LINK + url, answer)
        attempt.detail = f"{options.method} {url[:200]}: {attempt.detail}"
        return attempt


def build(limits: Limits, settings: OpenUrlSettings, codec: Codec[object]) -> OpenUrlSender:
    return OpenUrlSender(limits, settings, codec)
