"""A faust table recovers every row of its changelog on the embedded broker, however the rows
were batched (issue 23, point 1).

Tansu 0.6.0 answers ListOffsets "latest" with the base offset + 1 of the batch with the newest
timestamp, not the partition's end; faust took a table's recovery end from it, so a worker
started right after a burst of multi-record batches stopped recovering before their rows."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.table_worker import TABLE

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent


async def write_rows(
    bootstrap: str, topic: str, singles: int, batches: int, per: int, first: int = 0
) -> int:
    """`singles` one-record batches, then `batches` batches of `per` records, each a new row
    (keys numbered from `first`); the number of rows written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    written = first
    try:
        for _ in range(singles):
            await producer.send_and_wait(topic, b"value", key=b"row-%d" % written, partition=0)
            written += 1
        for _ in range(batches):
            batch = producer.create_batch()
            for _ in range(per):
                assert batch.append(key=b"row-%d" % written, value=b"value", timestamp=None)
                written += 1
            await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()
    return written - first


async def recovered_rows(bootstrap: str, app_id: str, data_dir: Path) -> int:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.table_worker",
        bootstrap,
        app_id,
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 90)
        # The line may follow the terminal codes of faust's spinner.
        found = re.search(rb"(\d+)\n$", line)
        assert found, line
        return int(found[1])
    finally:
        worker.terminate()
        await worker.wait()


async def test_every_changelog_row_comes_back_after_multi_record_batches(
    bootstrap: str, tmp_path: Path
) -> None:
    app_id = "recovery-test"
    changelog = f"{app_id}-{TABLE}-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, 1, 1)])
    finally:
        await admin.close()
    written = await write_rows(bootstrap, changelog, singles=20, batches=5, per=10)
    assert written == 70
    assert await recovered_rows(bootstrap, app_id, tmp_path / "first") == 70
    # Written again by a restarted worker's neighbours, then restarted right after: still all.
    written += await write_rows(bootstrap, changelog, 0, batches=3, per=25, first=written)
    assert await recovered_rows(bootstrap, app_id, tmp_path / "second") == written
