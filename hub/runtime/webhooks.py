"""Webhooks: a library's integration is told of each state change of its requests by an HTTP
POST to the URLs it subscribed through the JSON API (docs/api.md, Webhooks).

`Webhooks` is a service of the worker (start/stop with the faust app). It follows ill.events,
the public stream of state changes, into the outbox of `hub.runtime.webhook_store` (the
offsets in the same SQLite transaction as the deliveries they produced: nothing lost or
doubled across a restart), and delivers from it:

- signed: `Rshub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
  with the subscription's secret, and `Rshub-Delivery: <delivery id>` (the same on every try
  of one delivery), so a receiver can check the sender, the age and that it has not seen it;
- in order per request: a request's next change waits until its earlier one was accepted;
- retried on the library's `retry_minutes` from the directory (as the hub's own deliveries
  to it would be), then parked and tried every `parked_retry_minutes`, and sent again at
  once by `POST /api/v1/webhooks/{id}/redeliver`;
- visible: `GET /api/v1/webhooks/{id}/deliveries`, `rshub_webhook_*` metrics, `webhook.*`
  log lines (never a secret, never a body).

It follows only while a subscription exists, so a hub without webhooks reads nothing more.
Each worker delivers the subscriptions in its own data folder (made through its API) and
reads every partition of ill.events for them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import socket
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp
import aiohttp.resolver
import structlog
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from connectors.core.directory import Directory
from hub.runtime import metrics
from hub.runtime.outbox import POLL_S, Change, Outbox, read_change
from hub.runtime.outbox import event_ends as event_ends  # the API's, when it starts following
from hub.runtime.outbox import next_try as next_try  # the retry schedule, as it is documented
from hub.runtime.settings import Settings
from hub.runtime.webhook_store import Delivery, Store, Subscription, path_in

log = structlog.get_logger(__name__)

SIGNATURE = "Rshub-Signature"
DELIVERY = "Rshub-Delivery"
KIND = "request.state_changed"
SEND_TIMEOUT_S = 10.0
AT_ONCE = 16  # deliveries in flight at once (each to a different request or receiver)
# Accepted deliveries stay listed (GET /webhooks/{id}/deliveries) this long, then go.
KEEP_DELIVERED = timedelta(days=30)

DELIVERED = Counter(
    "rshub_webhook_deliveries",
    "Webhook deliveries tried, per library and outcome (delivered, failed, parked)",
    ["partner", "outcome"],
    registry=metrics.REGISTRY,
)
WAITING = Gauge(
    "rshub_webhook_deliveries_waiting",
    "Webhook deliveries not yet accepted by their receiver, per library and status "
    "(waiting, parked)",
    ["partner", "status"],
    registry=metrics.REGISTRY,
)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the Rshub-Signature header."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does (docs/api.md): the signature is the body's, made with the secret,
    and not older than `tolerance_s` (a replay of an old delivery is refused; the
    Rshub-Delivery id tells a repeat within the window)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookEvent(BaseModel):
    """The body of a webhook delivery (the OpenAPI document's `webhooks` is generated from
    it): the request's change as its library sees it; no notes, no patron, no other library."""

    model_config = ConfigDict(title="WebhookEvent")

    type: Literal["request.state_changed"]
    delivery_id: str = Field(description="also the Rshub-Delivery header; the same on each try")
    subscription_id: str
    request_id: str | None = Field(description="the library's own id for the request")
    transaction_id: str
    event: str = Field(description="the canonical event or the hub's input that changed it")
    from_state: str
    state: str
    at: datetime = Field(description="when the hub applied the change")


def render(subscription: Subscription, change: Change, delivery_id: str) -> bytes:
    """A delivery's body."""
    return (
        WebhookEvent(
            type=KIND,
            delivery_id=delivery_id,
            subscription_id=subscription.id,
            request_id=change.request_id,
            transaction_id=change.transaction_id,
            event=change.event,
            from_state=change.from_state,
            state=change.state,
            at=change.at,
        )
        .model_dump_json()
        .encode()
    )


class NotPublic(OSError):
    """A webhook's address is not on the public internet (RSHUB_WEBHOOK_ALLOW_PRIVATE)."""


def _public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


def refuse_private_literal(url: str) -> None:
    """A URL naming a loopback, private or link-local address by number is refused (names are
    checked as they resolve: PublicOnly)."""
    host = (urllib.parse.urlsplit(url).hostname or "").strip("[]")
    try:
        public = _public(host)
    except ValueError:
        return  # a name, not a number
    if not public:
        raise NotPublic(f"{host} is not a public address (RSHUB_WEBHOOK_ALLOW_PRIVATE)")


class PublicOnly(aiohttp.resolver.ThreadedResolver):
    """Resolves as usual and keeps only public addresses, at connect time (a name that
    resolved to a public address when it was checked cannot turn private after)."""

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> Any:
        found = await super().resolve(host, port, family)
        kept = [entry for entry in found if _public(entry["host"])]
        if not kept:
            raise NotPublic(f"{host} resolves to no public address (RSHUB_WEBHOOK_ALLOW_PRIVATE)")
        return kept


def _general(failure: BaseException) -> str:
    """A failure to reach a receiver, as the library may read it."""
    if isinstance(failure, TimeoutError | asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(failure, aiohttp.ClientConnectorError | OSError):
        return "could not connect"
    return f"could not deliver ({type(failure).__name__})"


class Webhooks(Outbox[Store, Delivery]):
    events = "webhook"
    send_failed = "webhook.deliver_failed"
    client_id = "rshub-webhooks"
    batch = 500
    at_once = AT_ONCE
    keep = KEEP_DELIVERED
    waiting = WAITING
    outcomes = DELIVERED

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        bootstrap: str,
        *,
        store_path: Path | None = None,
        poll_s: float = POLL_S,
        **kwargs: Any,
    ) -> None:
        path = store_path or path_in(settings.data_dir)
        super().__init__(directory, bootstrap, Store, path, poll_s, **kwargs)
        self.enabled = settings.api_enabled  # subscriptions are made through the API only
        self.allow_private = settings.webhook_allow_private
        self.session: aiohttp.ClientSession | None = None

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.session is not None:
            await self.session.close()

    async def _take(self, store: Store, records: list[Any]) -> tuple[int, bool]:
        read = [(r.partition, r.offset, read_change(r.value)) for r in records]
        added = await asyncio.to_thread(store.take, read, render, time.time())
        return added or 0, added is not None  # None: the last subscription went meanwhile

    async def _send(self, store: Store, delivery: Delivery) -> None:
        # The store's calls wait for SQLite's lock (the API writes it too): off the loop.
        secret = await asyncio.to_thread(store.secret, delivery.subscription)
        sub = await asyncio.to_thread(store.subscription, None, delivery.subscription)
        if secret is None or sub is None:
            return  # removed while it waited: its deliveries went with it
        if self.session is None:
            resolver = None if self.allow_private else PublicOnly()
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
        headers = {
            "Content-Type": "application/json",
            DELIVERY: delivery.id,
            SIGNATURE: sign(secret, int(time.time()), delivery.body),
            "User-Agent": "rshub-webhooks",
        }
        error: str | None = None
        try:
            if not self.allow_private:
                refuse_private_literal(sub.url)
            async with self.session.post(
                sub.url,
                data=delivery.body,
                headers=headers,
                allow_redirects=False,  # a receiver that moved says so by subscribing anew
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S),
            ) as reply:
                await reply.content.read(4096)  # what it says back is not kept
                if not 200 <= reply.status < 300:
                    error = f"HTTP {reply.status}"
        except NotPublic as failure:
            error = str(failure)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as failure:
            # Said generally: the library reads this, and the details of a failure to
            # connect would map what answers where.
            error = _general(failure)
        at, tried = datetime.now(UTC), delivery.attempts + 1
        said = log.bind(
            partner=delivery.partner, subscription=delivery.subscription, delivery=delivery.id
        )
        if error is None:
            await asyncio.to_thread(store.delivered, delivery.id, at)
            DELIVERED.labels(delivery.partner, "delivered").inc()
            txn, state = delivery.transaction_id, delivery.state
            said.info("webhook.delivered", transaction_id=txn, state=state, attempts=tried)
            return
        failed = functools.partial(store.failed, delivery.id, at, error)
        await self._again(delivery.partner, tried, failed, said.bind(error=error))
