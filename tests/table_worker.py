"""A faust worker with one table, run as its own process by tests/test_table_recovery.py:
python -m tests.table_worker BOOTSTRAP APP_ID DATA_DIR. Once the table's recovery has ended it
prints the number of rows it holds, one line, and keeps running until it is ended."""

from __future__ import annotations

import os
import sys
from typing import Any, cast

import faust

from hub.kafka import fetching

TABLE = "rows"


def build(bootstrap: str, app_id: str, data_dir: str) -> fetching.App:
    app = fetching.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
    )
    table = app.Table(TABLE, default=None, partitions=1, key_type=bytes, value_type=bytes)
    # What the store reads keys and values back with at recovery (hub.runtime.agents does the same).
    cast(Any, table).key_serializer = "raw"
    cast(Any, table).value_serializer = "raw"
    said = False

    @app.timer(0.2)
    async def report() -> None:
        nonlocal said
        recovery = cast(Any, app.tables).recovery
        if not said and recovery.completed.is_set():
            said = True
            # To the process's own stdout: faust's worker sends sys.stdout to its log.
            os.write(1, b"%d\n" % len(table))

    return app


if __name__ == "__main__":
    faust.Worker(build(*sys.argv[1:4]), loglevel="warning", quiet=True).execute_from_commandline()
