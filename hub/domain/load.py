"""Open-request counts per lender and per (borrower, lender) pair.

The transaction engine writes one record per open request to the compacted `ill.load` topic
(key `lender|transaction`, value: who borrows; a tombstone when the request closes). A request
counts from the moment it is sent to a lender until that lender's attempt ends (answered
Unfilled, timed out, withdrawn) or the transaction closes. Counts are the size of a set, so
they never go negative, a closed request is never counted and a record read twice counts once.
A restarted hub rebuilds the book by reading the topic from the beginning.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from pydantic import BaseModel


class LoadFigures(BaseModel):
    total: int = 0
    from_borrower: int = 0


class LoadView(Protocol):
    def figures(self, lender: str, borrower: str) -> LoadFigures: ...


def load_key(lender: str, transaction_id: str) -> str:
    return f"{lender}|{transaction_id}"


class LoadBook:
    """The open requests each lender holds, as read from ill.load."""

    def __init__(self) -> None:
        self.open: dict[str, dict[str, str]] = defaultdict(dict)
        # (lender, borrower) -> open requests, kept with `open`: routing asks for it for
        # every rota member of every request, so it must not scan what a lender holds.
        self.pairs: dict[tuple[str, str], int] = defaultdict(int)

    def apply(self, key: str, value: dict[str, str] | None) -> None:
        lender, _, transaction_id = key.partition("|")
        held = self.open.get(lender)
        before = held.get(transaction_id) if held is not None else None
        if before is not None:
            self.pairs[(lender, before)] -= 1
            if not self.pairs[(lender, before)]:
                del self.pairs[(lender, before)]
        if value is None:
            if held is not None:
                held.pop(transaction_id, None)
                if not held:
                    del self.open[lender]
        else:
            self.open[lender][transaction_id] = value["borrower"]
            self.pairs[(lender, value["borrower"])] += 1

    def figures(self, lender: str, borrower: str) -> LoadFigures:
        held = self.open.get(lender, {})
        return LoadFigures(total=len(held), from_borrower=self.pairs.get((lender, borrower), 0))


class NoLoad:
    """A view with nothing open (unit tests, tools)."""

    def figures(self, lender: str, borrower: str) -> LoadFigures:
        return LoadFigures()
