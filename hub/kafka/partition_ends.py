"""Where a partition ends, asked in the one way that is right on both brokers rshub runs on.

Every reader that needs to know when it has read everything (faust's table recovery, the
operators' index, the followers, the unread count behind the consumer guards, `rshub tail`,
the checkpoints) asks here, never `AIOKafkaConsumer.end_offsets`.

Why: the embedded broker (Tansu 0.6.0) answers ListOffsets "latest" with the base offset + 1
of the batch holding the newest timestamp, not the partition's end: after 20 one-record
batches and 5 ten-record batches it answers 61 where the end is 70 (../shared/KAFKA.md). A
reader that stops there loses the last batch's records; a restarted faust worker recovered its
table without them. Apache Kafka answers ListOffsets right.

What is right on both: the high watermark a Fetch response carries for each partition. So the
end is asked in two steps: ListOffsets "latest" first (exact on Kafka, never past the end on
Tansu, because a batch holds at least one record), then one Fetch from that offset that asks
for one byte with a short wait; its high watermark is the end. On Kafka that Fetch returns
no records (it starts at the end); on Tansu at most the newest batches. The same response
gives the log start offset, which the index uses to notice a replaced broker.

This module reaches into aiokafka's client (`internals.client`) to send the Fetch, because the
consumer API has no call that returns the high watermark without consuming.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.protocol.fetch import FetchRequest

from hub.kafka import internals

P = TypeVar("P", bound=Hashable)  # aiokafka's TopicPartition or faust's TP: (topic, partition)

READ_UNCOMMITTED = 0
# The Fetch's max wait. Kafka answers at once (min bytes 0). Tansu's memory engine leaves a
# partition out of the answer when listing its batches outlasts the wait (a wait of 0 answers
# nothing at all), so a partition left out is asked again with a longer wait.
FIRST_WAIT_MS = 10
LAST_WAIT_MS = 10_240
METADATA_TRIES = 5


@dataclass(frozen=True)
class Bounds:
    """A partition's first offset still held (-1 where the broker does not say) and its end
    (the offset its next record will get)."""

    start: int
    end: int


async def end_offsets(consumer: AIOKafkaConsumer, partitions: Iterable[P]) -> dict[P, int]:
    """The end of each partition, right on Tansu and on Kafka (`consumer` started; it need
    not be assigned the partitions)."""
    return {tp: found.end for tp, found in (await bounds(consumer, partitions)).items()}


async def bounds(consumer: AIOKafkaConsumer, partitions: Iterable[P]) -> dict[P, Bounds]:
    """The log start and end of each partition (see `Bounds`)."""
    asked = list(dict.fromkeys(partitions))
    if not asked:
        return {}
    listed = await consumer.end_offsets([_tp(tp) for tp in asked])
    return await _from_fetch(internals.client(consumer), {tp: listed[_tp(tp)] for tp in asked})


def _tp(tp: Any) -> TopicPartition:
    return tp if isinstance(tp, TopicPartition) else TopicPartition(tp[0], tp[1])


async def _from_fetch(client: Any, listed: Mapping[P, int]) -> dict[P, Bounds]:
    by_leader: dict[int, list[P]] = defaultdict(list)
    for tp in listed:
        by_leader[await _leader(client, _tp(tp))].append(tp)
    answers = await asyncio.gather(
        *(_fetch_one_node(client, node, tps, listed) for node, tps in by_leader.items())
    )
    found: dict[P, Bounds] = {}
    for answer in answers:
        found.update(answer)
    return found


async def _leader(client: Any, tp: TopicPartition) -> int:
    for _ in range(METADATA_TRIES):
        node = client.cluster.leader_for_partition(tp)
        if node is not None and node != -1:
            return int(node)
        await client.force_metadata_update()
    raise kafka_errors.LeaderNotAvailableError(f"no leader for {tp.topic}/{tp.partition}")


async def _fetch_one_node(
    client: Any, node: int, tps: Sequence[P], listed: Mapping[P, int]
) -> dict[P, Bounds]:
    found: dict[P, Bounds] = {}
    wait_ms = FIRST_WAIT_MS
    while True:
        found.update(
            await _fetch(client, node, [tp for tp in tps if tp not in found], listed, wait_ms)
        )
        missing = [tp for tp in tps if tp not in found]
        if not missing:
            return found
        if wait_ms >= LAST_WAIT_MS:
            raise kafka_errors.KafkaError(f"the broker did not answer for {missing}")
        wait_ms = min(LAST_WAIT_MS, wait_ms * 4)


async def _fetch(
    client: Any, node: int, tps: Sequence[P], listed: Mapping[P, int], wait_ms: int
) -> dict[P, Bounds]:
    by_topic: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for tp in tps:
        topic, partition = _tp(tp)
        # One byte: the answer's high watermark is what is wanted, not its records.
        by_topic[topic].append((partition, listed[tp], 1))
    request = FetchRequest(wait_ms, 0, 1, READ_UNCOMMITTED, list(by_topic.items()))
    response = await client.send(node, request)
    asked = {(_tp(tp).topic, _tp(tp).partition): tp for tp in tps}
    found: dict[P, Bounds] = {}
    for topic, partitions in response.topics:
        for partition, error_code, highwater, *rest in partitions:
            answered = asked.get((topic, partition))
            if answered is None:
                continue
            if error_code:
                error = kafka_errors.for_code(error_code)
                raise error(f"end of {topic}/{partition} unknown: {error.__name__}")
            # v5+ responses carry the log start offset after the last stable offset.
            start = rest[1] if response.API_VERSION >= 5 and len(rest) >= 2 else -1
            found[answered] = Bounds(int(start), int(highwater))
    return found
