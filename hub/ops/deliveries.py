"""`rshub deliveries` and `rshub redeliver`: what waits for delivery, and sending it again.

    rshub deliveries                    failed steps waiting for a retry, parked ones,
                                        and requests staff must submit (ILLiad links),
                                        per partner
    rshub redeliver TXN [--partner SYM] send a transaction's waiting steps again now
                                        (hub.ops.actions.redeliver also waits for the
                                        try and says what came of it)
    rshub redeliver --partner SYM       send every step waiting for SYM again now

The list is read from ill.transactions (the transaction table's changelog: the latest row of
each transaction). Commands go
to the state machine like staff routing does: a Redeliver on
ill.control, answered on ill.replies; "all for a partner" is the same signal the hub sends
itself when a partner answers again (ill.partners), which each worker turns into Redelivers.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from connectors.core.contract import FOR_STAFF
from connectors.core.records import PartnerBack, Redeliver
from connectors.core.topics import Topic
from hub.kafka.followers import _Follower
from hub.kafka.producer import KafkaIO

WAITING = ("retry", "parked")
STAFF = "staff"  # the status of a step delivered as a link staff must submit
# States in which a lender holds the request and has not answered: a link for staff is
# still to be submitted (or answered) only then.
WITH_LENDER = ("Requested", "WillSupply")


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


class _ForStaff(_Follower):
    """Deliveries that left the step to a person (`FOR_STAFF`), read from ill.delivery: the
    transaction row forgets a delivery once it is accepted."""

    topic = Topic.DELIVERY
    from_beginning = True

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.results: list[dict[str, Any]] = []

    def handle(self, key: str, value: bytes | None) -> None:
        if value is None:
            return
        result = json.loads(value)
        if result.get("outcome") == "sent" and str(result.get("detail", "")).startswith(FOR_STAFF):
            self.results.append(result)


async def _read(follower: _Follower) -> None:
    await follower.start()
    try:
        await follower.ready.wait()
    finally:
        await follower.stop()


def for_staff(
    rows: dict[str, dict[str, Any]], results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The links for staff whose lender still holds the request unanswered: the request's
    current attempt, in a state where the lender has not answered."""
    found = []
    for result in results:
        row = rows.get(result["transaction_id"])
        if row is None or row.get("state") not in WITH_LENDER:
            continue
        attempts = row.get("attempts") or []
        current = attempts[-1] if attempts else None
        if (
            current is None
            or current.get("lender") != result["recipient"]
            or current.get("number") != result.get("attempt")
            or current.get("outcome")
        ):
            continue
        found.append(
            {
                "transaction_id": result["transaction_id"],
                "recipient": result["recipient"],
                "step": result["event"],
                "status": STAFF,
                "failures": 0,
                "next_at": None,
                "error": "",
                "since": result.get("at"),
                "link": result["detail"].split(": ", 1)[-1],
            }
        )
    return found


async def waiting(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """Steps waiting for delivery (retry and parked) and for staff to submit, by recipient,
    oldest first."""
    reader, staff = _Rows(bootstrap), _ForStaff(bootstrap)
    await _read(reader)
    await _read(staff)
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for step in for_staff(reader.rows, staff.results):
        by_partner[step.pop("recipient")].append(step)
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
        steps.sort(key=lambda s: s["next_at"] or s.get("since") or "")
    return dict(sorted(by_partner.items()))


def describe(by_partner: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not by_partner:
        return ["nothing waits for delivery"]
    lines = []
    for partner, steps in by_partner.items():
        parked = sum(1 for s in steps if s["status"] == "parked")
        staff = sum(1 for s in steps if s["status"] == STAFF)
        retrying = len(steps) - parked - staff
        counts = f"{retrying} retrying, {parked} parked" + (
            f", {staff} for staff to submit" if staff else ""
        )
        lines.append(f"{partner}: {counts}")
        for s in steps:
            if s["status"] == STAFF:
                lines.append(
                    f"    {s['transaction_id']}  {s['step']:<22} submit since "
                    f"{s['since'] or '-'}: {s['link']}"
                )
                continue
            lines.append(
                f"    {s['transaction_id']}  {s['step']:<22} {s['status']:<7} "
                f"{s['failures']} failed, next {s['next_at'] or '-'}  {s['error']}".rstrip()
            )
    return lines


async def send_control(
    bootstrap: str, transaction_id: str, record: Any, ref: str, wait_s: float
) -> tuple[int, str]:
    """Send a staff command to ill.control and wait for the state machine's verdict (the
    operations layer's, hub.ops.actions.send)."""
    from hub.ops import actions

    return await actions.send(actions.Link(bootstrap, wait_s), record)


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
