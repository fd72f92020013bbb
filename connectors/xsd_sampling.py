"""When an XML connector runs its XSD diagnostic.

The check only enriches an accepted message (`schema_errors`, for operators: real peers break
the schema in small ways and are still served), and it costs as much as the rest of decoding.
So it runs on the first message of each kind from each partner, on every message of a kind
whose last check found errors, and on one in `SAMPLE_EVERY` of the others."""

from __future__ import annotations

from collections.abc import Callable

SAMPLE_EVERY = 50


class SchemaSampler:
    def __init__(self, every: int = SAMPLE_EVERY) -> None:
        self.every = every
        self.checks: dict[tuple[str, str], tuple[int, bool]] = {}  # (count, had errors)

    def errors(self, sender: str, kind: str, diagnose: Callable[[], list[str]]) -> list[str]:
        """`diagnose()`'s findings when this message is due for the check, else none."""
        count, had_errors = self.checks.get((sender, kind), (0, False))
        self.checks[(sender, kind)] = (count + 1, had_errors)
        if not had_errors and count % self.every:
            return []
        found = diagnose()
        self.checks[(sender, kind)] = (count + 1, bool(found))
        return found
