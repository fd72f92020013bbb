"""Re-read records faust took from Kafka but never handed to an agent.

faust (0.15.x) drops a record it has already fetched when the record was read under one
consumer generation and reaches the agent's stream under the next: the stream skips it
without acknowledging it, expecting the rebalance's seek to the committed offsets to bring it
back. When the seek has already happened (records fetched during the assignment's recovery
window), nothing brings it back: the partition's position is past the record, the committed
offset is not, and the record waits for the next rebalance, which may never come. Seen in
the two-worker test: after one worker died, the survivor applied all but one of the dead
worker's pending inbound records, and that partner's message was never answered.

The guard watches for exactly that state and nothing else: the worker idle (no record in
flight, none queued for an agent), and a partition whose position stays ahead of the records
acknowledged on it for two checks in a row. Then it seeks back to the first unacknowledged
offset and logs `consumer.skipped_records`. Re-reading is safe: the transaction engine and
the outbound agent recognise a record they have already applied.

It reads faust's consumer bookkeeping (`_committed_offset`, `_acked`, `_unacked_messages`),
which is why faust is pinned below 0.16 in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import structlog

from hub.kafka import internals

log = structlog.get_logger(__name__)

CHECK_EVERY_S = 2.0  # a record dropped at a rebalance waits two looks: 2-4 s


def _next_unacked(consumer: Any, tp: Any, start: int) -> int:
    """The first offset on `tp` not acknowledged by an agent, counting from the committed
    offset, or from `start` (the partition's first offset, where faust begins a partition
    nobody has committed on yet)."""
    committed = internals.committed_offset(consumer, tp)
    following = start if committed is None else committed
    for offset in sorted(internals.acked_offsets(consumer, tp)):
        if offset == following:
            following += 1
        elif offset > following:
            break
    return int(following)


def _queued(app: Any) -> bool:
    """Any record waiting in an agent's channel queue (taken from Kafka, not yet tracked)."""
    return internals.channel_queues_waiting(app)


class SkippedRecords:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.suspect: dict[Any, tuple[int, int]] = {}

    async def check(self) -> list[tuple[Any, int, int]]:
        """One look; returns the (partition, from, to) it sought back."""
        app = self.app
        consumer = app.consumer
        if app.rebalancing or not consumer.flow_active or internals.has_unacked(consumer):
            self.suspect.clear()
            return []
        if _queued(app):
            self.suspect.clear()
            return []
        changelogs = set(app.tables.changelog_topics)
        streams = [
            tp
            for tp in consumer.assignment()
            if tp.topic not in changelogs and not tp.topic.endswith("__assignor-__leader")
        ]
        uncommitted = [tp for tp in streams if internals.committed_offset(consumer, tp) is None]
        starts = await consumer.earliest_offsets(*uncommitted) if uncommitted else {}
        seen: dict[Any, tuple[int, int]] = {}
        for tp in streams:
            following = _next_unacked(consumer, tp, starts.get(tp) or 0)
            position = await consumer.position(tp)
            if position is not None and position > following:
                seen[tp] = (following, int(position))
        sought = []
        for tp, gap in seen.items():
            if self.suspect.get(tp) == gap:  # no progress since the last look: dropped
                log.warning(
                    "consumer.skipped_records",
                    topic=tp.topic,
                    partition=tp.partition,
                    first=gap[0],
                    position=gap[1],
                )
                await consumer.seek(tp, gap[0])
                sought.append((tp, *gap))
        self.suspect = {tp: gap for tp, gap in seen.items() if (tp, *gap) not in sought}
        return sought


def install(app: Any) -> SkippedRecords:
    guard = SkippedRecords(app)

    @app.timer(CHECK_EVERY_S)
    async def skipped_records_guard() -> None:
        await guard.check()

    return guard
