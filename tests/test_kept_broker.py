"""The embedded broker outlives `rshub serve`: a restarted hub (stopped, or killed) finds it
through the data folder and goes on with every open loan; `rshub broker status|stop`; a
broker nothing can find any more does not linger."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from connectors.core.model import Event, Message
from connectors.ncip import writer
from connectors.simulator import Library, directory_yaml
from hub.cli.process import HubProcess
from hub.kafka import embedded as broker
from tests.test_e2e_ncip import lend, say

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
    assert said["storage"] == "memory only (embedded broker)"
    assert "Apache Kafka" in str(said["warning"]) and "docker" in str(said["warning"])
    assert "in memory only" in hub.log.read_text()  # said plainly at start-up as well

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
    assert (await south.next()).event is Event.SHIPPED_RETURN
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-K1")
    assert (await north.next()).event is Event.LOAN_COMPLETED
    assert south.received.empty() and north.received.empty()  # nothing twice

    # The broker is not stopped under a running hub; once the hub is gone it is.
    refused = rshub("broker", "stop", data_dir=data_dir)
    assert refused.returncode == 2 and "uses the embedded broker" in refused.stderr
    hub.stop()
    stopped = rshub("broker", "stop", data_dir=data_dir)
    assert stopped.returncode == 0 and kept.address in stopped.stdout
    assert gone(kept.pid) and gone(kept.broker_pid)
    after = rshub("broker", "status", data_dir=data_dir)
    assert after.returncode == 1 and "no embedded broker is running" in after.stdout


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
