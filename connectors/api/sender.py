"""The API's outbound side. An API borrower has no endpoint of its own to be told at: each
step the hub owes it is accepted here and kept (the delivery's detail and the rendered JSON
are on ill.delivery and ill.audit), and the client reads the request's state and history with
`GET /api/v1/requests/{id}`. A library's webhooks are told of every state change of its
requests by the hub (hub.runtime.webhooks, fed from ill.events), whichever channel it
borrows by, so they are not sent from here."""

from __future__ import annotations

from connectors.core.contract import Attempt, Codec, Limits, NoSettings
from connectors.core.directory import Partner

KEPT = "kept for the API client (read with GET /api/v1/requests/{id})"


class ApiSender:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        return Attempt(True, False, KEPT, body)


def build(limits: Limits, settings: NoSettings, codec: Codec[object]) -> ApiSender:
    return ApiSender()
