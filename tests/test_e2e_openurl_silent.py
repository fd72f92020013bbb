"""End to end: an OpenURL patron's request to an OpenURL lender (Relais), a pair where neither
party can report anything after the request. The real hub on the embedded broker; the
clock's Ticks are sent to ill.control as the hub's timer sends them (nobody waits weeks).

What staff and the consortium rely on: the request is listed for staff from the start with
the day it will close; the lender's answer time passing does not send it to another lender
(Relais may well have supplied: a second lender would be a second order); the hub closes it
on that day with the reason on its timeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from connectors.core.model import now, transaction_id
from connectors.core.records import Tick
from hub.domain.deadlines import CLOSING
from hub.kafka.producer import KafkaIO
from tests.kafka_reader import wait_for_record
from tests.openurl_helpers import NORTH_TOKEN, OpenUrlHub, openurl_hub, signed_patron
from tests.test_e2e_openurl import ARTICLE, JSON

pytestmark = pytest.mark.kafka


@pytest.fixture
async def ou(bootstrap: str, tmp_path: Path) -> AsyncIterator[OpenUrlHub]:
    async with openurl_hub(bootstrap, tmp_path) as running:
        yield running


async def tick(bootstrap: str, txn: str, days: float) -> None:
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        at = now() + timedelta(days=days)
        await kafka.send(
            "ill.control", txn, Tick(transaction_id=txn, at=at).model_dump_json().encode()
        )
    finally:
        await kafka.stop()


async def test_a_request_nobody_can_report_on_is_listed_kept_with_its_lender_and_closed(
    ou: OpenUrlHub,
) -> None:
    link = f"{ou.url}/openurl/NORTH?{ARTICLE}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    async with aiohttp.ClientSession() as browser, browser.get(link, headers=JSON) as reply:
        assert reply.status == 201
        created = await reply.json()
    await ou.relais.next()  # Relais got its OpenURL
    txn = transaction_id("NORTH", created["request_id"])
    listed = await wait_for_record(
        ou.bootstrap,
        "ill.transactions",
        lambda t: t["id"] == txn and (t["needs_attention"] or "").startswith(CLOSING),
    )
    assert listed["state"] == "Requested"
    assert "28 days after the request to the lender" in listed["needs_attention"]
    assert "neither RELAIS (openurl) nor NORTH (openurl) can report" in listed["needs_attention"]

    # Past Relais's answer time (5 days): nothing moves; then past the close (28 days).
    await tick(ou.bootstrap, txn, days=6)
    await tick(ou.bootstrap, txn, days=29)
    closed = await wait_for_record(
        ou.bootstrap,
        "ill.events",
        lambda r: r["transaction_id"] == txn and r["to_state"] == "LoanCompleted",
    )
    assert (closed["from_state"], closed["kind"]) == ("Requested", "timer")
    assert "closed by the hub: neither RELAIS (openurl) nor NORTH (openurl)" in closed["detail"]
    row = await wait_for_record(
        ou.bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == "LoanCompleted"
    )
    # One lender asked, ever: the answer time did not move the request on.
    assert [a["lender"] for a in row["attempts"]] == ["RELAIS"]
    assert row["needs_attention"] is None and row["next_deadline"] is None
    assert ou.relais.received.empty() and ou.lenders["SOUTH"].received.empty()
