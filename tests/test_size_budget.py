"""One size budget at the door (issue 22, findings 3 and 5): a message within the body limit
always fits the broker as everything derived from it, one over it gets the protocol's own
"too large" and a dead letter (never a temporary failure for ever), and input refused before
authentication costs a bounded prefix and a digest, a few times a minute per source."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.model import Bibliographic, Event, Message, RequestFormat
from connectors.core.records import TEXT_LIMIT, AuditRecord, audit_bytes, packed_size
from hub.runtime.refused import RefusedBudget
from hub.runtime.settings import RECORD_SLACK, Settings, SettingsError
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import ask


def test_default_limits_fit_the_record_limit_and_a_bad_pair_is_refused_at_start() -> None:
    found = Settings.from_env({})
    assert packed_size(found.max_body_bytes) + RECORD_SLACK <= found.max_record_bytes
    with pytest.raises(SettingsError, match="RSHUB_MAX_BODY_BYTES=1048576 makes audit records"):
        Settings.from_env({"RSHUB_MAX_BODY_BYTES": "1048576"})
    assert Settings.from_env(
        {"RSHUB_MAX_BODY_BYTES": "1048576", "RSHUB_MAX_RECORD_BYTES": "1500000"}
    )


# The worst bytes for JSON: control bytes (six each as \u00XX) and bytes >= 0x80 (two each).
WORST = st.binary(min_size=0, max_size=3 * TEXT_LIMIT).map(
    lambda b: bytes(x % 32 if i % 2 else 0x80 | x for i, x in enumerate(b))
)


@settings(max_examples=60, deadline=None)
@given(body=st.one_of(WORST, st.binary(max_size=2 * TEXT_LIMIT)))
def test_an_audit_record_is_never_larger_than_its_budget_and_keeps_every_byte(body: bytes) -> None:
    record = AuditRecord.of("in", "ncip", "NORTH", body, "application/xml")
    assert len(record.model_dump_json()) <= packed_size(len(body)) + RECORD_SLACK
    assert audit_bytes(json.loads(record.model_dump_json())) == body == record.raw()


def test_refused_input_is_kept_as_a_prefix_and_a_digest() -> None:
    body = bytes(range(256)) * 4000
    record = AuditRecord.of("in", "ncip", "NOWHERE", body, "text/xml", keep=2048)
    assert record.raw() == body[:2048] and record.truncated and record.size == len(body)
    assert record.sha256 == hashlib.sha256(body).hexdigest()
    assert len(record.model_dump_json()) < 20_000


def test_the_refused_budget_is_per_source_and_per_minute() -> None:
    budget = RefusedBudget(3)
    assert [budget.allow("10.0.0.1", at=0.0) for _ in range(5)] == [True] * 3 + [False] * 2
    assert budget.allow("10.0.0.2", at=1.0)  # another source has its own
    assert budget.allow("10.0.0.1", at=61.0)  # a new minute


BOOK = Bibliographic(title="The Name of the Rose", author="Eco, Umberto")


def big_request(north, request_id: str, size: int) -> bytes:  # type: ignore[no-untyped-def]
    """An NCIP request padded to `size` bytes with a comment of bytes JSON writes as two."""
    body = north.encode(
        Message(
            event=Event.REQUEST,
            request_id=request_id,
            patron_id="p",
            request_format=RequestFormat.PHYSICAL,
            bibliographic=BOOK,
        ),
        "RSHUB",
    )
    head, _, rest = body.partition(b"?>")
    pad = size - len(body) - 7
    return head + b"?><!--" + ("é" * (pad // 2)).encode() + b"-->" + rest


@pytest.mark.kafka
async def test_messages_up_to_the_limit_are_taken_and_larger_ones_refused_once(
    hub, libraries, bootstrap
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    limit = Settings().max_body_bytes
    # Under the old limits a body of about 0.55 MB and more was a 503 for ever (its audit
    # record, latin-1 in JSON, exceeded the producer's 1 MiB).
    status, answer = await north.post(big_request(north, "N-BIG", limit - 100))
    assert status == 200 and answer.ok, answer.errors
    assert (await south.next()).bibliographic.title == BOOK.title
    status, answer = await north.post(big_request(north, "N-HUGE", limit + 100))
    assert status == 413 and answer.errors[0].startswith("Invalid Message Syntax Error:")
    await wait_for_record(bootstrap, "ill.deadletter", lambda r: "exceeds the limit" in r["error"])


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"RSHUB_REFUSED_AUDITS_PER_MINUTE": "3"}


@pytest.mark.kafka
async def test_refused_unauthenticated_bodies_cost_bounded_space(hub, libraries, bootstrap) -> None:
    north = libraries["NORTH"]
    bodies = [b"<x>" + b"A" * 500_000 + str(n).encode() + b"</x>" for n in range(6)]
    for body in bodies:
        status, _ = await north.post(body, secret="guess")
        assert status == 401
    # A message of NORTH's own comes after them on the same partition (keyed by partner).
    await ask(north, "N-AFTER")
    kept = await _refused_audits_before(bootstrap, "NORTH", b"N-AFTER")
    assert len(kept) == 3  # the budget per source and minute; the rest only counted
    digests = {hashlib.sha256(body).hexdigest(): body for body in bodies}
    for record in kept:
        body = digests[str(record["sha256"])]
        assert record["truncated"] and record["size"] == len(body)
        assert audit_bytes(record) == body[: Settings().refused_keep_bytes]
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as reply:
        assert 'rshub_refused_unaudited_total{protocol="ncip"} 3.0' in await reply.text()


async def _refused_audits_before(
    bootstrap: str, partner: str, marker: bytes
) -> list[dict[str, Any]]:
    """The truncated audit records of `partner` before its record holding `marker`."""
    consumer = AIOKafkaConsumer(
        "ill.audit", bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(60):
            async for record in consumer:
                value = json.loads(record.value)
                if value["partner"] != partner:
                    continue
                if marker in audit_bytes(value):
                    return found
                if value.get("truncated"):
                    found.append(value)
    finally:
        await consumer.stop()
    raise AssertionError("the marker was never audited")
