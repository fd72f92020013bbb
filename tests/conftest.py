"""Fixtures: a real embedded broker per test, the hub as a real subprocess, NCIP libraries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from hub import topics
from hub.broker import EmbeddedBroker, free_port, wait_for_metadata
from tests.libraries import Library, directory_yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "standards" / "ncip" / "samples"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def bootstrap(broker: EmbeddedBroker) -> str:
    await wait_for_metadata(broker.bootstrap_servers)
    await topics.ensure(broker.bootstrap_servers, topics.load(ROOT / "topics.yaml"))
    return broker.bootstrap_servers


class Hub:
    """`rshub serve` in a subprocess, against the test's broker."""

    def __init__(
        self, bootstrap: str, directory: Path, data_dir: Path, env: dict[str, str]
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RSHUB_DIRECTORY": str(directory),
            "RSHUB_TOPICS_FILE": str(ROOT / "topics.yaml"),
            "RSHUB_HTTP_PORT": str(self.port),
            "RSHUB_DATA_DIR": str(data_dir),
            "RSHUB_APP_ID": f"rshub-test-{uuid.uuid4().hex[:8]}",
            "RSHUB_REPLY_TIMEOUT_S": "45",
            "RSHUB_OUTBOUND_RETRIES": "3",
            "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
            "RSHUB_OUTBOUND_TIMEOUT_S": "5",
            "RSHUB_LOG_FORMAT": "json",
        }
        self.log = data_dir / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"hub exited: {self.log.read_text()[-3000:]}")
                try:
                    async with session.get(f"{self.url}/health") as reply:
                        if reply.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"hub not healthy: {self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.2)  # polling a port that has no event to await

    def kill(self) -> None:
        """Stop without any clean-up, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, Library]]:
    libs = {
        "NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret"),
        "SOUTH": Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret"),
        "EAST": Library("EAST", "01EAST_INST||CENTRAL", "east-secret"),
    }
    for lib in libs.values():
        await lib.start()
    yield libs
    for lib in libs.values():
        await lib.stop()


@pytest.fixture
async def hub(bootstrap: str, libraries: dict[str, Library], tmp_path: Path) -> AsyncIterator[Hub]:
    directory = tmp_path / "consortium.yaml"
    directory.write_text(directory_yaml(list(libraries.values()), rota=["SOUTH", "EAST", "NORTH"]))
    env = {f"RSHUB_SECRET_{lib.symbol}": lib.secret for lib in libraries.values()}
    running = Hub(bootstrap, directory, tmp_path, env)
    for lib in libraries.values():
        lib.hub_url = running.url
    await running.start()
    yield running
    running.stop()
