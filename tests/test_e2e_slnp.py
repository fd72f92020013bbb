"""End to end: SLNP (simulated ZFL servers on real sockets) through the real hub (a real
process, a real broker) to NCIP and ISO 18626 libraries (real HTTP servers), and back.

The consortium: ZFL-B, a regional ILL server whose members borrow (it logs in; its own server
takes the hub's status changes, behind a login too); ZFL-L, a regional ILL server whose members
lend; NORTH (NCIP) and WEST (ISO 18626). ZFL-B's orders are routed to NORTH, everyone else's to
ZFL-L. Every assertion waits on an event: a command arriving at a simulated server, a message
arriving at a library, a record on a topic.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.core.model import Bibliographic, Event, Message, RequestFormat, transaction_id
from connectors.simulator import Library, running
from connectors.slnp.codec import order_number
from connectors.slnp.simulator import SimulatedZfl, ZflClient
from connectors.slnp.wire import Command, Response
from hub.cli.process import HubProcess
from tests.kafka_reader import wait_for_record

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "standards" / "slnp" / "samples"
DUE = datetime(2027, 1, 15, tzinfo=UTC)
BOOK = Bibliographic(title="Kater Murr", author="Hoffmann, E. T. A.", isbn="9783150001535")
CHANGE = "SLNPFLDatenÄnderung"

# ZFL-B's login at the hub (inbound) and the hub's login at ZFL-B's server (outbound).
ZFL_B_IN = ("zfl-b", "zfl-b-secret")
ZFL_B_OUT = ("rshub", "rshub-at-zfl-b")


@dataclass
class World:
    bootstrap: str
    hub: HubProcess
    slnp_port: int
    zfl_b: SimulatedZfl  # the borrowing ZFL's own server: hears the hub's status changes
    zfl_l: SimulatedZfl  # the lending ZFL's server: takes the hub's orders
    north: Library
    west: Library

    def client(self) -> ZflClient:
        return ZflClient("127.0.0.1", self.slnp_port)


def directory(zfl_b: SimulatedZfl, zfl_l: SimulatedZfl, libs: list[Library]) -> str:
    partners: list[dict[str, Any]] = [
        {
            "symbol": "ZFL-B",
            "name": "A regional ILL server whose members borrow",
            "protocol": "slnp",
            "endpoint": zfl_b.endpoint,
            "addresses": ["127.0.0.1/32"],
            "agency_ids": ["123ABC"],
            "lends": False,
            "inbound_auth": {
                "scheme": "basic",
                "username": ZFL_B_IN[0],
                "secret_env": "RSHUB_SECRET_ZFL_B",
            },
            "outbound_auth": {
                "scheme": "basic",
                "username": ZFL_B_OUT[0],
                "secret_env": "RSHUB_SECRET_ZFL_B_OUT",
            },
            "options": {"date_format": "%d.%m.%Y"},
        },
        {
            "symbol": "ZFL-L",
            "name": "A regional ILL server whose members lend",
            "protocol": "slnp",
            "endpoint": zfl_l.endpoint,
            "addresses": ["127.0.0.1/32"],
            "agency_ids": ["456DEF"],
        },
    ]
    partners += [
        {
            "symbol": lib.symbol,
            "name": f"{lib.symbol} library",
            "protocol": lib.protocol,
            "endpoint": lib.endpoint,
            "agency_ids": [lib.agency_id],
            "inbound_auth": {"scheme": "bearer", "secret_env": f"RSHUB_SECRET_{lib.symbol}"},
        }
        for lib in libs
    ]
    document = {
        "consortium": "SLNP test consortium",
        "partners": partners,
        "rotas": [
            {"name": "to-ncip", "members": ["NORTH"]},
            {"name": "to-slnp", "members": ["ZFL-L"]},
        ],
        "rules": [{"rota": "to-ncip", "borrowers": ["ZFL-B"]}],
        "default_rota": "to-slnp",
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@pytest.fixture
async def world(bootstrap: str, tmp_path: Path) -> AsyncIterator[World]:
    from connectors.core.connections import free_port

    north = Library("NORTH", "01NORTH_INST||MAIN", "north-secret")
    west = Library("WEST", "DK-710100", "west-secret", protocol="iso18626")
    zfl_b = SimulatedZfl(sigel="123ABC", user=ZFL_B_OUT[0], secret=ZFL_B_OUT[1])
    zfl_l = SimulatedZfl(sigel="456DEF")
    path = tmp_path / "consortium.yaml"
    path.write_text(directory(zfl_b, zfl_l, [north, west]))
    slnp_port = free_port()
    env = {
        "RSHUB_SECRET_NORTH": north.secret,
        "RSHUB_SECRET_WEST": west.secret,
        "RSHUB_SECRET_ZFL_B": ZFL_B_IN[1],
        "RSHUB_SECRET_ZFL_B_OUT": ZFL_B_OUT[1],
        "RSHUB_SLNP_PORT": str(slnp_port),
        "RSHUB_OUTBOUND_RETRIES": "3",
        "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
        "RSHUB_OUTBOUND_TIMEOUT_S": "5",
    }
    hub = HubProcess(bootstrap, path, tmp_path, env)
    async with running({"NORTH": north, "WEST": west}), zfl_b, zfl_l:
        north.hub_url = west.hub_url = hub.url
        await hub.start()
        try:
            yield World(bootstrap, hub, slnp_port, zfl_b, zfl_l, north, west)
        finally:
            hub.stop()


def accepted(reply: Response) -> Response:
    assert reply.ok, f"{reply.code} {reply.error_type} {reply.text}"
    return reply


async def say(lib: Library, event: Event, request_id: str, **fields: object) -> None:
    status, answer = await lib.send(Message(event=event, request_id=request_id, **fields))
    assert status == 200 and answer.ok, (lib.symbol, event, status, answer)


async def hears(zfl: SimulatedZfl, status: str) -> Command:
    """The next command at a simulated ZFL server, which must be a change with `status`."""
    command = await zfl.arrived(timeout=60)
    assert (command.name, command.get("Status")) == (CHANGE, status), command
    return command


def deadletter(bootstrap: str, partner: str, *, stage: str | None = None, error: str = "") -> Any:
    def match(record: dict[str, Any]) -> bool:
        return (
            record.get("protocol") == "slnp"
            and record.get("partner") == partner
            and (stage is None or record.get("stage") == stage)
            and error in record.get("error", "")
        )

    return wait_for_record(bootstrap, "ill.deadletter", match)


# -- (1) an SLNP borrower, an NCIP lender ----------------------------------------------------


async def test_a_zfl_order_is_lent_by_an_ncip_library_and_the_zfl_hears_every_step(
    world: World,
) -> None:
    async with world.client() as zfl:
        assert zfl.greeting is not None and zfl.greeting.code == 220
        accepted(await zfl.login(*ZFL_B_IN))
        ordered = accepted(
            await zfl.order(
                "BsNr-E2E-1",
                sigel="123ABC",
                Titel=BOOK.title or "",
                Verfasser=BOOK.author or "",
                Isbn=BOOK.isbn or "",
                AusgabeOrt="Lesesaal",
            )
        )
        # The order's number at the hub is a number (ZFL clients expect one), its
        # transaction's (issue 26).
        number = ordered.get("PFLNummer") or ""
        assert number == order_number(transaction_id("ZFL-B", "BsNr-E2E-1"))

        asked = await world.north.next()
        assert asked.event is Event.REQUEST
        assert asked.bibliographic is not None and asked.bibliographic.isbn == BOOK.isbn
        assert asked.bibliographic.title == BOOK.title
        assert asked.from_agency == "123ABC"

        await say(world.north, Event.LOANED, asked.request_id, item_id="NORTH-BC-1", due_date=DUE)
        loaned = await hears(world.zfl_b, "Geliefert")
        # The ZFL recognises its own order, in its own date format.
        assert loaned.get("BestellId") == "BsNr-E2E-1"
        assert loaned.get("Mediennummer") == "NORTH-BC-1"
        assert loaned.get("Leihfrist") == "15.01.2027"
        assert loaned.get("PFLNummer") == number

        accepted(await zfl.change("BsNr-E2E-1", "Eingang", SigelNB="123ABC"))
        received = await world.north.next()
        assert (received.event, received.request_id) == (Event.RECEIVED, asked.request_id)

        accepted(await zfl.change("BsNr-E2E-1", "Rueckversand", SigelNB="123ABC"))
        returned = await world.north.next()
        assert (returned.event, returned.request_id) == (Event.SHIPPED_RETURN, asked.request_id)

        # The lender checks the item in: the loan is complete, and the ZFL is told.
        await say(world.north, Event.LOAN_COMPLETED, asked.request_id, item_id="NORTH-BC-1")
        completed = await hears(world.zfl_b, "Erledigt")
        assert completed.get("BestellId") == "BsNr-E2E-1"

        # The same change sent again is the same message: answered, applied once.
        again = accepted(await zfl.change("BsNr-E2E-1", "Rueckversand", SigelNB="123ABC"))
        assert again.get("Zustand") == "Erledigt"  # the state in German
        # A step after the end is refused in SLNP, and dead-lettered.
        late = await zfl.change(
            "BsNr-E2E-1", "Verlaengerung", SigelNB="123ABC", WunschLeihfrist="01.03.2027"
        )
        assert late.is_error and late.error_type == "SLNP_CMD_EXECUTION_ERROR", late
        # The order sent again after the loan is complete is the same order: answered with
        # its first number and where it is, and no second loan is asked for.
        order = {"Titel": BOOK.title or "", "Verfasser": BOOK.author or "", "Isbn": BOOK.isbn or ""}
        reordered = accepted(
            await zfl.order("BsNr-E2E-1", sigel="123ABC", AusgabeOrt="Lesesaal", **order)
        )
        assert reordered.get("PFLNummer") == number
        assert reordered.get("Zustand") == "Erledigt"
        assert reordered.get("OKMsg") == "ILL request already inserted."
        # Sent again changed, it is refused, naming the first order's number and state.
        changed = await zfl.order("BsNr-E2E-1", sigel="123ABC", AusgabeOrt="Foyer", **order)
        assert changed.is_error and changed.error_type == "SLNP_CMD_EXECUTION_ERROR", changed
        assert number in (changed.text or "") and "Zustand: Erledigt" in (changed.text or "")
        with pytest.raises(TimeoutError):
            await world.north.next(timeout=3)
        accepted(await zfl.quit())
    record = await deadletter(world.bootstrap, "ZFL-B", stage="apply", error="Renew")
    assert "Renew" in record["error"]
    record = await deadletter(world.bootstrap, "ZFL-B", stage="apply", error="Request")
    assert "LoanCompleted" in record["error"]


async def test_a_zfl_order_a_lender_cannot_fill_comes_back_negative(world: World) -> None:
    async with world.client() as zfl:
        accepted(await zfl.login(*ZFL_B_IN))
        accepted(await zfl.order("BsNr-E2E-2", sigel="123ABC", BsTyp2="C", Titel="Aufsatz"))
        asked = await world.north.next()
        from connectors.core.model import Reason, ServiceType

        assert asked.service_type is ServiceType.COPY
        await say(world.north, Event.UNFILLED, asked.request_id, reason=Reason.from_code(4))
        told = await hears(world.zfl_b, "Negativ")
    assert told.get("BestellId") == "BsNr-E2E-2"
    assert told.get("GrundCode") == "4"


# -- (2) NCIP and ISO 18626 borrowers, an SLNP lender ---------------------------------------


@pytest.mark.parametrize("protocol", ["ncip", "iso18626"])
async def test_a_request_is_lent_by_a_zfl_and_its_changes_come_back(
    world: World, protocol: str
) -> None:
    borrower = world.north if protocol == "ncip" else world.west
    request_id = f"{protocol.upper()}-1"
    await say(
        borrower,
        Event.REQUEST,
        request_id,
        patron_id="patron-7",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
        need_before=datetime(2027, 3, 1, tzinfo=UTC),
    )
    order = await world.zfl_l.arrived(timeout=60)
    assert order.name == "SLNPFLBestellung" and order.get("BsTyp") == "AFL"
    assert order.get("Titel") == BOOK.title and order.get("Isbn") == BOOK.isbn
    assert order.get("SigelNB") == borrower.agency_id
    assert order.get("SigelListe") == "456DEF"
    assert order.get("ErledFrist") == "2027-03-01"
    lender_id = order.get("BestellId") or ""
    assert lender_id

    async with world.client() as zfl:
        # ZFL-L is the one partner at this address without a login: no login needed.
        accepted(await zfl.change(lender_id, "Bearbeitung", SigelGB="456DEF"))
        if protocol == "iso18626":  # NCIP has no message for it (declared not applicable)
            assert (await borrower.next()).event is Event.WILL_SUPPLY
        accepted(
            await zfl.change(
                lender_id,
                "Geliefert",
                SigelGB="456DEF",
                Mediennummer="ZFL-BC-9",
                Leihfrist="15.01.2027",
            )
        )
        loaned = await borrower.next()
        assert (loaned.event, loaned.request_id) == (Event.LOANED, request_id)
        assert loaned.due_date is not None and loaned.due_date.date() == DUE.date()

        await say(borrower, Event.RECEIVED, request_id, item_id="ZFL-BC-9")
        received = await hears(world.zfl_l, "Eingang")
        assert received.get("BestellId") == lender_id

        await say(borrower, Event.SHIPPED_RETURN, request_id, item_id="ZFL-BC-9")
        returned = await hears(world.zfl_l, "Rueckversand")
        assert returned.get("BestellId") == lender_id

        accepted(await zfl.change(lender_id, "Erledigt", SigelGB="456DEF"))
        completed = await borrower.next()
        assert (completed.event, completed.request_id) == (Event.LOAN_COMPLETED, request_id)
        accepted(await zfl.quit())


async def test_a_zfl_refusing_an_order_is_recorded_not_dropped(world: World) -> None:
    world.zfl_l.refuse_next = "SLNP_PARAM_VALUE_NOT_VALID"
    await say(
        world.north,
        Event.REQUEST,
        "NCIP-REFUSED",
        patron_id="p",
        request_format=RequestFormat.PHYSICAL,
        bibliographic=BOOK,
    )
    assert (await world.zfl_l.arrived(timeout=60)).name == "SLNPFLBestellung"
    # The borrower hears the request could not be filled (no other lender in the rota) ...
    told = await world.north.next()
    assert (told.event, told.request_id) == (Event.UNFILLED, "NCIP-REFUSED")
    # ... and the ZFL's own words are kept in the transaction's history.
    record = await wait_for_record(
        world.bootstrap,
        "ill.events",
        lambda r: r.get("event") == "Request:failed" and r.get("sender") == "ZFL-L",
    )
    assert "SLNP_PARAM_VALUE_NOT_VALID" in record["detail"]


# -- (3) hostile and unknown partners -------------------------------------------------------


async def test_an_unknown_source_is_refused_and_dead_lettered(world: World) -> None:
    # 127.0.0.2 is loopback too, but no partner connects from it.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", world.slnp_port, local_addr=("127.0.0.2", 0)
    )
    try:
        greeting = await asyncio.wait_for(reader.readline(), 30)
        assert greeting.startswith(b"220 ")
        writer.write(
            b"SLNPFLBestellung\nBsTyp:PFL\nBestellId:X1\nSigelNB:123ABC\n"
            b"BenutzerNummer:1\nTitel:T\nSLNPEndCommand\n"
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    assert line.startswith(b"510 SlnpAccessError: SLNP_ACCESS_DENIED"), line
    record = await deadletter(world.bootstrap, "127.0.0.2", stage="authenticate")
    assert "127.0.0.2" in record["error"]


async def test_hostile_commands_get_slnp_errors_and_dead_letters(world: World) -> None:
    async with world.client() as zfl:
        # A wrong login.
        refused = await zfl.login(ZFL_B_IN[0], "guess")
        assert refused.code == 510 and refused.error_type == "SLNP_ACCESS_DENIED"
        # A command nobody implements.
        unknown = await zfl.command("SLNPAlleBenutzerDaten", ("BenutzerNummer", "4711"))
        assert unknown.code == 520 and unknown.error_type == "SLNP_CMD_NOT_IMPLEMENTED"
        # The format error of the shared sample.
        await zfl.raw((SAMPLES / "02-format-error.request.txt").read_bytes())
        malformed = await zfl.reply()
        assert malformed.code == 520 and malformed.error_type == "SLNP_REQ_FORMAT_ERROR"
        # A mandatory parameter lacking.
        lacking = await zfl.command("SLNPFLBestellung", ("BsTyp", "PFL"))
        assert lacking.error_type == "SLNP_MAND_PARAM_LACKING" and "SigelNB" in lacking.text
        # A change for an order nobody knows.
        stray = await zfl.change("NO-SUCH-ORDER", "Geliefert", SigelGB="456DEF")
        assert stray.code == 510 and stray.error_type == "RECORD_NOT_FOUND"
        # A status word SLNP does not have.
        odd = await zfl.change("NO-SUCH-ORDER", "Vielleicht")
        assert odd.error_type == "SLNP_PARAM_VALUE_NOT_VALID" and "Status" in odd.text
        # Binary garbage.
        await zfl.raw(b"\x00\xff\xfe\x80garbage\nSLNPEndCommand\n")
        garbage = await zfl.reply()
        assert garbage.is_error and garbage.code in (510, 520)
        # After all that the session still works.
        accepted(await zfl.login(*ZFL_B_IN))
        accepted(await zfl.order("BsNr-AFTER", sigel="123ABC"))
    assert (await world.north.next()).event is Event.REQUEST

    bootstrap = world.bootstrap
    await deadletter(bootstrap, "127.0.0.1", stage="authenticate", error="login refused")
    await deadletter(bootstrap, "ZFL-L", stage="parse", error="SLNPAlleBenutzerDaten")
    # A malformed command from a partner's address is kept (audited) under that partner.
    malformed_letter = await deadletter(bootstrap, "ZFL-L", stage="parse", error="BsArt=PFL")
    assert malformed_letter["audit_ref"]
    await deadletter(bootstrap, "ZFL-L", stage="parse", error="not UTF-8")
    await deadletter(bootstrap, "ZFL-L", stage="parse", error="SigelNB")
    await deadletter(bootstrap, "ZFL-L", stage="address")
    await deadletter(bootstrap, "ZFL-L", stage="parse", error="Vielleicht")


async def test_an_endless_line_ends_the_session_and_the_hub_goes_on(world: World) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", world.slnp_port)
    try:
        assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"220 ")
        writer.write(b"SLNPFLBestellung\nTitel:" + b"x" * 40_000)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        assert line.startswith(b"520 SlnpRequestError: SLNP_REQ_FORMAT_ERROR"), line
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the hub
    finally:
        writer.close()
    await deadletter(world.bootstrap, "127.0.0.1", stage="parse", error="longer than")
    async with world.client() as zfl:
        accepted(await zfl.login(*ZFL_B_IN))
        accepted(await zfl.order("BsNr-STILL", sigel="123ABC"))


# -- (4) rshub decode ------------------------------------------------------------------------


def test_rshub_decode_prints_the_canonical_order_of_the_sample() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "decode",
            "slnp",
            str(SAMPLES / "01-flbestellung-pfl-minimal.request.txt"),
        ],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    message = json.loads(done.stdout)
    assert message["event"] == "Request" and message["request_id"] == "BsNr1234"
    assert (
        message["from_agency"] == "123ABC" and message["bibliographic"]["title"] == "Kater Murr019"
    )


def test_rshub_decode_prints_the_slnp_error_of_a_bad_sample() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "decode",
            "slnp",
            str(SAMPLES / "04-missing-mandatory-titel.request.txt"),
        ],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    expected = (SAMPLES / "04-missing-mandatory-titel.response.txt").read_text().strip()
    assert done.stdout.decode().strip() == expected
