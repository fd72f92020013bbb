"""The timer: a Tick to each transaction whose next deadline has passed, once per deadline
(the engine clears or moves the deadline when it acts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from connectors.core.model import now
from connectors.core.records import Tick
from connectors.core.topics import Topic
from hub.domain.transaction import Output, as_output
from hub.runtime.writing import Writer

log = structlog.get_logger(__name__)
Rows = Callable[[], Iterable[tuple[str, Any]]]  # this worker's transaction rows


class Timer:
    def __init__(self, rows: Rows, writer: Writer) -> None:
        self.rows = rows
        self.writer = writer
        # The deadline each transaction was last ticked for. Rebuilt from the rows at every
        # tick, so it holds only transactions that still wait for that deadline: its size is
        # bounded by the open transactions, not by every one ever ticked.
        self.ticked: dict[str, str] = {}

    async def tick(self, at: datetime | None = None) -> list[Output]:
        at = at or now()
        due: list[Output] = []
        still: dict[str, str] = {}
        for key, row in self.rows():
            deadline = row.get("next_deadline") if row else None
            if not deadline:
                continue
            if self.ticked.get(key) == deadline:
                still[key] = deadline
                continue
            if datetime.fromisoformat(deadline) <= at:
                still[key] = deadline
                due.append(as_output(Topic.CONTROL, key, Tick(transaction_id=key, at=at)))
        self.ticked = still
        if due:
            log.info("clock.ticks", count=len(due))
            await self.writer.write(due)
        return due
