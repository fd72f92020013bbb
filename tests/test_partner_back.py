"""A partner answers again: the transactions of this worker waiting for it are asked to send
their deliveries (a Redeliver each), once, however many copies of the news arrive."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connectors.core.records import PartnerBack
from hub.domain.transaction import Sending
from hub.runtime.partner_back import PartnerBackAgent
from hub.runtime.writing import Writer
from tests.steplog_memory import MemoryStepLog


def pending(recipient: str, status: Sending) -> dict[str, Any]:
    return {"command": {"recipient": recipient}, "status": status.value}


ROWS: dict[str, Any] = {
    "t1": {"pending": [pending("L1", Sending.RETRY)]},
    "t2": {"pending": [pending("L1", Sending.PARKED), pending("L2", Sending.RETRY)]},
    "t3": {"pending": [pending("L2", Sending.RETRY)]},
    "t4": None,
}


async def test_each_waiting_transaction_gets_one_redeliver_for_the_partner() -> None:
    log = MemoryStepLog()
    agent = PartnerBackAgent(lambda: ROWS.items(), Writer(log, 10_000))
    back = PartnerBack(partner="L1", at=datetime(2026, 1, 5, tzinfo=UTC))

    assert await agent.handle(back) == ["t1", "t2"]
    assert await agent.handle(back) == []  # the copy from another partition
    (write,) = log.writes
    commands = [json.loads(r.value or b"") for r in write.records]
    assert [(r.topic, r.key) for r in write.records] == [
        ("ill.control", "t1"),
        ("ill.control", "t2"),
    ]
    assert {c["kind"] for c in commands} == {"redeliver"}
    assert {c["partner"] for c in commands} == {"L1"}
