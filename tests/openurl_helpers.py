"""OpenURL test helpers: the web routes on a real aiohttp server with an Intake that runs the
real codec and keeps what it was given (the hub's side of the contract, at unit level); and
the real hub (a process on the embedded broker) with OpenURL borrowers, NCIP lenders and
simulated OpenURL lenders (Relais, ILLiad) for the end-to-end and browser tests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import yaml
from aiohttp import web

from connectors.core.connections import free_port
from connectors.core.contract import Answer, Codec, Limits, Refusal, WebRoute
from connectors.core.directory import Directory
from connectors.core.model import Message, transaction_id
from connectors.openurl.signing import patron_signature
from connectors.simulator import Library, TcpLibrary, directory_yaml, running
from hub.cli.process import HubProcess
from hub.runtime.gateway import web_request


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

    def wrap(route: WebRoute) -> Callable[[web.Request], Awaitable[web.Response]]:
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


# --- the real hub with OpenURL borrowers (tests/test_e2e_openurl.py, test_browser_openurl.py)

NORTH_TOKEN, NORTH_PATRON_KEY, NORTH_BEARER = "north-link-token", "north-patron-key", "north-bearer"
WEST_TOKEN, VALE_TOKEN = "west-link-token", "vale-link-token"
NORTH_REFERRER = "info:sid/primo.exlibrisgroup.com:north"


@dataclass
class OpenUrlServer:
    """A partner whose request intake is an OpenURL (Relais, ILLiad): a real HTTP server on
    loopback that answers with its request form and records each link it was sent."""

    path: str
    received: asyncio.Queue[tuple[str, list[tuple[str, str]]]] = field(
        default_factory=asyncio.Queue
    )
    port: int = field(default_factory=free_port)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", self.path, self._intake)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _intake(self, request: web.Request) -> web.Response:
        query = request.rel_url.raw_query_string
        if request.method == "POST":
            query = (await request.read()).decode()
        self.received.put_nowait((request.method, parse_qsl(query, keep_blank_values=True)))
        return web.Response(text="<html><form>request form</form></html>", content_type="text/html")

    async def next(self, timeout: float = 60.0) -> tuple[str, list[tuple[str, str]]]:
        return await asyncio.wait_for(self.received.get(), timeout)


@dataclass
class OpenUrlHub:
    """The running hub, its NCIP lenders and OpenURL lenders."""

    hub: HubProcess
    bootstrap: str
    lenders: dict[str, Library | TcpLibrary]
    relais: OpenUrlServer
    illiad: OpenUrlServer

    @property
    def url(self) -> str:
        return self.hub.url


def hub_directory(
    lenders: list[Library | TcpLibrary], relais: OpenUrlServer, illiad: OpenUrlServer
) -> dict[str, Any]:
    """NORTH, WEST and VALE take requests from their patrons' OpenURL links; NORTH's books
    go to the NCIP lenders in order (both need a title), its articles to RELAIS (OpenURL
    out); WEST's to ILLIAD; VALE's to VDX (ISO 10161)."""
    ncip = [lib.symbol for lib in lenders if lib.protocol == "ncip"]
    document = yaml.safe_load(directory_yaml(list(lenders), rota=ncip))
    document["partners"] += [
        {
            "symbol": "NORTH",
            "name": "North University",
            "protocol": "openurl",
            "lends": False,
            "inbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_NORTH"},
            "options": {
                "referrers": [NORTH_REFERRER],
                "link_token_env": "RSHUB_OPENURL_TOKEN_NORTH",
                "patron_secret_env": "RSHUB_OPENURL_PATRON_KEY_NORTH",
                "pickup_locations": ["Main library", "Law library"],
            },
        },
        {
            "symbol": "WEST",
            "name": "West College",
            "protocol": "openurl",
            "lends": False,
            "options": {"link_token_env": "RSHUB_OPENURL_TOKEN_WEST"},
        },
        {
            "symbol": "VALE",
            "name": "Vale College",
            "protocol": "openurl",
            "lends": False,
            "options": {"link_token_env": "RSHUB_OPENURL_TOKEN_VALE"},
        },
        {
            "symbol": "RELAIS",
            "name": "A Relais ILL library",
            "protocol": "openurl",
            "endpoint": relais.url,
            "options": {"preset": "relais", "extra": {"LS": "RSHUB"}},
        },
        {
            "symbol": "ILLIAD",
            "name": "An ILLiad library",
            "protocol": "openurl",
            "endpoint": illiad.url,
            "options": {"preset": "illiad"},
        },
    ]
    document["rotas"] += [
        {"name": "articles", "members": ["RELAIS"]},
        {"name": "west", "members": ["ILLIAD"]},
        {"name": "vale", "members": ["VDX"]},
    ]
    document["rules"] = [
        {"rota": "west", "borrowers": ["WEST"]},
        {"rota": "vale", "borrowers": ["VALE"]},
        {"rota": "articles", "service_type": "Copy"},
    ]
    return document


@asynccontextmanager
async def openurl_hub(bootstrap: str, tmp_path: Path) -> AsyncIterator[OpenUrlHub]:
    lenders: dict[str, Library | TcpLibrary] = {
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "EAST": Library("EAST", "01EAST_INST||CENTRAL", "east-secret"),
        "VDX": TcpLibrary("VDX", "VDX-LIB"),
    }
    relais = OpenUrlServer("/user/login.html")
    illiad = OpenUrlServer("/illiad/illiad.dll/OpenURL")
    directory = tmp_path / "consortium.yaml"
    directory.write_text(
        yaml.safe_dump(hub_directory(list(lenders.values()), relais, illiad), sort_keys=False)
    )
    env = {f"RSHUB_SECRET_{lib.symbol}": lib.secret for lib in lenders.values() if lib.secret}
    env.update(
        {
            "RSHUB_SECRET_NORTH": NORTH_BEARER,
            "RSHUB_OPENURL_TOKEN_NORTH": NORTH_TOKEN,
            "RSHUB_OPENURL_PATRON_KEY_NORTH": NORTH_PATRON_KEY,
            "RSHUB_OPENURL_TOKEN_WEST": WEST_TOKEN,
            "RSHUB_OPENURL_TOKEN_VALE": VALE_TOKEN,
            "RSHUB_OUTBOUND_RETRIES": "3",
            "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
            "RSHUB_OUTBOUND_TIMEOUT_S": "5",
        }
    )
    hub = HubProcess(bootstrap, directory, tmp_path, env)
    for lib in lenders.values():
        lib.hub_url = hub.url
        if isinstance(lib, TcpLibrary):
            lib.hub_tcp = ("127.0.0.1", hub.iso10161_port)
    async with running(lenders):
        for server in (relais, illiad):
            await server.start()
        try:
            await hub.start()
            yield OpenUrlHub(hub, bootstrap, lenders, relais, illiad)
        finally:
            hub.stop()
            for server in (relais, illiad):
                await server.stop()


def signed_patron(
    req_id: str = "patron-42", email: str = "reader@north.edu", ttl: int = 600
) -> str:
    """The query part NORTH's discovery system adds to prove its patron."""
    expires = str(int(time.time()) + ttl)
    sig = patron_signature(NORTH_PATRON_KEY, req_id, email, expires)
    return f"&req_id={quote(req_id)}&req.email={quote(email)}&req_exp={expires}&req_sig={sig}"


def hidden_fields(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return {name: unescape(value) for name, value in found}


def form_fields(html: str) -> dict[str, str]:
    """What a browser would send for the form as shown: every input's value (a radio button
    only when checked), the selected option, the text area."""
    sent: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", html):
        attributes = dict(re.findall(r'(\w+)="([^"]*)"', tag))
        if attributes.get("type") == "radio" and " checked" not in tag:
            continue
        if "name" in attributes:
            sent[attributes["name"]] = unescape(attributes.get("value", ""))
    for name, options in re.findall(r'<select [^>]*name="([^"]+)">(.*?)</select>', html):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        sent[name] = unescape(chosen.group(1)) if chosen else ""
    for name, text in re.findall(r'<textarea [^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html):
        sent[name] = unescape(text)
    return sent
