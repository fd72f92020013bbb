"""End to end: three NCIP lenders with Zebra catalogues, on the embedded broker.

A lacks the item (skipped), B is overloaded after one open request (ranked last), C rejects at
one open incoming request (rejected by the hub on its behalf). The clock is moved by sending
the state machine a Tick, as the hub's own timer does: nobody waits days.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from connectors.core.model import Event, now, transaction_id
from connectors.core.records import Tick
from connectors.simulator import Library, running
from hub.cli.process import HubProcess
from hub.kafka.producer import KafkaIO
from tests import catalogues
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import BOOK, DUE, ask, say

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not catalogues.installed() and not os.environ.get("CI"), reason="needs idzebra-2.0"
    ),
]


@pytest.fixture(scope="module")
def zebra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    databases = {"a": ["odyssey", "nature"], "b": ["rose-1", "odyssey"], "c": ["rose-1"]}
    with catalogues.zebra(tmp_path_factory.mktemp("zebra"), databases) as address:
        yield address


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    libs = {
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "ALPHA": Library("ALPHA", "01ALPHA_INST||MAIN", "alpha-secret"),
        "BRAVO": Library("BRAVO", "01BRAVO_INST||MAIN", "bravo-secret"),
        "CHARLIE": Library("CHARLIE", "01CHARLIE_INST||MAIN", "charlie-secret"),
    }
    async with running(libs):
        yield libs


@pytest.fixture
def directory_extra(zebra: str) -> dict[str, dict[str, object]]:
    def catalogue(database: str) -> dict[str, object]:
        return {"kind": "z3950", "address": zebra, "database": database, "timeout_s": 5}

    return {
        "ALPHA": {"catalogue": catalogue("a")},
        "BRAVO": {"catalogue": catalogue("b"), "thresholds": {"overload": 1}},
        "CHARLIE": {"catalogue": catalogue("c"), "thresholds": {"max_open_incoming": 1}},
    }


def rshub(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in hub.env.items() if k != "RSHUB_APP_ID"}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rota_skips_demotes_rejects_and_explains(
    bootstrap: str, hub: HubProcess, libraries: dict[str, Library]
) -> None:
    north, alpha, bravo, charlie = libraries.values()
    # 1: ALPHA lacks the book; BRAVO and CHARLIE hold it; BRAVO comes first in the rota.
    await ask(north, "R-1")
    first = await bravo.next()
    assert first.event is Event.REQUEST and first.bibliographic.isbn == BOOK.isbn
    # 2: BRAVO now has one open request, its overload threshold: CHARLIE goes first.
    await ask(north, "R-2")
    second = await charlie.next()
    assert second.event is Event.REQUEST
    # 3: CHARLIE is at its limit of one open incoming request: the hub rejects for it, and
    # BRAVO, overloaded but holding the book, gets it and fills it.
    await ask(north, "R-3")
    third = await bravo.next()
    assert third.event is Event.REQUEST
    await say(bravo, Event.LOANED, third.request_id, item_id="BRAVO-ITEM-3", due_date=DUE)
    assert (await north.next()).event is Event.LOANED
    assert alpha.received.empty() and charlie.received.empty()

    txn3 = transaction_id("NORTH", "R-3")
    routing = await wait_for_record(
        bootstrap, "ill.routing", lambda r: r["transaction_id"] == txn3 and r["chosen"]
    )
    assert routing["chosen"] == "BRAVO"
    skipped = {s["lender"]: s["reason"] for s in routing["skipped"]}
    assert skipped["ALPHA"].startswith("catalogue: not held")
    assert skipped["CHARLIE"] == "rejected on its behalf: 1 open incoming requests, limit 1"
    by = {c["lender"]: c for c in routing["candidates"]}
    assert by["BRAVO"]["overloaded"] == "1 open, threshold 1" and by["BRAVO"]["rank"] == 2
    assert by["CHARLIE"]["rank"] == 1 and by["CHARLIE"]["holdings"] == "held", by["CHARLIE"][
        "holdings_detail"
    ]
    automatic = await wait_for_record(
        bootstrap, "ill.events", lambda e: e["transaction_id"] == txn3 and e["kind"] == "automatic"
    )
    assert automatic["sender"] == "CHARLIE"

    shown = rshub(hub, "route", "show", txn3)
    assert shown.returncode == 0, shown.stderr
    assert "-> BRAVO" in shown.stdout and "rejected on its behalf" in shown.stdout
    assert "ALPHA" in shown.stdout and "not held" in shown.stdout

    # Staff: a shipped request cannot be rerouted; an open one can.
    refused = rshub(hub, "route", txn3, "--lender", "CHARLIE")
    assert refused.returncode == 2 and "not possible in state Loaned" in refused.stderr
    moved = rshub(hub, "route", transaction_id("NORTH", "R-1"), "--lender", "CHARLIE")
    assert moved.returncode == 0, moved.stderr
    assert (await bravo.next()).event is Event.CANCEL
    assert (await charlie.next()).request_id.endswith(".2")

    # The clock: CHARLIE does not answer R-2 within its time-out; BRAVO is asked instead.
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        txn2 = transaction_id("NORTH", "R-2")
        tick = Tick(transaction_id=txn2, at=now() + timedelta(days=6))
        await kafka.send("ill.control", txn2, tick.model_dump_json().encode())
    finally:
        await kafka.stop()
    assert (await charlie.next()).event is Event.CANCEL
    replacement = await bravo.next()
    assert replacement.event is Event.REQUEST and replacement.request_id.endswith(".2")
    timed_out = await wait_for_record(
        bootstrap, "ill.routing", lambda r: r["transaction_id"] == txn2 and r["attempt"] == 2
    )
    assert timed_out["reason"].startswith("next in the rota; previous: no answer from CHARLIE")


async def test_load_counts_survive_a_restart(
    bootstrap: str, hub: HubProcess, libraries: dict[str, Library]
) -> None:
    north, _alpha, bravo, charlie = libraries.values()
    await ask(north, "S-1")
    assert (await bravo.next()).event is Event.REQUEST
    hub.kill()
    await hub.start()
    # BRAVO's open request was counted before the restart: it is still overloaded.
    await ask(north, "S-2")
    assert (await charlie.next()).event is Event.REQUEST


async def test_need_before_date_expires_the_request(
    bootstrap: str, hub: HubProcess, libraries: dict[str, Library]
) -> None:
    north, _alpha, bravo, _charlie = libraries.values()
    need_before = now() + timedelta(days=2)
    await say(
        north, Event.REQUEST, "E-1", patron_id="p", bibliographic=BOOK, need_before=need_before
    )
    assert (await bravo.next()).event is Event.REQUEST
    txn = transaction_id("NORTH", "E-1")
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        tick = Tick(transaction_id=txn, at=need_before + timedelta(hours=1))
        await kafka.send("ill.control", txn, tick.model_dump_json().encode())
    finally:
        await kafka.stop()
    assert (await bravo.next()).event is Event.CANCEL
    assert (await north.next()).event is Event.EXPIRED
    snapshot = await wait_for_record(
        bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == "Expired"
    )
    assert snapshot["next_deadline"] is None
