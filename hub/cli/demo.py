"""`rshub demo`: the embedded broker, the hub and three simulated libraries (NORTH borrows in
the protocol of --borrower, SOUTH and EAST lend in that of --lender; NCIP by default); one
complete loan and one request that the first lender cannot fill, each step printed as it
happens. The hub's log and the directory live in a temporary folder removed at the end (the
log's tail is printed first if the demo fails)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from connectors.core.connections import free_port
from connectors.core.directory import Partner
from connectors.core.model import Bibliographic, Event, Message, Reason, RequestFormat
from connectors.ncip import tables
from connectors.simulator import AnyLibrary, HubAddress, library_for
from hub.cli.process import HubProcess
from hub.kafka import topics
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
from hub.runtime import logs
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


# --borrower/--lender: what the simulated libraries speak (the ISO 18626 version, too).
PROTOCOLS: dict[str, tuple[str, dict[str, object]]] = {
    "ncip": ("ncip", {}),
    "iso18626": ("iso18626", {}),
    "iso18626-2021": ("iso18626", {"options": {"version": "2021-2"}}),
    "iso10161": ("iso10161", {"addresses": ["127.0.0.1/32"]}),
    "slnp": ("slnp", {"addresses": ["127.0.0.1/32"]}),
}


def _name(event: Event, protocol: str) -> str:
    """The step, with NCIP's message name where the library speaks NCIP."""
    if protocol == "ncip" and event in tables.ENCODE:
        name, notice = tables.ENCODE[event]
        return f"{name} ({notice})" if notice else name
    return event.value


def _partner(symbol: str, agency: str, choice: str, lends: bool) -> dict[str, object]:
    protocol, extra = PROTOCOLS[choice]
    port = free_port()
    endpoint = (
        f"http://127.0.0.1:{port}/{protocol}"
        if protocol in ("ncip", "iso18626")
        else f"{'tcp' if protocol == 'iso10161' else 'slnp'}://127.0.0.1:{port}"
    )
    entry: dict[str, object] = {
        "symbol": symbol,
        "name": f"{symbol.title()} Library",
        "protocol": protocol,
        "endpoint": endpoint,
        "agency_ids": [agency],
        "lends": lends,
        **extra,
    }
    secret = f"RSHUB_SECRET_{symbol}"
    if protocol in ("ncip", "iso18626"):
        entry["inbound_auth"] = {"scheme": "bearer", "secret_env": secret}
    elif protocol == "slnp" and not lends:  # SLNP servers at one address: the borrower logs in
        entry["inbound_auth"] = {
            "scheme": "basic",
            "username": symbol.lower(),
            "secret_env": secret,
        }
    return entry


class Script:
    def __init__(self, libraries: dict[str, AnyLibrary]) -> None:
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
        protocol = self.libraries[symbol].protocol
        print(
            f"  {symbol:<6} -> hub     {_name(event, protocol):<42} "
            f"{request_id or fields.get('item_id')}"
            f"  [{verdict}]",
            flush=True,
        )
        if accepted == refused:
            wanted = "refused" if refused else "accepted"
            raise RuntimeError(f"the hub should have {wanted} {event.value} from {symbol}")

    async def hears(self, symbol: str, expected: Event) -> Message:
        library = self.libraries[symbol]
        while True:
            message = await library.next(timeout=60)
            print(
                f"  hub    -> {symbol:<7} {_name(message.event, library.protocol):<42} "
                f"{message.request_id}",
                flush=True,
            )
            # News on the way (the hub asks another lender, a lender will supply) comes in
            # the protocols that have a message for it; the story goes on after it.
            if message.event not in (Event.LENDER_NOTE, Event.WILL_SUPPLY):
                break
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


async def _demo(settings: Settings, borrower: str, lender: str) -> int:
    broker = None
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        print("starting the embedded Kafka-protocol broker (Tansu) ...", flush=True)
        broker = EmbeddedBroker()
        bootstrap = broker.start()
    hub = None
    entries = [
        _partner("NORTH", "01NORTH_INST||MAIN", borrower, lends=False),
        _partner("SOUTH", "01SOUTH_INST||MAIN", lender, lends=True),
        _partner("EAST", "01EAST_INST||CENTRAL", lender, lends=True),
    ]
    # The libraries' secrets, where the directory says the hub (and they) read them.
    env = {f"RSHUB_SECRET_{e['symbol']}": secrets.token_urlsafe(16) for e in entries}
    env["RSHUB_SLNP_PORT"] = str(free_port())
    os.environ.update(env)
    libraries: dict[str, AnyLibrary] = {}
    workdir = Path(tempfile.mkdtemp(prefix="rshub-demo-"))
    failed = True
    try:
        await wait_for_metadata(bootstrap)
        await topics.ensure(bootstrap, topics.load())
        directory = workdir / "consortium.yaml"
        document = {
            "consortium": "Demo Consortium",
            "partners": entries,
            "rotas": [{"name": "default", "members": ["SOUTH", "EAST"]}],
            "default_rota": "default",
        }
        directory.write_text(yaml.safe_dump(document, sort_keys=False))
        # One hub on its own broker: its data folder's id secret will do.
        hub = HubProcess(bootstrap, directory, workdir, {**env, "RSHUB_SINGLE_WORKER": "true"})
        address = HubAddress(
            hub.url, ("127.0.0.1", hub.iso10161_port), ("127.0.0.1", int(env["RSHUB_SLNP_PORT"]))
        )
        for entry in entries:
            library = library_for(Partner.model_validate(entry), address)
            libraries[library.symbol] = library
            await library.start()
        names = {"ncip": "NCIP", "iso10161": "ISO 10161", "slnp": "SLNP"}
        said = {
            c: names.get(c, c.replace("iso18626", "ISO 18626").replace("-", " ")) for c in PROTOCOLS
        }
        print(
            f"starting the hub: NORTH borrows in {said[borrower]}, SOUTH and EAST lend in "
            f"{said[lender]} ...",
            flush=True,
        )
        await hub.start()
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
            "\n   The hub refuses it in NORTH's protocol and records a dead letter.\n",
            flush=True,
        )
        await script.say("NORTH", Event.RECEIVED, "NORTH-1001", refused=True, item_id="none")
        print(
            "\ndone: both loans completed, the step out of turn refused. Every step is on"
            " ill.events and ill.audit, the refusal on ill.deadletter.",
            flush=True,
        )
        failed = False
        return 0
    finally:
        if hub:
            hub.stop()
            if failed and hub.log.exists():
                print(f"\nthe hub's log, last lines:\n{hub.log.read_text()[-3000:]}", flush=True)
        for library in libraries.values():
            await library.stop()
        if broker:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_demo(settings: Settings, borrower: str = "ncip", lender: str = "ncip") -> int:
    # The story is the output: only errors are logged here (the hub logs to its own file).
    logs.configure("ERROR", settings.log_format, quiet_libraries=True)
    return asyncio.run(_demo(settings, borrower, lender))
