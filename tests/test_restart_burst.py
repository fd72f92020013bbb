"""A hub killed right after a burst of steps, whose transaction rows its producer wrote
several to a batch, comes back with every row (issue 23, point 1), twice in a row.

The kill comes once the steps are applied and their inbound offsets committed: what the
restarted worker knows of those transactions is then only what its table recovers from the
changelog. A recovery that stops short of the changelog's end (it took the embedded broker's
ListOffsets answer) loses rows, and the lender's answers to those requests are refused.

The loss itself is reproduced by tests/test_table_recovery.py, which controls the batching;
here the hub writes its rows as it does, and on the code before the fix this test passed as
well (the hub's last changelog writes after a burst were not the multi-record batch): it
guards the hub as a whole, not the one fix.

A call the hub was making to a partner when it was killed is made again after the restart,
with the same content (the outbound agent's re-send, issue 23.6): a lender slow to answer
(`delay`, or a loaded machine) gets some requests twice, and a repeat can come when the next
round's requests are awaited. The libraries here behave as real ones do: a message they have
had already (same content id) is no new step; SOUTH answers a repeated request it has
answered with the very bytes it sent then, which the hub takes as a duplicate. (Answering it
with a new ItemShipped, whose DateShipped is the time of writing, is another message: the
hub rightly refuses it, "Loaned ... not allowed in state Loaned".)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.core.model import Event, Message
from connectors.simulator import Library
from hub.kafka import partition_ends
from tests.test_e2e_ncip import DUE, ask

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


async def new_message(
    lib: Library, had: set[str], again: Callable[[Message], Awaitable[None]] | None = None
) -> Message:
    """The next message `lib` gets that it has not had before (by content id); a repeat is
    handed to `again`."""
    while True:
        message = await lib.next()
        if message.message_id not in had:
            had.add(message.message_id)
            return message
        if again is not None:
            await again(message)


async def post(lib: Library, body: bytes) -> None:
    status, answer = await lib.post(body)
    assert status == 200 and answer.ok, (status, answer)


# 1.5 s: the second wave of SOUTH's requests (the hub makes a few calls to a partner at once)
# is still being answered at the kill, and is sent again after the restart.
@pytest.mark.parametrize("delay", [0.0, 1.5], ids=["prompt-lender", "slow-lender"])
async def test_every_row_comes_back_after_a_kill_right_after_a_burst(
    hub, libraries, bootstrap, delay: float
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    south.delay = delay
    asked_before: set[str] = set()  # content ids of the requests SOUTH had
    told_before: set[str] = set()  # of what NORTH was told
    shipped: dict[str, bytes] = {}  # SOUTH's answer to each request, as it sent it

    async def ship(request_id: str) -> None:
        loaned = Message(
            event=Event.LOANED, request_id=request_id, item_id=f"I-{request_id}", due_date=DUE
        )
        shipped[request_id] = south.encode(loaned)
        await post(south, shipped[request_id])

    async def ship_again(request: Message) -> None:
        if request.request_id in shipped:  # a repeat: the same answer again, a duplicate
            await post(south, shipped[request.request_id])

    for round_ in range(2):
        ids = [f"B{round_}-{n}" for n in range(BURST)]
        await asyncio.gather(*(ask(north, request_id) for request_id in ids))
        asked = [(await new_message(south, asked_before, ship_again)) for _ in ids]
        assert {m.event for m in asked} == {Event.REQUEST}
        await committed_to_end(bootstrap, hub.env["RSHUB_APP_ID"], "ill.inbound")
        hub.kill()
        await hub.start()
        await asyncio.gather(*(ship(m.request_id) for m in asked))
        told = [(await new_message(north, told_before)) for _ in ids]
        assert {(m.event, m.request_id) for m in told} == {(Event.LOANED, i) for i in ids}
    # Nothing twice: what is left is only calls made again after a kill, same content.
    for lib, had in ((north, told_before), (south, asked_before)):
        while not lib.received.empty():
            left = lib.received.get_nowait()
            assert left.message_id in had, (lib.symbol, left)
