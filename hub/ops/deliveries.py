"""`rshub deliveries` and `rshub redeliver`: what waits for delivery, and sending it again.

    rshub deliveries                    failed steps waiting for a retry, and parked ones,
                                        per partner
    rshub redeliver TXN [--partner SYM] send a transaction's waiting steps again now
    rshub redeliver --partner SYM       send every step waiting for SYM again now

The list is read from ill.transactions (the transaction table's changelog: the latest row of
each transaction). Commands go
to the state machine like staff routing does: a Redeliver on
ill.control, answered on ill.replies; "all for a partner" is the same signal the hub sends
itself when a partner answers again (ill.partners), which each worker turns into Redelivers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from connectors.core.records import PartnerBack, Redeliver, VerdictOutcome
from hub.kafka.followers import Verdicts, _Follower
from hub.kafka.producer import KafkaIO
from hub.kafka.topics import Topic

WAITING = ("retry", "parked")


class _Rows(_Follower):
    """The latest row of every transaction, read from the beginning of ill.transactions."""

    topic = Topic.TRANSACTIONS
    from_beginning = True

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.rows: dict[str, dict[str, Any]] = {}

    def handle(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = json.loads(value)


async def waiting(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """Steps waiting for delivery (retry and parked), by recipient, oldest first."""
    reader = _Rows(bootstrap)
    await reader.start()
    try:
        await reader.ready.wait()
    finally:
        await reader.stop()
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, row in reader.rows.items():
        for pending in row.get("pending", []):
            if pending["status"] in WAITING:
                command = pending["command"]
                by_partner[command["recipient"]].append(
                    {
                        "transaction_id": key,
                        "step": command["message"]["event"],
                        "status": pending["status"],
                        "failures": pending["failures"],
                        "next_at": pending.get("next_at"),
                        "error": pending.get("error", ""),
                    }
                )
    for steps in by_partner.values():
        steps.sort(key=lambda s: s["next_at"] or "")
    return dict(sorted(by_partner.items()))


def describe(by_partner: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not by_partner:
        return ["nothing waits for delivery"]
    lines = []
    for partner, steps in by_partner.items():
        parked = sum(1 for s in steps if s["status"] == "parked")
        lines.append(f"{partner}: {len(steps) - parked} retrying, {parked} parked")
        for s in steps:
            lines.append(
                f"    {s['transaction_id']}  {s['step']:<22} {s['status']:<7} "
                f"{s['failures']} failed, next {s['next_at'] or '-'}  {s['error']}".rstrip()
            )
    return lines


async def send_control(
    bootstrap: str, transaction_id: str, record: Any, ref: str, wait_s: float
) -> tuple[int, str]:
    """Send a staff command to ill.control and wait for the state machine's verdict."""
    verdicts = Verdicts(bootstrap)
    await verdicts.start()
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        answer = verdicts.expect(ref)
        await kafka.send(Topic.CONTROL, transaction_id, record.model_dump_json().encode())
        try:
            verdict = await asyncio.wait_for(answer, wait_s)
        except TimeoutError:
            return 1, f"no answer from the hub within {wait_s:g} s (is it running?)"
    finally:
        await kafka.stop()
        await verdicts.stop()
    if verdict.outcome is VerdictOutcome.REFUSED:
        return 2, f"refused: {verdict.error}"
    return 0, f"done: {transaction_id} is now {verdict.state}"


async def redeliver(
    bootstrap: str, transaction_id: str | None, partner: str | None, wait_s: float
) -> tuple[int, str]:
    if transaction_id:
        order = Redeliver(
            command_id=f"redeliver-{uuid.uuid4().hex}",
            transaction_id=transaction_id,
            partner=partner,
        )
        return await send_control(bootstrap, transaction_id, order, order.ref, wait_s)
    assert partner is not None
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        back = PartnerBack(partner=partner, at=datetime.now(UTC))
        assert kafka.producer is not None
        partitions = kafka.producer.partitions_for(Topic.PARTNERS)
        for partition in sorted(await partitions):
            await kafka.producer.send_and_wait(
                Topic.PARTNERS,
                key=partner.encode(),
                value=back.model_dump_json().encode(),
                partition=partition,
            )
    finally:
        await kafka.stop()
    return 0, f"asked every worker to send what waits for {partner} again"
