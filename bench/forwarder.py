"""The minimal forwarder, the baseline the hub is judged against: HTTP in -> aiokafka -> HTTP
out, no parsing and no state.

It runs in its own process, like the hub, so that its CPU figures compare with the hub's. An
aiohttp server takes a POST body and produces it (acks=all, linger 0, as the hub's endpoints
do) before answering; a consumer reads the topic with `getmany()` in a loop (fetch max wait as
the hub's consumers on this broker kind) and POSTs each record's value to the target over one
kept-alive aiohttp session, the records of a batch concurrently.

    python -m bench.forwarder serve --bootstrap HOST:PORT --topic T --target URL --port P \
        [--fetch-wait-ms W]    # prints "ready" when it takes requests

The rest of this module is the bench side: start it as a child process, a load client with one
session and a sink that timestamps what the forwarder delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import measure
from bench.measure import Arrivals
from connectors.core.connections import free_port
from hub.cli.process import ROOT
from hub.kafka import topics

# -- the forwarder process ----------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=args.fetch_wait_ms,
    )
    await producer.start()
    await consumer.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def inbound(request: web.Request) -> web.Response:
        await producer.send_and_wait(args.topic, value=await request.read())
        return web.Response(text="ok")

    async def post(body: bytes) -> None:
        async with session.post(args.target, data=body) as reply:
            await reply.read()

    async def outbound() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            bodies = [r.value for records in batch.values() for r in records if r.value]
            if bodies:
                await asyncio.gather(*(post(body) for body in bodies))

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/in", inbound)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    forwarding = asyncio.create_task(outbound())
    print("ready", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    await stopping.wait()
    forwarding.cancel()
    await asyncio.gather(forwarding, return_exceptions=True)
    await runner.cleanup()
    await session.close()
    await consumer.stop()
    await producer.stop()


# -- the bench side -------------------------------------------------------------------------


class ForwarderProcess:
    def __init__(self, bootstrap: str, target: str, fetch_wait_ms: int) -> None:
        self.bootstrap, self.target, self.fetch_wait_ms = bootstrap, target, fetch_wait_ms
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/in"
        self.topic = f"bench.forward.{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self, timeout: float = 30.0) -> None:
        spec = topics.TopicSpec(name=self.topic, partitions=4, cleanup="delete", purpose="bench")
        await topics.ensure(self.bootstrap, [spec])
        command = [
            sys.executable,
            "-m",
            "bench.forwarder",
            "serve",
            "--bootstrap",
            self.bootstrap,
            "--topic",
            self.topic,
            "--target",
            self.target,
            "--port",
            str(self.port),
            "--fetch-wait-ms",
            str(self.fetch_wait_ms),
        ]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"forwarder did not start: {line!r}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Sink:
    """The receiving partner: an HTTP server that timestamps each delivery on arrival. A body
    starts with its message id and a newline."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/out"
        self.arrivals = Arrivals()

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/out", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.arrived(body.split(b"\n", 1)[0].decode(), time.perf_counter())
        return web.Response(text="ok")

    async def stop(self) -> None:
        await self.runner.cleanup()


class Client:
    """The sending partner: POSTs bodies of the given size over one kept-alive session."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self.session = aiohttp.ClientSession()

    async def send(self, key: str, _n: int) -> None:
        body = (key.encode() + b"\n").ljust(self.size, b"x")
        async with self.session.post(self.url, data=body) as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"forwarder answered {reply.status}")

    async def close(self) -> None:
        await self.session.close()


async def measure_forwarder(
    broker: measure.Broker,
    size: int,
    fetch_wait_ms: int,
    single: int,
    per_level: int,
    levels: Sequence[int] = measure.INFLIGHT,
    idle_s: float = 10.0,
) -> dict[str, Any]:
    sink = Sink()
    await sink.start()
    forwarder = ForwarderProcess(broker.bootstrap, sink.url, fetch_wait_ms)
    client = Client(forwarder.url, size)
    try:
        measure.say("minimal forwarder: starting ...")
        await forwarder.start()
        pids = {"forwarder": forwarder.pid, "broker": broker.pid}
        await measure.closed_loop(client.send, sink.arrivals, 10, 1, "forwarder warm-up", "w")
        measure.say(f"minimal forwarder: idle CPU over {idle_s:g} s ...")
        idle = await measure.idle_cpu(pids, idle_s)
        result = await measure.load_levels(
            client.send, sink.arrivals, single, per_level, levels, "forwarder", pids
        )
        result["idle_cpu_cores"] = idle
        result["fetch_wait_ms"] = fetch_wait_ms
        return result
    finally:
        await client.close()
        forwarder.stop()
        await sink.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serving = sub.add_parser("serve", help="run the forwarder (started by the benchmarks)")
    serving.add_argument("--bootstrap", required=True)
    serving.add_argument("--topic", required=True)
    serving.add_argument("--target", required=True)
    serving.add_argument("--port", type=int, required=True)
    serving.add_argument("--fetch-wait-ms", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(serve(arguments))
