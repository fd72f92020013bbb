"""Which outbound agents a worker runs: one per protocol a partner speaks, plus any protocol
whose outbound topic still holds commands nobody consumed (a partner that changed protocol
while a step to it waited), so no command is stranded by the directory changing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from connectors.core import directory as directory_module
from connectors.core.contract import Registry
from connectors.core.directory import Directory
from connectors.simulator import Library, TcpLibrary, directory_yaml
from hub.kafka import topics
from hub.runtime import app as assembly
from hub.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _setup(tmp_path: Path) -> tuple[Registry, Directory]:
    registry = assembly.connectors(Settings.from_env({}))
    libs: list[Library | TcpLibrary] = [
        Library("NORTH", "01NORTH_INST||MAIN", "n"),
        Library("SOUTH", "01SOUTH_INST||MAIN", "s"),
    ]
    path = tmp_path / "consortium.yaml"
    path.write_text(directory_yaml(libs, rota=["SOUTH"]))
    return registry, directory_module.load(path, registry.names)


def test_only_spoken_protocols_and_those_with_commands_waiting(tmp_path: Path) -> None:
    registry, directory = _setup(tmp_path)
    quiet = assembly.unspoken_outbound(registry, directory)
    assert "ill.outbound.ncip" not in quiet
    assert quiet["ill.outbound.slnp"] == "slnp"
    assert assembly.delivering(registry, directory, {}) == {"ncip"}
    waiting = {"ill.outbound.slnp": 2, "ill.outbound.openurl": 0, "ill.outbound.artemail": -1}
    # -1: the broker did not say; the agent runs rather than leave commands unread.
    assert assembly.delivering(registry, directory, waiting) == {"ncip", "slnp", "artemail"}


async def test_unread_counts_what_the_group_has_not_committed_past(bootstrap: str) -> None:
    topic, group = "ill.outbound.slnp", "rshub-unread-test"
    assert await topics.unread(bootstrap, group, [topic, "ill.outbound.ncip"]) == {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(topic, b"command", key=b"t1", partition=1)
        await producer.send_and_wait(topic, b"command", key=b"t2", partition=3)
    finally:
        await producer.stop()
    # Never committed: everything from each partition's first offset.
    assert await topics.unread(bootstrap, group, [topic, "ill.outbound.ncip"]) == {topic: 4}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 1), TopicPartition(topic, 3)])
        await consumer.commit(
            {
                TopicPartition(topic, 1): OffsetAndMetadata(2, ""),
                TopicPartition(topic, 3): OffsetAndMetadata(1, ""),
            }
        )
    finally:
        await consumer.stop()
    assert await topics.unread(bootstrap, group, [topic]) == {topic: 1}
    assert await topics.unread(bootstrap, "another-group", [topic]) == {topic: 4}


def test_a_fatal_step_ends_the_worker_at_once_and_says_why() -> None:
    """Records the broker finally refused: the worker exits (committing nothing, like a
    SIGKILL) rather than go on with a table ahead of what is durable."""
    code = (
        "from hub.runtime import logs; logs.configure('INFO');"
        "from hub.runtime.transaction_agent import fatal;"
        "fatal('ill.inbound/2@41', RuntimeError('KafkaTimeoutError'));"
        "print('carried on')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    out = done.stdout + done.stderr
    assert done.returncode == 70, out
    assert "carried on" not in out
    line = next(json.loads(x) for x in out.splitlines() if "agent.fatal" in x)
    assert line["step"] == "ill.inbound/2@41" and "KafkaTimeoutError" in line["error"]
