"""The outboxes' private SQLite file (hub.runtime.private_db): readable by its owner only, and
safe to hold open more than once in a process while other processes read it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from hub.runtime.patron_notices import Store


def count_elsewhere(path: Path) -> int:
    """The notices another process sees (it opens, reads and closes the file, as an
    operator's sqlite3 or a test would)."""
    code = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
        " print(db.execute('SELECT COUNT(*) FROM notices').fetchone()[0]); db.close()"
    )
    found = subprocess.run(
        [sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True
    )
    return int(found.stdout)


def test_a_second_connection_in_the_process_keeps_the_firsts_writes_visible(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    following, sending = Store(path), Store(path)  # as an outbox's two tasks hold it
    following.take({0: 1}, [("t1:e1", "WEB", "t1", "Loaned", b"mail")], time.time())
    assert count_elsewhere(path) == 1
    # Had opening `sending` dropped the process's locks on the file, the other process's
    # close would have taken the WAL away: what is written now would be seen by no one.
    following.take({0: 2}, [("t1:e2", "WEB", "t1", "Overdue", b"mail")], time.time())
    assert count_elsewhere(path) == 2
    assert path.stat().st_mode & 0o077 == 0
    following.close()
    sending.close()
