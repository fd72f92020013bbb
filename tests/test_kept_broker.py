"""The embedded broker outlives `rshub serve`: a restarted hub (stopped, or killed) finds it
through the data folder and goes on with every open loan; `rshub broker status|stop`; a
broker nothing can find any more does not linger."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.core.model import Event, Message
from connectors.ncip import writer
from connectors.simulator import Library, directory_yaml
from hub.cli.process import HubProcess
from hub.kafka import embedded as broker
from hub.kafka import partition_ends, snapshots, topics
from tests.test_e2e_ncip import DUE, ask, lend, say

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent


def rshub(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RSHUB_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": ""}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def gone(pid: int, timeout_s: float = 30.0) -> bool:
    """Whether the process ends (its pidfd becomes readable) within the time-out."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([handle], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(handle)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    broker.stop(folder)  # whatever the test left running


@pytest.fixture
async def embedded_hub(
    libraries: dict[str, Library], data_dir: Path, tmp_path: Path
) -> AsyncIterator[HubProcess]:
    """The hub as an operator starts it: no KAFKA_BOOTSTRAP_SERVERS, so on the embedded
    broker of its data folder."""
    directory = tmp_path / "consortium.yaml"
    directory.write_text(directory_yaml(list(libraries.values()), rota=list(libraries)))
    env = {f"RSHUB_SECRET_{lib.symbol}": lib.secret for lib in libraries.values()}
    env.update({"RSHUB_OUTBOUND_RETRIES": "3", "RSHUB_OUTBOUND_BACKOFF_S": "0.1"})
    running = HubProcess("", directory, data_dir, env)
    for lib in libraries.values():
        lib.hub_url = running.url
    await running.start()
    yield running
    running.stop()


async def health(hub: HubProcess) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/health") as reply:
        assert reply.status == 200
        return dict(await reply.json())


async def test_a_loan_survives_restarts_of_the_hub_on_the_embedded_broker(
    embedded_hub: HubProcess, libraries: dict[str, Library], data_dir: Path
) -> None:
    hub = embedded_hub
    north, south = libraries["NORTH"], libraries["SOUTH"]
    kept = broker.running(data_dir)
    assert kept is not None
    said = await health(hub)
    assert said["storage"] == "embedded broker, in memory, snapshot every 300 s"
    assert said["loss_bound_s"] == 300
    assert "loses at most what was written in the last 300 s" in str(said["warning"])
    assert "Apache Kafka" in str(said["warning"]) and "docker" in str(said["warning"])
    # Said plainly at start-up as well.
    assert "loses at most what was written in the last 300 s" in hub.log.read_text()

    lender_id = await lend(north, south, "K-1", "BC-K1")

    # An orderly stop (an upgrade): the broker stays, the next serve reuses it.
    hub.stop()
    assert broker.running(data_dir) == kept
    status = rshub("broker", "status", data_dir=data_dir)
    assert status.returncode == 0 and kept.address in status.stdout
    assert "used by a running `rshub serve`: no" in status.stdout
    await hub.start()
    assert broker.running(data_dir) == kept
    await say(north, Event.RECEIVED, "K-1", item_id="BC-K1")
    assert (await south.next()).event is Event.RECEIVED

    # A crash in the middle of a step: accepted, then the hub dies without clean-up.
    returned = writer.encode(
        Message(event=Event.SHIPPED_RETURN, request_id="K-1", item_id="BC-K1"),
        from_agency=north.agency_id,
        to_agency="RSHUB",
    )
    status_code, response = await north.post(returned)
    assert status_code == 200 and response.ok
    hub.kill()
    assert broker.running(data_dir) == kept
    await hub.start()
    shipped = await south.next()
    assert shipped.event is Event.SHIPPED_RETURN
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-K1")
    assert (await north.next()).event is Event.LOAN_COMPLETED
    # Nothing twice, but for what the design allows: a kill during the call to SOUTH (the
    # "sending" mark durable, the "delivered" one not) sends the step once more after the
    # restart, the same message, and the hub says so (a slow machine lands the kill there).
    again = []
    while not south.received.empty():
        again.append(south.received.get_nowait())
    assert north.received.empty()
    if again:
        assert [m.message_id for m in again] == [shipped.message_id], again
        assert hub.log.read_text().count('"delivery.resent"') == 1

    # The broker is not stopped under a running hub; once the hub is gone it is.
    refused = rshub("broker", "stop", data_dir=data_dir)
    assert refused.returncode == 2 and "uses the embedded broker" in refused.stderr
    hub.stop()
    stopped = rshub("broker", "stop", data_dir=data_dir)
    assert stopped.returncode == 0 and kept.address in stopped.stdout
    assert gone(kept.pid) and gone(kept.broker_pid)
    after = rshub("broker", "status", data_dir=data_dir)
    assert after.returncode == 1 and "no embedded broker is running" in after.stdout


async def test_open_loans_continue_after_the_broker_is_stopped_and_started(
    embedded_hub: HubProcess, libraries: dict[str, Library], data_dir: Path
) -> None:
    """`rshub broker stop` (an upgrade, a reboot) with loans open in several states; the
    next `serve` restores the snapshot and every loan goes on to its end, each step once."""
    hub = embedded_hub
    north, south, east = libraries["NORTH"], libraries["SOUTH"], libraries["EAST"]
    loaned = await lend(north, south, "S-1", "BC-S1")  # with the borrower
    await ask(east, "S-2")  # asked of a lender who has not answered yet
    asked = (await north.next()).request_id
    received = await lend(south, north, "S-3", "BC-S3")  # and received by the borrower
    await say(south, Event.RECEIVED, "S-3", item_id="BC-S3")
    assert (await north.next()).event is Event.RECEIVED

    hub.stop()
    kept = broker.running(data_dir)
    assert kept is not None
    stopped = rshub("broker", "stop", data_dir=data_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert gone(kept.pid) and gone(kept.broker_pid)
    await hub.start()
    assert broker.running(data_dir) != kept  # a new broker, with the old one's data

    await say(north, Event.RECEIVED, "S-1", item_id="BC-S1")
    assert (await south.next()).event is Event.RECEIVED
    await say(north, Event.SHIPPED_RETURN, "S-1", item_id="BC-S1")
    assert (await south.next()).event is Event.SHIPPED_RETURN
    await say(south, Event.LOAN_COMPLETED, loaned, item_id="BC-S1")
    assert (await north.next()).event is Event.LOAN_COMPLETED

    await say(north, Event.LOANED, asked, item_id="BC-S2", due_date=DUE)
    assert (await east.next()).event is Event.LOANED

    await say(south, Event.SHIPPED_RETURN, "S-3", item_id="BC-S3")
    assert (await north.next()).event is Event.SHIPPED_RETURN
    await say(north, Event.LOAN_COMPLETED, received, item_id="BC-S3")
    assert (await south.next()).event is Event.LOAN_COMPLETED
    for library in (north, south, east):
        assert library.received.empty()  # nothing twice


def test_a_broker_is_reused_only_while_its_keeper_lives(data_dir: Path) -> None:
    first, reused = broker.ensure(data_dir)
    assert not reused
    again, reused = broker.ensure(data_dir)
    assert (again, reused) == (first, True)

    # A keeper killed outright takes its broker with it; its record, left behind, is
    # recognised as stale (the keeper's lock is free) and a new broker is started.
    os.kill(first.pid, 9)
    assert gone(first.pid) and gone(first.broker_pid)
    assert json.loads((data_dir / broker.RECORD).read_text())["pid"] == first.pid
    assert broker.running(data_dir) is None
    fresh, reused = broker.ensure(data_dir)
    assert not reused and fresh.pid != first.pid


def test_a_broker_whose_data_folder_is_removed_stops(data_dir: Path) -> None:
    kept, _ = broker.ensure(data_dir)
    shutil.rmtree(data_dir)  # nothing can find it any more: it must not linger
    assert gone(kept.pid, timeout_s=6 * broker.WATCH_S)
    assert gone(kept.broker_pid)


def test_a_stale_pid_in_the_record_is_never_signalled(data_dir: Path) -> None:
    """A record naming a pid that now belongs to some other program (here: this test) is
    not believed: no keeper holds the lock."""
    data_dir.mkdir(parents=True)
    stale = broker.KeptBroker(os.getpid(), os.getpid(), "127.0.0.1:9", "2020-01-01T00:00:00")
    (data_dir / broker.RECORD).write_text(json.dumps(stale.__dict__))
    assert broker.running(data_dir) is None
    assert broker.stop(data_dir) is None  # and this process is still here
    status = rshub("broker", "status", data_dir=data_dir)
    assert status.returncode == 1


async def _write_and_commit(address: str, count: int) -> None:
    """`count` records on ill.inbound/0 in one batch and ten alone; the group `readers`
    committed at 5."""
    await broker.wait_for_metadata(address)
    await topics.ensure(address, topics.load())
    producer = AIOKafkaProducer(bootstrap_servers=address)
    await producer.start()
    try:
        batch = producer.create_batch()
        for n in range(count):
            batch.append(key=b"k%d" % n, value=b"v%d" % n, timestamp=None, headers=[("h", b"1")])
        await (await producer.send_batch(batch, "ill.inbound", partition=0))
        for n in range(count, count + 10):
            await producer.send_and_wait("ill.inbound", b"v%d" % n, key=b"k%d" % n, partition=0)
    finally:
        await producer.stop()
    group = AIOKafkaConsumer(
        bootstrap_servers=address, group_id="readers", enable_auto_commit=False
    )
    await group.start()
    try:
        group.assign([TopicPartition("ill.inbound", 0)])
        await group.commit({TopicPartition("ill.inbound", 0): 5})
    finally:
        await group.stop()


async def _held(address: str) -> tuple[list[tuple[int, bytes | None]], int | None]:
    """ill.inbound/0's records (offset, value) and the group `readers`' committed offset."""
    tp = TopicPartition("ill.inbound", 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=address, group_id="readers", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        committed = await consumer.committed(tp)
        end = (await partition_ends.end_offsets(consumer, [tp]))[tp]
        await consumer.seek_to_beginning(tp)
        held = []
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                held.append((record.offset, record.value))
        return held, committed
    finally:
        await consumer.stop()


async def test_the_broker_keeps_its_data_across_a_stop(data_dir: Path) -> None:
    kept, _ = broker.ensure(data_dir)
    await _write_and_commit(kept.address, 50)
    before = await _held(kept.address)
    assert len(before[0]) == 60 and before[1] == 5

    stopped = rshub("broker", "stop", data_dir=data_dir)
    assert stopped.returncode == 0 and "snapshot" in stopped.stdout
    assert gone(kept.pid) and gone(kept.broker_pid)
    status = rshub("broker", "status", data_dir=data_dir)
    assert "last snapshot" in status.stdout and "bytes" in status.stdout

    again, reused = broker.ensure(data_dir)
    assert not reused and again.broker_pid != kept.broker_pid
    assert await _held(again.address) == before  # same offsets, same committed offset
    status = rshub("broker", "status", data_dir=data_dir)
    assert status.returncode == 0 and "last snapshot" in status.stdout
    assert "loses at most what was written in the last 300 s" in status.stdout


def test_a_damaged_snapshot_is_refused_and_left_as_it_was(data_dir: Path) -> None:
    broker.ensure(data_dir)
    broker.stop(data_dir)
    path = data_dir / snapshots.FILE
    damaged = path.read_bytes()[:-10]
    path.write_bytes(damaged)
    with pytest.raises(broker.BrokerError, match="damaged or truncated"):
        broker.ensure(data_dir)
    assert path.read_bytes() == damaged  # kept for the operator, never overwritten
    assert broker.running(data_dir) is None


async def test_a_clean_shutdown_signalling_keeper_and_broker_at_once_loses_nothing(
    data_dir: Path,
) -> None:
    """A machine's shutdown sends SIGTERM to every process at once: the broker must not end
    before its keeper has written the snapshot."""
    kept, _ = broker.ensure(data_dir)
    await _write_and_commit(kept.address, 40)
    before = await _held(kept.address)
    os.kill(kept.broker_pid, 15)
    os.kill(kept.pid, 15)
    assert gone(kept.pid) and gone(kept.broker_pid)
    again, reused = broker.ensure(data_dir)
    assert not reused
    assert await _held(again.address) == before


async def _snapshot_after(data_dir: Path, moment: float) -> None:
    """Until the keeper has written a snapshot after `moment` (a deadline, not a guess)."""
    deadline = time.monotonic() + 30
    while (last := snapshots.summary(data_dir)) is None or last.taken <= moment:
        assert time.monotonic() < deadline, "no snapshot was written"
        await asyncio.sleep(0.1)


async def test_a_killed_broker_is_restarted_from_the_last_snapshot(data_dir: Path) -> None:
    kept, _ = broker.ensure(data_dir, snapshot_s=1.0)
    await _write_and_commit(kept.address, 30)
    written = time.time()
    before = await _held(kept.address)
    await _snapshot_after(data_dir, written)
    os.kill(kept.broker_pid, 9)  # a crash of the broker alone
    assert gone(kept.broker_pid)
    deadline = time.monotonic() + 30
    while (now := broker.running(data_dir)) is None or now.broker_pid == kept.broker_pid:
        assert time.monotonic() < deadline, "the keeper did not restart the broker"
        await asyncio.sleep(0.1)
    assert now.address == kept.address and now.pid == kept.pid  # the same address: hubs reconnect
    assert await _held(now.address) == before
    said = (data_dir / broker.LOG).read_text()
    assert said.count("broker.restarted") == 1


async def test_a_hub_goes_on_after_its_broker_is_killed_and_restarted(
    embedded_hub: HubProcess, libraries: dict[str, Library], data_dir: Path
) -> None:
    """The broker process killed under a running hub, nothing written since the last
    snapshot: the keeper restarts it on the same address from the snapshot, the hub
    reconnects by itself and the loan goes on; the keeper says once what happened."""
    hub = embedded_hub
    north, south = libraries["NORTH"], libraries["SOUTH"]
    lender_id = await lend(north, south, "C-1", "BC-C1")
    kept = broker.running(data_dir)
    assert kept is not None
    taken = time.time()
    assert broker.snapshot_now(data_dir)
    await _snapshot_after(data_dir, taken)
    os.kill(kept.broker_pid, 9)
    deadline = time.monotonic() + 30
    while (now := broker.running(data_dir)) is None or now.broker_pid == kept.broker_pid:
        assert time.monotonic() < deadline, "the keeper did not restart the broker"
        await asyncio.sleep(0.1)
    await hub.wait_healthy(60)
    await say(north, Event.RECEIVED, "C-1", item_id="BC-C1")
    assert (await south.next()).event is Event.RECEIVED
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-C1")
    assert (await north.next()).event is Event.LOAN_COMPLETED
    assert south.received.empty() and north.received.empty()
    assert (data_dir / broker.LOG).read_text().count("broker.restarted") == 1
