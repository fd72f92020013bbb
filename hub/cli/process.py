"""`rshub serve` as a child process: used by `rshub demo`, the tests and the benchmark, so each
runs the real hub, not an in-process imitation."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp

from connectors.core.connections import free_port
from hub.kafka import fetching, topics

ROOT = Path(__file__).resolve().parents[2]  # the repository (hub/cli/process.py)
PORT_ATTEMPTS = 3
# What `rshub serve` says when a port it was given is taken (hub.cli.serve).
PORT_TAKEN = re.compile(r"cannot listen on [^ ]+:(\d+) for .*Address already in use")


class HubProcess:
    def __init__(
        self,
        bootstrap: str,
        directory: Path,
        data_dir: Path,
        env: dict[str, str] | None = None,
        topics_file: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.iso10161_port = free_port()
        self.console_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "RSHUB_APP_ID": f"rshub-{uuid.uuid4().hex[:8]}",
            "RSHUB_REPLY_TIMEOUT_S": "45",
            "RSHUB_LOG_FORMAT": "json",
            **(env or {}),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RSHUB_DIRECTORY": str(directory),
            "RSHUB_TOPICS_FILE": str(topics_file or topics.DEFAULT),
            "RSHUB_HTTP_PORT": str(self.port),
            "RSHUB_ISO10161_PORT": str(self.iso10161_port),
            "RSHUB_CONSOLE_PORT": str(self.console_port),
            "RSHUB_DATA_DIR": str(data_dir),
        }
        self.log = data_dir / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 90.0) -> None:
        if "RSHUB_BROKER_SESSION_TIMEOUT_S" not in self.env:
            # The embedded broker holds a joining worker for half the session time-out (3 s
            # of the default 6) and a restarted one for all of it: these hubs come and go
            # often, so on that broker they join in 1.5 s (heartbeats stay every second).
            # Apache Kafka refuses a session time-out under 6 s by default: left as it is.
            try:
                kind = await fetching.broker_kind(self.env["KAFKA_BOOTSTRAP_SERVERS"])
            except Exception:  # no broker yet: the hub's own start says what is wrong
                kind = "unknown"
            if kind == "tansu":
                self.env["RSHUB_BROKER_SESSION_TIMEOUT_S"] = "3"
        # A port chosen free can be taken by another program before the hub binds it (other
        # test runs, clients' ephemeral ports). The console's port is the hub's own business
        # and is chosen again; the partners' ports are already in their settings, so the
        # hub tries them again a moment later.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "hub.cli", "serve"],
                    env=self.env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                await self.wait_healthy(timeout)
                return
            except RuntimeError as exited:
                taken = PORT_TAKEN.search(str(exited))
                if taken is None or attempt == PORT_ATTEMPTS:
                    raise
            if int(taken.group(1)) == self.console_port:
                self.console_port = free_port()
                self.env["RSHUB_CONSOLE_PORT"] = str(self.console_port)
            else:
                await asyncio.sleep(1.0)  # back-off before the same port again

    async def wait_healthy(self, timeout: float) -> None:
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
