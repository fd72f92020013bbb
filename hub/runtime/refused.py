"""What input refused before authentication may cost: a bounded prefix and a digest on
ill.audit, at most so many per source address and minute (issue 22.5: 300 refused bodies of
600 KB grew the embedded broker by 174 MB in 7 s, and it applies no retention)."""

from __future__ import annotations

import time
from collections import OrderedDict

WINDOW_S = 60.0
# Sources remembered at once; the oldest is forgotten first (a flood of addresses costs
# bounded memory and at worst lets a forgotten source be audited again).
MAX_SOURCES = 10_000


class RefusedBudget:
    """Per source address: how many refused inputs may still be audited this minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, source: str, at: float | None = None) -> bool:
        at = time.monotonic() if at is None else at
        started, used = self._windows.pop(source, (at, 0))
        if at - started >= WINDOW_S:
            started, used = at, 0
        allowed = used < self.per_minute
        self._windows[source] = (started, used + allowed)
        while len(self._windows) > MAX_SOURCES:
            self._windows.popitem(last=False)
        return allowed
