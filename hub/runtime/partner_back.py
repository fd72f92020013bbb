"""A partner answers again: every transaction of this worker with deliveries waiting for it
sends them now, each through the engine, as a Redeliver on ill.control."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from connectors.core.records import PartnerBack, Redeliver
from connectors.core.topics import Topic
from hub.domain.transaction import Sending, as_output
from hub.runtime.writing import Writer

log = structlog.get_logger(__name__)
HANDLED_MEMORY = 1024  # PartnerBack refs remembered (each comes once per partition)
Rows = Callable[[], Iterable[tuple[str, Any]]]  # this worker's transaction rows


class PartnerBackAgent:
    def __init__(self, rows: Rows, writer: Writer) -> None:
        self.rows = rows
        self.writer = writer
        self.handled: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first

    def waiting(self, partner: str) -> list[str]:
        """This worker's transactions with a delivery to `partner` waiting for a retry or
        parked."""
        return [
            key
            for key, row in self.rows()
            if row
            and any(
                p["command"]["recipient"] == partner
                and p["status"] in (Sending.RETRY.value, Sending.PARKED.value)
                for p in row.get("pending", [])
            )
        ]

    async def handle(self, back: PartnerBack) -> list[str]:
        if back.ref in self.handled:
            return []  # one copy per partition; this worker's table answers for all of them
        self.handled[back.ref] = None
        if len(self.handled) > HANDLED_MEMORY:
            del self.handled[next(iter(self.handled))]
        waiting = self.waiting(back.partner)
        commands = [
            as_output(
                Topic.CONTROL,
                key,
                Redeliver(
                    command_id=f"{back.ref}:{key}",
                    transaction_id=key,
                    partner=back.partner,
                    by="rshub (partner answered again)",
                ),
            )
            for key in waiting
        ]
        if commands:
            await self.writer.write(commands)
            log.info("partner.back", partner=back.partner, transactions=len(waiting))
        return waiting
