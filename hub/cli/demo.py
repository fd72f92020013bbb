"""`rshub demo`: the embedded broker, the hub and three simulated NCIP libraries; one complete
loan and one request that the first lender cannot fill, each step printed as it happens."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.core.model import Bibliographic, Event, Message, Reason, RequestFormat
from connectors.ncip import tables
from connectors.simulator import Library, directory_yaml
from hub.cli.process import HubProcess
from hub.kafka import topics
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
from hub.runtime.settings import Settings

BOOKS = [
    Bibliographic(
        title="The Name of the Rose",
        author="Eco, Umberto",
        isbn="9780151446476",
        bibliographic_level="Book",
    ),
    Bibliographic(
        title="Gödel, Escher, Bach",
        author="Hofstadter, Douglas R.",
        isbn="9780465026562",
        bibliographic_level="Book",
    ),
]


def _name(event: Event) -> str:
    name, notice = tables.ENCODE[event]
    return f"{name} ({notice})" if notice else name


class Script:
    def __init__(self, libraries: dict[str, Library]) -> None:
        self.libraries = libraries

    async def say(
        self, symbol: str, event: Event, request_id: str, refused: bool = False, **fields: Any
    ) -> None:
        """`refused`: the step is one the hub must refuse (the demo shows its answer)."""
        status, response = await self.libraries[symbol].send(
            Message(event=event, request_id=request_id, **fields)
        )
        accepted = status == 200 and response.ok
        verdict = "accepted" if accepted else f"REFUSED: {'; '.join(response.errors)}"
        print(
            f"  {symbol:<6} -> hub     {_name(event):<42} {request_id or fields.get('item_id')}"
            f"  [{verdict}]",
            flush=True,
        )
        if accepted == refused:
            wanted = "refused" if refused else "accepted"
            raise RuntimeError(f"the hub should have {wanted} {event.value} from {symbol}")

    async def hears(self, symbol: str, expected: Event) -> Message:
        message = await self.libraries[symbol].next(timeout=60)
        print(
            f"  hub    -> {symbol:<7} {_name(message.event):<42} {message.request_id}", flush=True
        )
        if message.event is not expected:
            raise RuntimeError(f"{symbol} got {message.event.value}, expected {expected.value}")
        return message


async def _loan(
    script: Script, lender: str, request_id: str, book: Bibliographic, refusing: str | None = None
) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=28)
    await script.say(
        "NORTH",
        Event.REQUEST,
        request_id,
        patron_id="patron-42",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=book,
    )
    if refusing:
        asked = await script.hears(refusing, Event.REQUEST)
        await script.say(refusing, Event.UNFILLED, asked.request_id, reason=Reason.from_code(10))
    asked = await script.hears(lender, Event.REQUEST)
    item = f"{lender}-{secrets.token_hex(3)}"
    await script.say(lender, Event.LOANED, asked.request_id, item_id=item, due_date=due)
    await script.hears("NORTH", Event.LOANED)
    await script.say("NORTH", Event.RECEIVED, request_id, item_id=item)
    await script.hears(lender, Event.RECEIVED)
    await script.say("NORTH", Event.SHIPPED_RETURN, request_id, item_id=item)
    await script.hears(lender, Event.SHIPPED_RETURN)
    await script.say(lender, Event.LOAN_COMPLETED, asked.request_id, item_id=item)
    await script.hears("NORTH", Event.LOAN_COMPLETED)


async def _demo(settings: Settings) -> int:
    broker = None
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        print("starting the embedded Kafka-protocol broker (Tansu) ...", flush=True)
        broker = EmbeddedBroker()
        bootstrap = broker.start()
    hub = None
    libraries = {
        symbol: Library(symbol, agency, secrets.token_urlsafe(16))
        for symbol, agency in (
            ("NORTH", "01NORTH_INST||MAIN"),
            ("SOUTH", "01SOUTH_INST||MAIN"),
            ("EAST", "01EAST_INST||CENTRAL"),
        )
    }
    try:
        await wait_for_metadata(bootstrap)
        await topics.ensure(bootstrap, topics.load())
        for library in libraries.values():
            await library.start()
        workdir = Path(tempfile.mkdtemp(prefix="rshub-demo-"))
        directory = workdir / "consortium.yaml"
        directory.write_text(directory_yaml(list(libraries.values()), ["SOUTH", "EAST", "NORTH"]))
        env = {f"RSHUB_SECRET_{s}": lib.secret for s, lib in libraries.items()}
        hub = HubProcess(bootstrap, directory, workdir, env)
        print(f"starting the hub (log: {hub.log}) ...", flush=True)
        await hub.start()
        for library in libraries.values():
            library.hub_url = hub.url
        script = Script(libraries)
        print("\n1. A complete loan: NORTH borrows from SOUTH\n", flush=True)
        await _loan(script, "SOUTH", "NORTH-1001", BOOKS[0])
        print(
            "\n2. SOUTH cannot supply (not on shelf): the hub asks EAST, the next lender\n",
            flush=True,
        )
        await _loan(script, "EAST", "NORTH-1002", BOOKS[1], refusing="SOUTH")
        print(
            "\n3. A step out of turn: NORTH says it received a loan that is already completed."
            "\n   The hub refuses it with an NCIP Problem and records a dead letter.\n",
            flush=True,
        )
        await script.say("NORTH", Event.RECEIVED, "NORTH-1001", refused=True, item_id="none")
        print(
            "\ndone: both loans completed, the step out of turn refused. Every step is on"
            " ill.events and ill.audit, the refusal on ill.deadletter.",
            flush=True,
        )
        return 0
    finally:
        if hub:
            hub.stop()
        for library in libraries.values():
            await library.stop()
        if broker:
            broker.stop()


def run_demo(settings: Settings) -> int:
    return asyncio.run(_demo(settings))
