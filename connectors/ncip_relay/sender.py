"""How the relay agent reaches a member's NCIP responder: one HTTP POST per call, on one pooled
aiohttp session, with the member's credentials (Authorization from the partner's
`outbound_auth`, a URL token from its options) and the member time-out. One try: a broker
retries on its own clock, and a state-changing call must not reach the member twice."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from connectors.core.contract import Attempt, Codec, Limits
from connectors.core.directory import AuthScheme, Credential, Partner
from connectors.ncip_relay import codec as c
from connectors.ncip_relay.options import RelaySettings


def authorization(credential: Credential | None) -> dict[str, str]:
    """The Authorization header for a member (bearer token or basic)."""
    if credential is None or credential.scheme is AuthScheme.NONE:
        return {}
    secret = credential.secret() or ""
    if credential.scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    token = base64.b64encode(f"{credential.username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def member_url(partner: Partner) -> str:
    assert partner.endpoint
    token = c.options(partner).query_token
    if token is None:
        return partner.endpoint
    parts = urlsplit(partner.endpoint)
    extra = urlencode({token.param: token.value()})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class MemberSender:
    def __init__(self, limits: Limits, settings: RelaySettings, codec: Codec[Any]) -> None:
        self.limits, self.settings, self.codec = limits, settings, codec
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.member_timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        assert self.session is not None, "start() first"
        if not partner.endpoint:
            return Attempt(False, False, f"{partner.symbol} has no NCIP responder (endpoint)")
        token = c.options(partner).query_token
        if token is not None and token.value() is None:
            # never an empty token in the URL: the hub's configuration is at fault, not the
            # member; the broker's retry gets through once the secret is set
            return Attempt(
                False, True, f"{partner.symbol}'s query_token ({token.source()}) not set"
            )
        headers = {
            "Content-Type": c.content_type(c.options(partner).ncip_version),
            **authorization(partner.outbound_auth),
        }
        limit = self.limits.max_body_bytes
        try:
            async with self.session.post(member_url(partner), data=body, headers=headers) as reply:
                content = await reply.content.read(limit + 1)
                status = reply.status
        except TimeoutError:
            return Attempt(False, True, f"no answer within {self.settings.member_timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        if len(content) > limit:
            return Attempt(False, False, f"HTTP {status}, answer over {limit} bytes")
        return self.codec.judge(content, status)


def member_sender(limits: Limits, settings: RelaySettings, codec: Codec[Any]) -> MemberSender:
    """`Connector.sender` of the relay: the relay agent's way to a member."""
    return MemberSender(limits, settings, codec)
