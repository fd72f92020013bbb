"""The OpenURL web routes on a real aiohttp server, with an Intake that runs the real codec
and keeps what it was given (the hub's side of the contract, at unit level)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.core.contract import Answer, Codec, Limits, Refusal, WebRoute
from connectors.core.directory import Directory
from connectors.core.model import Message, transaction_id
from hub.gateway import web_request


@dataclass
class RecordingIntake:
    directory: Directory
    limits: Limits = field(default_factory=Limits)
    up: bool = True
    taken: list[Message] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def broker_up(self) -> bool:
        return self.up

    async def take(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> Answer:
        decoded = codec.decode(body, partner, self.limits)
        txn = transaction_id(partner, decoded.message.request_id)
        if all(m.request_id != decoded.message.request_id for m in self.taken):
            self.taken.append(decoded.message)
            self.bodies.append(body)
        self.states.setdefault(txn, "Locating")
        return codec.accept(decoded, self.states[txn])

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        self.refused.append(refusal)

    def unavailable(self, codec: Codec[Any]) -> Refusal:
        from connectors.core.contract import Fault

        return Refusal("broker down", codec.fault(Fault.UNAVAILABLE, "broker down"), "unavailable")

    def authenticated(self, partner: str, authorization: str | None) -> bool:
        secret = self.secrets.get(partner)
        return bool(secret and authorization == f"Bearer {secret}")

    async def status(self, transaction_id: str) -> str | None:
        return self.states.get(transaction_id)


def application(routes: list[WebRoute]) -> web.Application:
    """The routes as the hub serves them: each aiohttp request turned into a WebRequest."""
    app = web.Application(client_max_size=1_048_576)

    def wrap(route: WebRoute):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            answer = await route.handler(
                web_request(request, body)  # as the hub's gateway builds it
            )
            response = web.Response(
                body=answer.body, status=answer.status, headers=dict(answer.headers)
            )
            response.content_type = answer.content_type.split(";")[0]
            response.charset = "utf-8"
            return response

        return handler

    for route in routes:
        app.router.add_route(route.method, route.path, wrap(route))
    return app


def directory(extra: dict[str, Any] | None = None) -> Directory:
    return Directory.model_validate(
        {
            "consortium": "test",
            "supported_protocols": ["openurl", "ncip"],
            "partners": [
                {
                    "symbol": "NORTH",
                    "name": "North University",
                    "protocol": "openurl",
                    "lends": False,
                    "inbound_auth": {"scheme": "bearer", "secret_env": "OU_TEST_NORTH_AUTH"},
                    "options": {
                        "referrers": ["info:sid/primo.exlibrisgroup.com:north"],
                        "link_token_env": "OU_TEST_NORTH_TOKEN",
                        "patron_secret_env": "OU_TEST_NORTH_PATRON",
                        "pickup_locations": ["Main library", "Law library"],
                        **(extra or {}),
                    },
                },
                {
                    "symbol": "SUED",
                    "name": "Süd-Bibliothek",
                    "protocol": "openurl",
                    "lends": False,
                    "options": {"language": "de", "link_token_env": "OU_TEST_SUED_TOKEN"},
                },
            ],
        }
    )


def dumps(data: object) -> str:
    return json.dumps(data)
