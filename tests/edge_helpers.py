"""Helpers for the edge tests: a gateway without Kafka (the broker replaced by a record of
what would have been written) and test certificates made with the openssl CLI."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaConnectionError

from connectors.core.directory import Directory
from connectors.iso10161.transport import Iso10161Server
from connectors.registry import CONNECTORS
from hub.runtime import app as assembly
from hub.runtime.gateway import Gateway
from hub.runtime.settings import Settings


class FakeKafka:
    """Stands in for KafkaIO: keeps what the gateway writes; `up` says whether the broker
    answers (metadata and writes fail while it is False)."""

    def __init__(self) -> None:
        self.up = True
        self.audited: list[bytes] = []
        self.inbound: list[bytes] = []
        self.dead: list[Any] = []
        self.items = SimpleNamespace(lookup=lambda *args: None, retried=lambda *args: None)
        self.verdicts = SimpleNamespace(expect=self._expect, forget=lambda message_id: None)
        self.producer = SimpleNamespace(client=SimpleNamespace(fetch_all_metadata=self._metadata))

    async def _metadata(self) -> None:
        if not self.up:
            raise KafkaConnectionError("broker down")

    def _expect(self, message_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)  # no verdict: the gateway answers as accepted
        return future

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def audit(self, direction: str, protocol: str, partner: Any, body: bytes, *a: Any) -> str:
        if not self.up:
            raise KafkaConnectionError("broker down")
        self.audited.append(body)
        return f"ill.audit/0/{len(self.audited)}"

    async def send(
        self, topic: str, key: str, value: bytes | None, wait_verdict: bool = False
    ) -> str:
        if not self.up:
            raise KafkaConnectionError("broker down")
        self.inbound.append(value or b"")
        return f"{topic}/0/{len(self.inbound)}"

    async def deadletter(self, letter: Any) -> None:
        self.dead.append(letter)


@asynccontextmanager
async def gateway(directory: Directory, **settings: Any) -> AsyncIterator[tuple[Gateway, Any]]:
    """A started gateway (HTTP and ISO 10161 on free loopback ports) over FakeKafka."""
    from connectors.core.connections import bind

    # Settings named iso10161_<field> are the ISO 10161 connector's own.
    own = {k.removeprefix("iso10161_"): v for k, v in settings.items() if k.startswith("iso10161_")}
    hub = {k: v for k, v in settings.items() if not k.startswith("iso10161_")}
    config = Settings(http_port=0, broker_check_interval_s=0.05, **hub)
    loaded = {
        c.name: c.settings.model_validate(
            {"port": 0, **(own if c.name == "iso10161" else {})}
            if "port" in c.settings.model_fields
            else {}
        )
        for c in CONNECTORS
    }
    listeners = assembly.listeners(CONNECTORS, config, loaded, directory, every=True)
    for listener in listeners:
        listener.bind()
    kafka = FakeKafka()
    running = Gateway(
        config,
        directory,
        kafka,  # type: ignore[arg-type]
        CONNECTORS,
        config.limits(),
        connector_settings=loaded,
        listeners=listeners,
        http_socket=bind("127.0.0.1", 0, "HTTP"),
        agents=lambda: {"transaction_agent": "running"},
    )
    await running.start()
    try:
        yield running, kafka
    finally:
        await running.stop()


def port(running: Gateway, name: str) -> int:
    if name == "http":
        assert running.http_socket is not None
        return int(running.http_socket.getsockname()[1])
    server = next(lst for lst in running.listeners if isinstance(lst, Iso10161Server))
    assert server.sock is not None
    return int(server.sock.getsockname()[1])


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


class Certificates:
    """A throw-away CA, the hub's server certificate and client certificates, made in a
    temporary folder at test time (never committed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca_key, self.ca = folder / "ca.key", folder / "ca.pem"
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", self.ca_key, "-out", self.ca,
        )  # fmt: skip
        self.server, self.server_key = self.issue("127.0.0.1")

    def issue(self, name: str) -> tuple[Path, Path]:
        key, csr, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", csr)  # fmt: skip
        openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "2", "-out", cert,
        )  # fmt: skip
        return cert, key

    @staticmethod
    def fingerprint(cert: Path) -> str:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()

    def client(self, name: str | None) -> ssl.SSLContext:
        """A client context trusting the CA, presenting `name`'s certificate (None: none)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False
        if name:
            cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
            if not cert.exists():
                cert, key = self.issue(name)
            context.load_cert_chain(cert, key)
        return context
