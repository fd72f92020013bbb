"""Every listening port bounded (issue 22): the partners' TCP ports cap connections in all and
let a refused partner read its refusal; a flood of idle connections on the console's port
neither takes the descriptors the partners' ports need nor stays."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp

from connectors.core.directory import Directory
from connectors.iso10161 import codec
from connectors.slnp.server import SlnpListener
from hub.ops.console.app import Console
from tests.edge_helpers import gateway, port
from tests.tcp_helpers import send_then_read

ROOT = Path(__file__).resolve().parent.parent
NORTH = {
    "symbol": "NORTH",
    "name": "North",
    "protocol": "ncip",
    "endpoint": "http://127.0.0.1:9/ncip",
    "agency_ids": ["01NORTH_INST||MAIN"],
}
DIRECTORY = Directory.model_validate({"consortium": "Ports", "partners": [NORTH]})


def slnp_port(running: object) -> int:
    listeners = getattr(running, "listeners")  # noqa: B009
    return next(lst for lst in listeners if isinstance(lst, SlnpListener)).port


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True


async def test_a_partner_still_sending_reads_the_iso10161_error_report() -> None:
    async with gateway(DIRECTORY) as (running, _kafka):
        # A byte that starts no APDU, then more: the stream is refused while it goes on.
        said, error = await send_then_read(port(running, "iso10161"), b"\x00" * 600_000)
    assert error is None  # not reset: the hub half-closed and read what still came
    name, value = codec.decode(codec.Splitter(max_apdu=65536).feed(said)[0])
    assert name == "Status-Or-Error-Report" and "error-report" in value
    assert "does not start an APDU" in str(value["note"])


async def test_the_partners_tcp_ports_cap_connections_in_all() -> None:
    async with gateway(DIRECTORY, max_connections=3, max_connections_per_source=10) as (
        running,
        _kafka,
    ):
        for name, number in (("iso10161", port(running, "iso10161")), ("slnp", slnp_port(running))):
            held = [
                await asyncio.open_connection("127.0.0.1", number, local_addr=(f"127.0.0.{n}", 0))
                for n in (2, 3, 4)
            ]
            # A fourth, from yet another address: over the port's cap, closed at once.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", number, local_addr=("127.0.0.5", 0)
            )
            assert await closed_by_peer(reader, 5), name
            writer.close()
            for _reader, held_writer in held:
                held_writer.close()


class DescriptorPeak:
    """The most descriptors this process held above its count at the start, sampled by a
    thread of its own as fast as it can list them while the block runs."""

    def __init__(self) -> None:
        self.start = len(os.listdir("/proc/self/fd"))
        self.peak = 0
        self.done = threading.Event()

    def _sample(self) -> None:
        while not self.done.is_set():
            try:
                held = len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
            except OSError:  # out of descriptors this moment: that is the limit's worth
                held = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self.peak = max(self.peak, held - self.start)

    def __enter__(self) -> DescriptorPeak:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()


# Holds COUNT connections to a port from SOURCES loopback addresses, says how many it got,
# waits for a line on stdin, then for up to WAIT seconds for the hub to close them, and says
# how many are still open. A process of its own: its descriptors are not the hub's.
FLOOD = r"""
import json, selectors, socket, sys, time
port, count, sources, wait = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
held = []
for n in range(count):
    sock = socket.socket()
    sock.bind((f"127.0.0.{2 + n % sources}", 0))
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        continue
    held.append(sock)
print(len(held), flush=True)
sys.stdin.readline()
watch = selectors.DefaultSelector()
for sock in held:
    watch.register(sock, selectors.EVENT_READ)
still = set(held)
until = time.monotonic() + wait
while still and time.monotonic() < until:
    for key, _ in watch.select(0.2):
        try:
            gone = key.fileobj.recv(1) == b""
        except OSError:
            gone = True
        if gone:
            watch.unregister(key.fileobj)
            still.discard(key.fileobj)
print(json.dumps({"opened": len(held), "still_open": len(still)}), flush=True)
"""


async def test_an_idle_flood_on_the_console_leaves_the_partners_ports_working(
    tmp_path: Path,
) -> None:
    """300 idle connections to the console from 10 addresses, with the hub's descriptors
    limited to 100 more than it uses: without the console's caps they would all be taken
    and no partner port could accept; with them the partners' ports answer, and the
    console closes what it holds after its idle time-out. A refused connection is closed
    as it is accepted: the console never holds much more than its cap even for a moment
    (asyncio's own server held every spare descriptor until it had refused a batch)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    console = Console(
        index_path=tmp_path / "index.sqlite3",
        users_file=tmp_path / "console-users",
        directory=DIRECTORY,
        idle_timeout_s=1.0,
        max_connections_per_source=8,
        max_connections=40,
    )
    async with gateway(DIRECTORY) as (running, _kafka):
        await console.start()
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOOD,
            str(console.port),
            "300",
            "10",
            "15",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert flood.stdin is not None and flood.stdout is not None
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 100, hard)
            )
            with DescriptorPeak() as held:
                opened = int(await asyncio.wait_for(flood.stdout.readline(), 60))
            assert opened > 200  # the over-cap ones are accepted and closed at once
            assert console.connections.count <= 40
            assert held.peak <= 40 + 10, held.peak  # the cap, and room for the hub's own
            # Partner traffic on the other ports flows meanwhile.
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port(running, 'http')}/health"
                async with session.get(url) as reply:
                    assert reply.status == 200
            said, error = await send_then_read(port(running, "iso10161"), b"\x00")
            assert error is None and codec.decode(said)[0] == "Status-Or-Error-Report"
            reader, writer = await asyncio.open_connection("127.0.0.1", slnp_port(running))
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
            writer.close()
            # And the console lets go of every idle connection.
            flood.stdin.write(b"go\n")
            await flood.stdin.drain()
            result = json.loads(await asyncio.wait_for(flood.stdout.readline(), 60))
            assert result == {"opened": opened, "still_open": 0}
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            if flood.returncode is None:
                flood.kill()
            await flood.wait()
            await console.stop()


def test_a_free_port_is_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    """Outgoing connections take their local ports from the ephemeral range: a port from
    there could be taken before the simulator, peer or broker that asked for it listens."""
    from connectors.core import connections

    top = connections._ephemeral_start()
    ports = [connections.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(connections.LOWEST_FREE_PORT <= p < top for p in ports), ports
