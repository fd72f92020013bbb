"""Webhooks (docs/api.md, issue 29.3): a library subscribes through the API; each state
change of its requests reaches its receiver signed, in order per request, again and again
until accepted, and none is lost when the hub restarts meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from connectors.core.model import Event
from connectors.simulator import TcpLibrary, directory_yaml, running
from hub.cli.process import HubProcess
from hub.ops.api import tokens
from hub.ops.api.app import CALL_LINE
from hub.runtime import webhook_store, webhooks
from tests.kafka_reader import wait_for_record
from tests.test_api import PLACED, Client, hears, say
from tests.test_e2e_ncip import DUE

# --- without a hub ---------------------------------------------------------------------------


def test_a_receiver_accepts_the_hubs_signature_and_refuses_a_changed_body_or_an_old_one() -> None:
    body = b'{"state": "Loaned"}'
    now = time.time()
    header = webhooks.sign("whsec_x", int(now), body)
    assert webhooks.verify("whsec_x", header, body, now)
    assert not webhooks.verify("whsec_y", header, body, now)  # another secret
    assert not webhooks.verify("whsec_x", header, b'{"state": "Lost"}', now)
    assert not webhooks.verify("whsec_x", header, body, now + 301)  # a replay, too late
    assert not webhooks.verify("whsec_x", "v1=00", body, now)


def change(event_id: str, txn: str, state: str, at: datetime) -> webhook_store.Change:
    return webhook_store.Change(event_id, "WEB", txn, "W-1", "Request", "New", state, at)


def test_the_outbox_keeps_a_requests_order_and_reading_a_record_twice_adds_nothing(
    tmp_path: Path,
) -> None:
    store = webhook_store.Store(tmp_path / "webhooks.sqlite3")
    created = datetime(2027, 1, 1, tzinfo=UTC)
    sub, secret = store.add("WEB", "http://127.0.0.1:1/", [], "web", created, {0: 5, 1: 0})
    assert secret.startswith("whsec_") and store.secret(sub.id) == secret
    later = created + timedelta(seconds=1)
    read = [
        (0, 5, change("e1", "t1", "Requested", later)),
        (0, 6, change("e2", "t1", "Loaned", later)),
        (0, 7, None),  # a refusal: nobody is told
        (1, 0, change("e3", "t2", "Requested", later)),
        (1, 1, change("e0", "t2", "Requested", created - timedelta(seconds=1))),  # before it
    ]
    assert store.take(read, webhooks.render, 0.0) == 3
    assert store.take(read, webhooks.render, 0.0) == 0  # read again after a crash
    assert store.offsets() == {0: 8, 1: 2}
    # One per request at a time: t1's Loaned waits behind its Requested.
    first = store.due(1.0)
    assert [(d.transaction_id, d.state) for d in first] == [
        ("t1", "Requested"),
        ("t2", "Requested"),
    ]
    store.failed(first[0].id, created, "HTTP 503", 100.0, parked=False)
    assert [d.transaction_id for d in store.due(1.0)] == ["t2"]
    store.delivered(first[0].id, created)
    assert [d.state for d in store.due(1.0)] == ["Loaned", "Requested"]
    body = json.loads(store.due(1.0)[0].body)
    assert body["state"] == "Loaned" and body["request_id"] == "W-1" and "detail" not in body
    # The last subscription gone: its deliveries and the follower's position go too.
    assert store.remove("OTHER", sub.id) is False
    assert store.remove("WEB", sub.id) is True
    assert store.offsets() == {} and store.due(1.0) == []
    assert (tmp_path / "webhooks.sqlite3").stat().st_mode & 0o077 == 0


def test_a_failed_delivery_follows_the_librarys_schedule_then_is_parked_until_redelivered(
    tmp_path: Path,
) -> None:
    assert webhooks.next_try(1, (5.0, 10.0), 60.0, 0.0) == (300.0, False)
    assert webhooks.next_try(2, (5.0, 10.0), 60.0, 0.0) == (600.0, False)
    assert webhooks.next_try(3, (5.0, 10.0), 60.0, 0.0) == (3600.0, True)
    store = webhook_store.Store(tmp_path / "webhooks.sqlite3")
    created = datetime(2027, 1, 1, tzinfo=UTC)
    sub, _ = store.add("WEB", "http://127.0.0.1:1/", ["Loaned"], "web", created, {0: 0})
    read = [
        (0, 0, change("e1", "t1", "Requested", created)),  # not a state it asked for
        (0, 1, change("e2", "t1", "Loaned", created)),
    ]
    assert store.take(read, webhooks.render, 0.0) == 1
    (loaned,) = store.due(1.0)
    store.failed(loaned.id, created, "HTTP 500", 3600.0, parked=True)
    assert store.due(1.0) == [] and store.counts() == {("WEB", "parked"): 1}
    assert store.redeliver(sub.id, None, 2.0) == 1
    (again,) = store.due(2.0)
    assert again.id == loaned.id and again.attempts == 1 and again.last_error == "HTTP 500"


# --- with a hub ------------------------------------------------------------------------------


class Receiver:
    """A library's webhook receiver, as docs/api.md tells one to be written: it checks the
    signature and its age, and takes each delivery id once. `failing`: how many calls it
    answers 503 before it accepts."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # the path's subscription secret
        self.failing: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.got: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.refused: dict[str, asyncio.Event] = {}
        self.seen: set[str] = set()
        self.bad = 0

    def path(self, name: str, failing: int = 0) -> str:
        self.failing[name], self.calls[name] = failing, 0
        self.got[name] = asyncio.Queue()
        self.refused[name] = asyncio.Event()
        return f"{self.base}/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        signed = request.headers.get(webhooks.SIGNATURE, "")
        if not webhooks.verify(self.secrets[name], signed, body, time.time()):
            self.bad += 1
            return web.Response(status=401)
        self.calls[name] += 1
        if self.calls[name] <= self.failing[name]:
            self.refused[name].set()
            return web.Response(status=503)
        delivery = request.headers[webhooks.DELIVERY]
        found = json.loads(body)
        assert found["delivery_id"] == delivery
        found["repeat"] = delivery in self.seen
        self.seen.add(delivery)
        await self.got[name].put(found)
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()

    async def next(self, name: str) -> dict[str, Any]:
        return await asyncio.wait_for(self.got[name].get(), 90)

    async def taken(self, name: str, count: int) -> list[dict[str, Any]]:
        """The next `count` deliveries as a receiver takes them: a repeat of one it took (the
        hub did not hear its answer before it died) is acknowledged and set aside."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            delivery = await self.next(name)
            if not delivery["repeat"]:
                found.append(delivery)
        return found


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, TcpLibrary]]:
    libs = {"VDX": TcpLibrary("VDX", "VDX-LIB")}
    async with running(libs):
        yield libs


@pytest.fixture
async def hub_parts(
    bootstrap: str, libraries: dict[str, TcpLibrary], tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    document = yaml.safe_load(directory_yaml(list(libraries.values()), rota=["VDX"]))
    # Retries a fraction of a second apart, so a test sees the schedule play out.
    document["partners"].append(
        {"symbol": "OTHER", "name": "OTHER", "protocol": "api", "lends": False}
    )
    document["partners"].append(
        {
            "symbol": "WEB",
            "name": "WEB",
            "protocol": "api",
            "lends": False,
            "retry_minutes": [0.005, 0.005, 0.005],
            "parked_retry_minutes": 600,
        }
    )
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(document))
    token = tokens.add(tmp_path / "api-tokens", "web-discovery", "WEB", ["read", "request", "act"])
    other = tokens.add(tmp_path / "api-tokens", "other-ils", "OTHER", ["read"])
    staff = tokens.add(tmp_path / "api-tokens", "night-shift", None, ["read"])
    hub = HubProcess(
        bootstrap,
        directory,
        tmp_path,
        {"RSHUB_OUTBOUND_BACKOFF_S": "0.1", "RSHUB_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    libraries["VDX"].hub_tcp = ("127.0.0.1", hub.iso10161_port)
    await hub.start()
    async with aiohttp.ClientSession() as session, Receiver() as receiver:
        yield {
            "bootstrap": bootstrap,
            "hub": hub,
            "web": Client(session, hub.url + "/api/v1", token),
            "other": Client(session, hub.url + "/api/v1", other),
            "staff": Client(session, hub.url + "/api/v1", staff),
            "receiver": receiver,
        }
    hub.stop()


async def subscribe(web_client: Client, receiver: Receiver, name: str, failing: int = 0) -> str:
    url = receiver.path(name, failing)
    status, made, _ = await web_client.call("POST", "/webhooks", {"url": url})
    assert status == 201 and made["secret"].startswith("whsec_"), made
    receiver.secrets[name] = made["secret"]
    return str(made["id"])


@pytest.mark.kafka
async def test_an_api_request_lent_by_iso10161_is_followed_to_its_end_by_signed_webhooks(
    hub_parts: dict[str, Any], libraries: dict[str, TcpLibrary]
) -> None:
    web_client, receiver, vdx = hub_parts["web"], hub_parts["receiver"], libraries["VDX"]
    steady = await subscribe(web_client, receiver, "steady")
    # A receiver down for its first three calls gets the same, later, in the same order.
    await subscribe(web_client, receiver, "flaky", failing=3)
    status, listed, _ = await web_client.call("GET", "/webhooks")
    assert status == 200 and len(listed["items"]) == 2
    assert not any("secret" in item for item in listed["items"])  # shown once only
    # Another library neither sees nor touches them; a staff token has no webhooks.
    other = hub_parts["other"]
    assert (await other.call("GET", "/webhooks"))[1]["items"] == []
    assert (await other.call("GET", f"/webhooks/{steady}/deliveries"))[0] == 404
    assert (await other.call("POST", f"/webhooks/{steady}/redeliver"))[0] == 404
    assert (await other.call("DELETE", f"/webhooks/{steady}"))[0] == 404
    # Staff see every library's, but make none and (without `redeliver`) resend none.
    staff = hub_parts["staff"]
    status, seen_by_staff, _ = await staff.call("GET", "/webhooks")
    assert status == 200 and {w["partner"] for w in seen_by_staff["items"]} == {"WEB"}
    assert (await staff.call("GET", f"/webhooks/{steady}/deliveries"))[0] == 200
    assert (await staff.call("POST", f"/webhooks/{steady}/redeliver"))[0] == 403
    assert (await staff.call("POST", "/webhooks", {"url": "http://127.0.0.1:1/"}))[0] == 403
    status, problem, _ = await web_client.call("POST", "/webhooks", {"url": "ftp://x/"})
    assert status == 422 and problem["errors"][0]["field"] == "url", problem

    status, placed, _ = await web_client.call("POST", "/requests", PLACED)
    assert status == 201, placed
    asked = await hears(vdx, Event.REQUEST)
    await say(vdx, Event.LOANED, asked.request_id, due_date=DUE)
    status, done, _ = await web_client.call("POST", "/requests/W-1/received", None)
    assert status == 202, done
    await hears(vdx, Event.RECEIVED)
    status, done, _ = await web_client.call("POST", "/requests/W-1/returned", None)
    assert status == 202, done
    await hears(vdx, Event.SHIPPED_RETURN)
    await say(vdx, Event.LOAN_COMPLETED, asked.request_id)
    status, seen, _ = await web_client.call("GET", "/requests/W-1")
    assert seen["state"] == "LoanCompleted", seen
    history = [step["state"] for step in seen["history"]]

    for name in ("steady", "flaky"):
        told = [await receiver.next(name) for _ in history]
        assert [t["state"] for t in told] == history, name  # every change, in order
        assert {t["request_id"] for t in told} == {"W-1"}
        assert {t["transaction_id"] for t in told} == {placed["transaction_id"]}
        assert told[-1]["state"] == "LoanCompleted"
    assert receiver.bad == 0 and receiver.calls["flaky"] == len(history) + 3

    # Visible: each delivery with its tries; the flaky one's first needed four.
    status, page, _ = await web_client.call("GET", f"/webhooks/{steady}/deliveries")
    assert status == 200 and {d["status"] for d in page["items"]} == {"delivered"}
    # Redeliverable: one delivery again, under its own id.
    first = page["items"][-1]
    status, outcome, _ = await web_client.call(
        "POST", f"/webhooks/{steady}/redeliver", {"delivery_id": first["id"]}
    )
    assert status == 200 and outcome["ok"], outcome
    again = await receiver.next("steady")
    assert again["delivery_id"] == first["id"] and again["repeat"]
    # Removed: no longer listed, its deliveries gone with it.
    assert (await web_client.call("DELETE", f"/webhooks/{steady}"))[0] == 204
    assert (await web_client.call("GET", f"/webhooks/{steady}/deliveries"))[0] == 404
    # Every call is on ill.audit with the client's identity, reads included (the paths name
    # this test's webhook: the broker is shared with other tests).
    calls = (
        ("POST", f"/api/v1/webhooks/{steady}/redeliver", "web-discovery", 200),
        ("GET", f"/api/v1/webhooks/{steady}/deliveries", "web-discovery", 200),
        ("GET", f"/api/v1/webhooks/{steady}/deliveries", "other-ils", 404),
    )
    for method, path, client, status in calls:
        line = await wait_for_record(
            hub_parts["bootstrap"],
            "ill.audit",
            lambda audit, method=method, path=path, client=client: (
                audit.get("content_type") == CALL_LINE
                and json.loads(audit["body"])["path"] == path
                and json.loads(audit["body"])["method"] == method
                and json.loads(audit["body"])["client"] == client
            ),
        )
        said = json.loads(line["body"])
        assert said["status"] == status and line["partner"] == said["library"], said


@pytest.mark.kafka
async def test_a_delivery_refused_before_the_hub_is_killed_is_made_after_it_restarts(
    hub_parts: dict[str, Any], libraries: dict[str, TcpLibrary]
) -> None:
    web_client, receiver, vdx, hub = (
        hub_parts["web"],
        hub_parts["receiver"],
        libraries["VDX"],
        hub_parts["hub"],
    )
    hook = await subscribe(web_client, receiver, "down", failing=10**6)
    status, placed, _ = await web_client.call("POST", "/requests", {**PLACED, "request_id": "W-R"})
    assert status == 201, placed
    asked = await hears(vdx, Event.REQUEST)
    await say(vdx, Event.LOANED, asked.request_id, due_date=DUE)
    status, seen, _ = await web_client.call("GET", "/requests/W-R")
    assert seen["state"] == "Loaned"
    history = [step["state"] for step in seen["history"]]
    # The first change refused (it is in the outbox then), the hub dies before its next try
    # (a fraction of a second later): only the store can bring it back.
    await asyncio.wait_for(receiver.refused["down"].wait(), 60)

    async def recorded() -> None:  # the refusal is in the store (nothing to await from here)
        while True:
            _, page, _ = await web_client.call("GET", f"/webhooks/{hook}/deliveries")
            if any(item["attempts"] >= 1 for item in page["items"]):
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(recorded(), 30)
    receiver.failing["down"] = 0
    hub.kill()
    await hub.start()
    told = await receiver.taken("down", len(history))
    assert [t["state"] for t in told] == history
    status, page, _ = await web_client.call("GET", f"/webhooks/{hook}/deliveries")
    assert page["items"][-1]["attempts"] >= 2, page


async def test_by_default_a_webhook_cannot_make_the_hub_call_inside_its_network() -> None:
    from hub.runtime.webhooks import NotPublic, PublicOnly, refuse_private_literal

    for url in (
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.5:6379/",
        "http://169.254.169.254/latest/meta-data",
        "https://192.168.1.1/",
    ):
        with pytest.raises(NotPublic):
            refuse_private_literal(url)
    refuse_private_literal("https://93.184.215.14/hook")  # a public number
    refuse_private_literal("https://hooks.example.org/rshub")  # a name: checked as it resolves
    with pytest.raises(NotPublic):
        await PublicOnly().resolve("localhost", 80)
