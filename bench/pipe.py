"""The raw aiokafka pipe: produce (acks=all, linger 0, as the hub's endpoints do) and consume
with `getmany()` in a loop (as faust does), through the broker of the run.

    python -m bench.pipe [--quick]  # the pipe alone; bench.hub runs it beside the hub
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import measure
from bench.measure import Arrivals
from hub.kafka import topics


class Pipe:
    """One producer and one getmany() consumer on a fresh 4-partition topic; the consumer
    reports each record's key to `arrivals` when a batch comes back."""

    def __init__(self, bootstrap: str, size: int, fetch_wait_ms: int) -> None:
        self.bootstrap, self.size, self.fetch_wait_ms = bootstrap, size, fetch_wait_ms
        self.topic = f"bench.pipe.{uuid.uuid4().hex[:8]}"
        self.arrivals = Arrivals()
        self.received = 0

    async def start(self) -> None:
        spec = topics.TopicSpec(name=self.topic, partitions=4, cleanup="delete", purpose="bench")
        await topics.ensure(self.bootstrap, [spec])
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_wait_ms,
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await self.consumer.start()
        await self.producer.start()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=1000)
            at = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self.received += 1
                    self.arrivals.arrived(record.key.decode() if record.key else "", at)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.producer.stop()
        await self.consumer.stop()

    async def send(self, key: str, _n: int) -> None:
        payload = key.encode().ljust(self.size, b"x")
        await self.producer.send_and_wait(self.topic, key=key.encode(), value=payload)

    async def pipelined(self, count: int) -> dict[str, float]:
        """Throughput with nothing awaited per message: the broker's ceiling for this size."""
        before = self.received
        start = time.perf_counter()
        payload = b"x" * self.size
        pending = [
            await self.producer.send(self.topic, key=f"pipelined-{i}".encode(), value=payload)
            for i in range(count)
        ]
        await asyncio.gather(*pending)
        while self.received - before < count:
            await asyncio.sleep(0.005)  # the consumer task counts; nothing else to await
        elapsed = time.perf_counter() - start
        return {"messages": count, "per_second": count / elapsed}


async def pipelined_throughput(
    bootstrap: str, size: int, count: int, fetch_wait_ms: int
) -> dict[str, float]:
    """Only the pipelined figure (bench.codecs compares its codecs with it)."""
    pipe = Pipe(bootstrap, size, fetch_wait_ms)
    await pipe.start()
    try:
        return await pipe.pipelined(count)
    finally:
        await pipe.stop()


async def measure_pipe(
    bootstrap: str,
    size: int,
    fetch_wait_ms: int,
    single: int,
    per_level: int,
    levels: Sequence[int] = measure.INFLIGHT,
) -> dict[str, Any]:
    pipe = Pipe(bootstrap, size, fetch_wait_ms)
    await pipe.start()
    try:
        measure.say("raw pipe ...")
        await measure.closed_loop(pipe.send, pipe.arrivals, 10, 1, "pipe warm-up", "warm")
        result = await measure.load_levels(
            pipe.send, pipe.arrivals, single, per_level, levels, "pipe"
        )
        result["pipelined"] = await pipe.pipelined(per_level)
        result["fetch_wait_ms"] = fetch_wait_ms
        result["message_bytes"] = size
        return result
    finally:
        await pipe.stop()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with measure.broker() as broker:
        wait = measure.fetch_wait_ms(broker.embedded, args.fetch_wait_ms)
        return await measure_pipe(broker.bootstrap, args.size, wait, args.single, args.per_level)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1500, help="message bytes")
    parser.add_argument("--single", type=int, default=200, help="messages one at a time")
    parser.add_argument("--per-level", type=int, default=2000, help="messages per load level")
    parser.add_argument("--fetch-wait-ms", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small counts")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.single, arguments.per_level = 30, 300
    result = asyncio.run(main(arguments))
    rows = [
        [
            "one at a time",
            None,
            result["one_at_a_time"]["p50_ms"],
            result["one_at_a_time"]["p99_ms"],
        ]
    ]
    rows += [
        [f"{k} in flight", v["per_second"], v["p50_ms"], v["p99_ms"]]
        for k, v in result["load"].items()
    ]
    rows.append(["pipelined", result["pipelined"]["per_second"], None, None])
    print(measure.table(["raw pipe", "msg/s", "p50 ms", "p99 ms"], rows))
    print(f"written: {measure.write_result('pipe', result)}")
