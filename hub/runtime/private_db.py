"""A SQLite file only its owner may read, for the services' outboxes (webhooks, patron
notices): they hold secrets and patrons' addresses. One connection per holder; WAL lets the
API and a service write the same file, one at a time."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path


class PrivateDb:
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
        self.db.executescript(schema)

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
