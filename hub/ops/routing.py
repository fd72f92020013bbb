"""`rshub route`: show why a request went where it did, and change its routing.

    rshub route show TXN              every routing decision of the transaction
    rshub route TXN --lender SYM      send the request to SYM now
    rshub route TXN --skip SYM        never ask SYM for this request
    rshub route TXN --restart         search the catalogues again and rebuild the rota
    rshub route TXN --next            take it back from its lender and ask the next one

Commands go to the state machine on ill.control; the answer (applied, or refused with the
reason) is read back from ill.replies.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.core.records import RouteAction
from connectors.core.topics import Topic
from hub.kafka.followers import _Follower


class _Decisions(_Follower):
    """Reads ill.routing from the beginning, keeping one transaction's decisions."""

    topic = Topic.ROUTING
    from_beginning = True

    def __init__(self, bootstrap_servers: str, transaction_id: str) -> None:
        super().__init__(bootstrap_servers)
        self.transaction_id = transaction_id
        self.found: list[dict[str, Any]] = []

    def handle(self, key: str, value: bytes | None) -> None:
        if key == self.transaction_id and value is not None:
            self.found.append(json.loads(value))


async def decisions(bootstrap: str, transaction_id: str) -> list[dict[str, Any]]:
    """Every record of ill.routing for the transaction, oldest first."""
    reader = _Decisions(bootstrap, transaction_id)
    await reader.start()
    try:
        await reader.ready.wait()  # read up to the end offsets seen at start
    finally:
        await reader.stop()
    return sorted(reader.found, key=lambda d: d["at"])


def describe(decision: dict[str, Any]) -> list[str]:
    chosen = decision.get("chosen") or "nobody"
    lines = [
        f"{decision['at']}  attempt {decision['attempt']}  rota {decision.get('profile') or '-'}"
        f"  -> {chosen}: {decision['reason']}"
    ]
    for candidate in decision.get("candidates", []):
        lines.append(f"    {candidate['lender']:<12} {candidate.get('why', '')}")
    for skipped in decision.get("skipped", []):
        lines.append(f"    not asked: {skipped['lender']} ({skipped['reason']})")
    return lines


async def command(
    bootstrap: str,
    transaction_id: str,
    action: RouteAction,
    lender: str | None,
    wait_s: float,
    by: str = "staff",
) -> tuple[int, str]:
    """`rshub route`: the staff action of `hub.ops.actions` (the console's and the API's too)."""
    from hub.ops import actions

    return await actions.route(actions.Link(bootstrap, wait_s), transaction_id, action, lender, by)
