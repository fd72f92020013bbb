"""A step taken back by staff rerouting is never sent; the Cancel that takes it back goes
only if the partner got the step (`Delivery.withdraws`, read by the outbound agent)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

from connectors.core.contract import Attempt
from connectors.core.directory import Partner
from connectors.core.model import Event, Message
from connectors.core.records import Delivery
from hub.kafka.steplog import Consumed
from hub.runtime.outbound_agent import OutboundAgent
from hub.runtime.partner_queues import PartnerQueues
from tests.test_lifecycle import DIRECTORY


class Partners:
    """A sender whose partner takes each body once `gate` is open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.bodies: list[bytes] = []
        self.trying = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        self.trying.set()
        await self.gate.wait()
        self.bodies.append(body)
        return Attempt(ok=True, retryable=False, detail="200")


class Inputs:
    def __init__(self, commands: Sequence[Delivery]) -> None:
        self.queue: asyncio.Queue[Consumed | None] = asyncio.Queue()
        self.count = 0
        for offset, command in enumerate(commands):
            self.add(offset, command)
        self.acked: list[int] = []

    def add(self, offset: int, command: Delivery) -> None:
        value = command.model_dump_json().encode()
        self.count += 1
        self.queue.put_nowait(Consumed("ill.outbound.x", 0, offset, "t", value, {}, None))

    async def records(self) -> AsyncIterator[Consumed]:
        while (record := await self.queue.get()) is not None:
            yield record

    async def ack(self, consumed: Consumed) -> None:
        self.acked.append(consumed.offset)


class Results:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    async def write(self, outputs: Sequence[Any]) -> None:
        self.results += [o.value for o in outputs if o.topic == "ill.delivery"]


class Table:
    def __init__(self) -> None:
        self.marks: dict[str, list[str]] = {}

    def get(self, transaction_id: str) -> list[str]:
        return self.marks.get(transaction_id, [])

    async def set(self, partition: int, transaction_id: str, done: list[str]) -> None:
        self.marks[transaction_id] = done


def command(command_id: str, event: Event, withdraws: Sequence[str] = ()) -> Delivery:
    return Delivery(
        command_id=command_id,
        transaction_id="t",
        recipient="L1",
        protocol="x",
        attempt=1,
        message=Message(event=event, sender="B", request_id="t.1"),
        withdraws=list(withdraws),
    )


def agent(partners: Partners, per_partner: int = 1) -> tuple[OutboundAgent, Results]:
    codec = SimpleNamespace(
        not_applicable=frozenset(),
        content_type="text/plain",
        render=lambda outgoing: outgoing.message.event.value.encode(),
    )
    connector: Any = SimpleNamespace(name="x", codec=codec)
    settings: Any = SimpleNamespace(outbound_backoff_s=0.0, outbound_retries=1)
    results: Any = Results()
    queues = PartnerQueues(per_partner=per_partner, total=10)

    async def announce(symbol: str) -> None: ...

    made = OutboundAgent(
        connector, partners, DIRECTORY, settings, results, Table(), queues, announce
    )
    return made, results


async def finish(made: OutboundAgent, inputs: Inputs, task: asyncio.Task[None]) -> None:
    """Every queued job done, then the end of the input (which stops the agent)."""
    while len(inputs.acked) < inputs.count:
        await made.queues.drain()
        await asyncio.sleep(0)  # let the reader submit what it read
    inputs.queue.put_nowait(None)
    await task


async def test_a_request_not_yet_tried_is_not_sent_nor_cancelled() -> None:
    partners = Partners()
    made, results = agent(partners)
    # An earlier step to L1 (another transaction) holds its only place: the Request waits.
    inputs = Inputs(
        [
            command("other", Event.LENDER_NOTE).model_copy(update={"transaction_id": "u"}),
            command("req", Event.REQUEST),
            command("cancel", Event.CANCEL, withdraws=["req"]),
        ]
    )
    task = asyncio.create_task(made.run(inputs))
    await partners.trying.wait()
    partners.gate.set()
    await finish(made, inputs, task)
    assert partners.bodies == [b"LenderNotification"]
    outcomes = [(r["command_id"], r["outcome"]) for r in results.results]
    assert sorted(outcomes) == [
        ("cancel", "withdrawn"),
        ("other", "sent"),
        ("req", "withdrawn"),
    ]
    assert set(inputs.acked) == {0, 1, 2}


async def test_a_request_in_flight_when_withdrawn_is_cancelled_once_it_got_through() -> None:
    partners = Partners()
    made, results = agent(partners)
    inputs = Inputs([command("req", Event.REQUEST)])
    task = asyncio.create_task(made.run(inputs))
    await partners.trying.wait()  # the partner is being sent the Request
    inputs.add(1, command("cancel", Event.CANCEL, withdraws=["req"]))
    while inputs.queue.qsize():
        await asyncio.sleep(0)  # the Cancel is read while the Request is under way
    partners.gate.set()
    await finish(made, inputs, task)
    assert partners.bodies == [b"Request", b"Cancel"]
    assert [json.dumps(r["outcome"]) for r in results.results] == ['"sent"', '"sent"']
