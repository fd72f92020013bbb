"""Every use of a dependency's private internals, in one place: aiokafka's and faust's (and
mode's) attributes and methods that are not their public API, each behind a function named
for what the hub needs of it.

Written against the versions pyproject.toml pins: aiokafka 0.14 (`>=0.14,<0.15`) and
faust-streaming 0.15 (`>=0.15.3,<0.16`). When either is upgraded, this module is what to
read again: tests/test_architecture.py keeps private attribute access on their objects out
of every other module. (Faust's consumer thread is also extended by subclassing its
private methods; that subclass lives in hub/kafka/fetching.py and calls no more than these.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust.tables
from aiokafka import AIOKafkaConsumer, TopicPartition

# -- aiokafka ---------------------------------------------------------------------------------


def client(consumer: AIOKafkaConsumer) -> Any:
    """The consumer's cluster client (aiokafka has no public handle on it): to send a request
    of our own (hub.kafka.partition_ends), refresh metadata, or subscribe to a new topic."""
    return consumer._client


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster's metadata now (a topic created after the consumer started)."""
    await consumer._client.force_metadata_update()


async def add_topic(consumer: AIOKafkaConsumer, name: str) -> None:
    """Ask the client to track `name`'s metadata (waits until the broker has it)."""
    await consumer._client.add_topic(name)


def set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """How long each fetch may wait at the broker, for a consumer not yet started (aiokafka
    reads the attribute when start() builds its Fetcher; faust offers no setting)."""
    consumer._fetch_max_wait_ms = wait_ms


def fetcher(consumer: AIOKafkaConsumer) -> Any:
    """The started consumer's Fetcher, or None before start()."""
    return consumer._fetcher


def set_fetcher_wait(found: Any, wait_ms: int) -> None:
    """The wait of the next fetch a started consumer's Fetcher sends."""
    found._fetch_max_wait_ms = wait_ms


def set_prefetch_backoff(found: Any, seconds: float) -> None:
    found._prefetch_backoff = seconds


def fetched_records(found: Any) -> Any:
    """What the Fetcher holds, fetched and not yet taken by the application."""
    return found._records


FetchHandler = Callable[[Any, int, Any], Awaitable[bool]]


def wrap_fetch_responses(found: Any, wrap: Callable[[FetchHandler], FetchHandler]) -> None:
    """Put `wrap` around the Fetcher's handling of each fetch request and its response
    (aiokafka has no hook for fetch responses)."""
    found._proc_fetch_request = wrap(found._proc_fetch_request)


def position(kafka: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Where the consumer reads `tp` next, or None when it has no position yet."""
    try:
        return int(kafka._subscription.subscription.assignment.state_value(tp).position)
    except Exception:  # not assigned, or no position yet
        return None


# -- faust's consumer (mode services around aiokafka) ------------------------------------------


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset faust last committed on `tp` (None: nobody committed on it)."""
    found = consumer._committed_offset.get(tp)
    return None if found is None else int(found)


def acked_offsets(consumer: Any, tp: Any) -> set[int]:
    """The offsets on `tp` agents acknowledged and faust has not committed past yet."""
    return set(getattr(consumer, "_acked", {}).get(tp, ()))


def read_offset(consumer: Any, tp: Any) -> int | None:
    return consumer._read_offset.get(tp)


def has_unacked(consumer: Any) -> bool:
    """Whether any record handed to an agent is not acknowledged yet."""
    return bool(consumer._unacked_messages)


def worker_consumer(consumer: Any) -> AIOKafkaConsumer:
    """The aiokafka consumer inside faust's consumer thread."""
    found: AIOKafkaConsumer = consumer._thread._ensure_consumer()
    return found


def active_partitions(consumer: Any) -> set[Any] | None:
    return getattr(consumer, "_active_partitions", None)


def actor_crashed(agent: Any) -> bool:
    """Whether one of a faust agent's actors has crashed (faust restarts it)."""
    return any(actor.crashed for actor in list(agent._actors))


def channel_queues_waiting(app: Any) -> bool:
    """Whether a record waits in an agent's channel queue (taken from Kafka, not yet
    tracked by the consumer)."""
    for channel in list(app.topics._topics):
        queue = getattr(channel, "_queue", None)
        if queue is not None and queue.qsize():
            return True
    return False


# -- faust's table manager ---------------------------------------------------------------------


class TableManager(faust.tables.TableManager):
    """faust's table manager without the second it sleeps at start (faust 0.15
    `TableManager.on_start`), which lets an application define tables after it started. The
    hub defines every table in `create_app`, before the app starts, so the second is only a
    delay: one more for every worker start and restart. The rest is faust's start as it is
    (`_update_channels` is private)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
