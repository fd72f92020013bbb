"""The SQLite file of a service's outbox (hub.runtime.outbox), readable by its owner only:
the outboxes hold secrets and patrons' addresses. One connection per holder; WAL lets the API
and a service write the same file, one at a time.

Beside a store's own tables, the file holds `offsets`, the next ill.events offset per
partition, written in the same SQLite transaction as the entries read up to it. The store's
table of entries (`OUTBOX`) has `partner`, `status` and `due`: WAITING or PARKED, still to send.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

WAITING, PARKED = "waiting", "parked"

OFFSETS = """
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
"""


class PrivateDb:
    OUTBOX: ClassVar[str]  # the table of entries

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only before SQLite writes a byte (its -wal and -shm
        # files take the same mode). Never opened here once it exists: closing a descriptor
        # drops every lock this process holds on the file, so another process closing its
        # connection would take this one's WAL away (the writes after it lost at a restart).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(schema + OFFSETS)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (no upgrade from a read lock to fail)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the position in ill.events -----------------------------------------------------------

    def offsets(self) -> dict[int, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT partition, next FROM offsets")}

    @staticmethod
    def _start_at(db: sqlite3.Connection, ends: dict[int, int]) -> None:
        """Where following starts when it follows from nothing (what was before is not told)."""
        if db.execute("SELECT COUNT(*) FROM offsets").fetchone()[0] == 0:
            db.executemany("INSERT INTO offsets VALUES (?, ?)", sorted(ends.items()))

    @staticmethod
    def _move_to(db: sqlite3.Connection, positions: dict[int, int]) -> None:
        db.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?)", sorted(positions.items()))

    # -- what waits to be sent ------------------------------------------------------------------

    def due(self, now: float) -> Sequence[Any]:
        """The entries to try now, in the order they are to go."""
        raise NotImplementedError

    def prune(self, before: datetime) -> int:
        """Forgets entries done with (sent, or refused for good) before `before`."""
        raise NotImplementedError

    def next_due(self) -> float | None:
        row = self.db.execute(
            f"SELECT MIN(due) FROM {self.OUTBOX} WHERE status IN (?, ?)", (WAITING, PARKED)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def counts(self) -> dict[tuple[str, str], int]:
        """Entries not yet sent, per partner and status."""
        return {
            (r[0], r[1]): r[2]
            for r in self.db.execute(
                f"SELECT partner, status, COUNT(*) FROM {self.OUTBOX} WHERE status IN (?, ?)"
                " GROUP BY partner, status",
                (WAITING, PARKED),
            )
        }
