"""A hub killed right after a burst of steps, whose transaction rows its producer wrote
several to a batch, comes back with every row (issue 23, point 1), twice in a row.

The kill comes once the steps are applied and their inbound offsets committed: what the
restarted worker knows of those transactions is then only what its table recovers from the
changelog. A recovery that stops short of the changelog's end (it took the embedded broker's
ListOffsets answer) loses rows, and the lender's answers to those requests are refused.

The loss itself is reproduced by tests/test_table_recovery.py, which controls the batching;
here the hub writes its rows as it does, and on the code before the fix this test passed as
well (the hub's last changelog writes after a burst were not the multi-record batch): it
guards the hub as a whole, not the one fix."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.core.model import Event
from hub.kafka import partition_ends
from tests.test_e2e_ncip import DUE, ask, say

pytestmark = pytest.mark.kafka

BURST = 12


@pytest.fixture
def hub_env() -> dict[str, str]:
    # The producer waits a little to batch, as under load: rows go several to a batch.
    return {"RSHUB_PRODUCER_LINGER_MS": "20"}


async def committed_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Until the consumer group has committed every record of `topic` (a deadline)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await partition_ends.end_offsets(consumer, tps)
        deadline = time.monotonic() + 60
        for tp in tps:
            while ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                assert time.monotonic() < deadline, f"{group} did not commit {tp}"
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def test_every_row_comes_back_after_a_kill_right_after_a_burst(
    hub, libraries, bootstrap
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    for round_ in range(2):
        ids = [f"B{round_}-{n}" for n in range(BURST)]
        await asyncio.gather(*(ask(north, request_id) for request_id in ids))
        asked = [(await south.next()) for _ in ids]
        assert {m.event for m in asked} == {Event.REQUEST}
        await committed_to_end(bootstrap, hub.env["RSHUB_APP_ID"], "ill.inbound")
        hub.kill()
        await hub.start()
        await asyncio.gather(
            *(
                say(south, Event.LOANED, m.request_id, item_id=f"I-{m.request_id}", due_date=DUE)
                for m in asked
            )
        )
        told = [(await north.next()) for _ in ids]
        assert {(m.event, m.request_id) for m in told} == {(Event.LOANED, i) for i in ids}
    assert north.received.empty() and south.received.empty()  # nothing twice
