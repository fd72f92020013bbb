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
import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp
import aiohttp.resolver
import structlog
from mode import Service
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from connectors.core.directory import Directory
from connectors.core.topics import Topic
from hub.kafka import followers, partition_ends
from hub.runtime import metrics
from hub.runtime.settings import Settings
from hub.runtime.webhook_store import Change, Delivery, Store, Subscription, path_in

log = structlog.get_logger(__name__)

SIGNATURE = "Rshub-Signature"
DELIVERY = "Rshub-Delivery"
KIND = "request.state_changed"
DEFAULT_RETRY_MINUTES = (5.0, 10.0, 10.0, 30.0, 60.0)
DEFAULT_PARKED_MINUTES = 60.0
POLL_S = 0.5  # how soon a redelivery asked through the API (another connection) is seen
SEND_TIMEOUT_S = 10.0
AT_ONCE = 16  # deliveries in flight at once (each to a different request or receiver)
FETCH_WAIT_MS = 500
RETRY_AFTER_FAILURE_S = 5.0
# Accepted deliveries stay listed (GET /webhooks/{id}/deliveries) this long, then go.
KEEP_DELIVERED = timedelta(days=30)
PRUNE_EVERY_S = 3600.0

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


def read_change(value: bytes | None) -> Change | None:
    """An ill.events record as a change to tell its borrower, or None (a refusal or a
    delivery note changes no state; a record of an older hub names no borrower)."""
    try:
        found = json.loads(value or b"")
        if found.get("kind") != "transition" or not found.get("borrower"):
            return None
        return Change(
            event_id=str(found["event_id"]),
            partner=str(found["borrower"]),
            transaction_id=str(found["transaction_id"]),
            request_id=found.get("request_id"),
            event=str(found["event"]),
            from_state=str(found["from_state"]),
            state=str(found["to_state"]),
            at=datetime.fromisoformat(str(found["at"])).astimezone(UTC),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # not ours to judge: the index and monitoring read the same stream


async def event_ends(bootstrap: str) -> dict[int, int]:
    """The end of each ill.events partition now: where a first subscription starts."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="rshub-webhooks-ends")
    await consumer.start()
    try:
        await consumer.topics()
        wanted = [
            TopicPartition(Topic.EVENTS, p)
            for p in sorted(consumer.partitions_for_topic(Topic.EVENTS) or ())
        ]
        ends = await partition_ends.end_offsets(consumer, wanted)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


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


class Webhooks(Service):
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
        super().__init__(**kwargs)
        self.enabled = settings.api_enabled  # subscriptions are made through the API only
        self.allow_private = settings.webhook_allow_private
        self.directory, self.bootstrap = directory, bootstrap
        self.path = store_path or path_in(settings.data_dir)
        self.poll_s = poll_s
        self.woken = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.consumer: Any = None
        self.stores: list[Store] = []
        self.pruned = 0.0

    def _store(self) -> Store:
        store = Store(self.path)
        self.stores.append(store)
        return store

    async def on_shutdown(self) -> None:
        # After the tasks are stopped: none is using a connection or the consumer.
        if self.consumer is not None:
            await self.consumer.stop()
        if self.session is not None:
            await self.session.close()
        for store in self.stores:
            store.close()

    # -- following ill.events ------------------------------------------------------------------

    @Service.task
    async def _follow(self) -> None:
        if not self.enabled:
            return
        store: Store | None = None
        expected: dict[int, int] | None = None
        while not self.should_stop:
            if store is None and not self.path.exists():  # no subscription was made here
                await self.sleep(self.poll_s)
                continue
            try:
                # Inside: a store that cannot be opened or read (disk, permissions) stops
                # webhooks for a while, never the worker (a task that raises ends the app).
                if store is None:
                    store = self._store()
                stored = await asyncio.to_thread(store.offsets)
                if not stored:
                    await self._unfollow()
                    expected = None
                    await self.sleep(self.poll_s)
                    continue
                expected = await self._read(store, stored, expected)
            except Exception as error:  # the broker went away, the disk is full: say so, and
                # read again from what the store holds (nothing read since is lost)
                log.error("webhook.follow_failed", error=f"{type(error).__name__}: {error}")
                await self._unfollow()
                expected = None
                await self.sleep(RETRY_AFTER_FAILURE_S)

    async def _unfollow(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def _read(
        self, store: Store, stored: dict[int, int], expected: dict[int, int] | None
    ) -> dict[int, int] | None:
        """One fetch into the outbox; the offsets the store now holds (as far as known)."""
        from aiokafka import TopicPartition

        if self.consumer is None:
            self.consumer = await self._consumer()
            expected = None
        if stored != expected:  # first read, or the API started or restarted the follower
            for partition, offset in stored.items():
                self.consumer.seek(TopicPartition(Topic.EVENTS, partition), offset)
            expected = dict(stored)
        batch = await self.consumer.getmany(timeout_ms=FETCH_WAIT_MS * 2, max_records=500)
        read = [
            (record.partition, record.offset, read_change(record.value))
            for records in batch.values()
            for record in records
        ]
        if not read:
            return expected
        added = await asyncio.to_thread(store.take, read, render, time.time())
        if added is None:
            return None
        for partition, offset, _ in read:
            expected[partition] = max(expected.get(partition, 0), offset + 1)
        if added:
            self.woken.set()
        return expected

    async def _consumer(self) -> Any:
        consumer = await followers.positioned_reader(
            self.bootstrap, Topic.EVENTS, "rshub-webhooks", FETCH_WAIT_MS
        )
        log.info("webhook.following", path=str(self.path))
        return consumer

    # -- delivering ------------------------------------------------------------------------------

    @Service.task
    async def _deliver(self) -> None:
        if not self.enabled:
            return
        store: Store | None = None
        while not self.should_stop:
            if store is None and not self.path.exists():
                await self.sleep(self.poll_s)
                continue
            try:
                if store is None:
                    store = self._store()
                wait = await self._deliver_due(store)
            except Exception as error:  # the store cannot be written: nothing is marked, so
                # what was sent is sent again later under the same delivery id
                log.error("webhook.deliver_failed", error=f"{type(error).__name__}: {error}")
                wait = RETRY_AFTER_FAILURE_S
            if wait is None:
                continue  # each request's next change may be due now
            self.woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), wait)

    async def _deliver_due(self, store: Store) -> float | None:
        """Sends what is due; how long to wait before looking again (None: at once)."""
        now = time.time()
        if now - self.pruned > PRUNE_EVERY_S:
            self.pruned = now
            await asyncio.to_thread(store.prune, datetime.now(UTC) - KEEP_DELIVERED)
        due = await asyncio.to_thread(store.due, now)
        if due:
            gate = asyncio.Semaphore(AT_ONCE)
            await asyncio.gather(*(self._send(store, d, gate) for d in due))
        await asyncio.to_thread(self._count, store)
        if due:
            return None
        coming = await asyncio.to_thread(store.next_due)
        return self.poll_s if coming is None else min(self.poll_s, max(0.0, coming - now))

    def _count(self, store: Store) -> None:
        WAITING.clear()
        for (partner, status), count in store.counts().items():
            WAITING.labels(partner, status).set(count)

    async def _send(self, store: Store, delivery: Delivery, gate: asyncio.Semaphore) -> None:
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
        async with gate:
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
        at = datetime.now(UTC)
        if error is None:
            await asyncio.to_thread(store.delivered, delivery.id, at, "")
            DELIVERED.labels(delivery.partner, "delivered").inc()
            log.info(
                "webhook.delivered",
                partner=delivery.partner,
                subscription=delivery.subscription,
                delivery=delivery.id,
                transaction_id=delivery.transaction_id,
                state=delivery.state,
                attempts=delivery.attempts + 1,
            )
            return
        due, parked = self._next_try(delivery, time.time())
        await asyncio.to_thread(store.failed, delivery.id, at, error, due, parked)
        DELIVERED.labels(delivery.partner, "parked" if parked else "failed").inc()
        log.warning(
            "webhook.failed",
            partner=delivery.partner,
            subscription=delivery.subscription,
            delivery=delivery.id,
            error=error,
            attempts=delivery.attempts + 1,
            parked=parked,
            again_in_s=round(due - time.time(), 1),
        )

    def _next_try(self, delivery: Delivery, now: float) -> tuple[float, bool]:
        partner = self.directory.partner(delivery.partner)
        schedule = tuple(partner.retry_minutes) if partner else DEFAULT_RETRY_MINUTES
        parked = partner.parked_retry_minutes if partner else DEFAULT_PARKED_MINUTES
        return next_try(delivery.attempts + 1, schedule, parked, now)


def next_try(
    tried: int, schedule: tuple[float, ...], parked_minutes: float, now: float
) -> tuple[float, bool]:
    """When a delivery tried `tried` times is tried again, and whether it is parked: the
    library's retry schedule (the directory's retry_minutes), then every parked_minutes."""
    if tried <= len(schedule):
        return now + schedule[tried - 1] * 60.0, False
    return now + parked_minutes * 60.0, True
