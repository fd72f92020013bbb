"""Benchmark: the end-to-end path beside the raw broker pipe, measured in the same run.

End to end: a borrower sends a request to the hub in its protocol; the hub acknowledges it in
Kafka, applies it in the transaction agent, routes it and sends it to the lender in the
lender's protocol; the time is taken when the lender has the message. Raw pipe: aiokafka
produces and consumes messages of the same size through the same broker. Figures are reported
as a ratio of the two.

    python -m bench.e2e [--borrower ncip] [--lender ncip] [--messages 400] [--concurrency 16]

Protocols: ncip, iso18626 (HTTP) and iso10161 (TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.simulator import Library, TcpLibrary, directory_yaml
from hub import topics
from hub.broker import EmbeddedBroker, wait_for_metadata
from hub.model import Bibliographic, Event, Message, RequestFormat, transaction_id
from hub.process import ROOT, HubProcess

BOOK = Bibliographic(
    title="Benchmark title", author="Author, A.", isbn="9780000000001", bibliographic_level="Book"
)


def progress(label: str, done: int, total: int) -> None:
    if done % max(1, total // 10) == 0 or done == total:
        print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "messages": len(ordered),
        "per_second": len(ordered) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


async def raw_pipe(
    bootstrap: str, size: int, count: int, topic: str = "bench.pipe"
) -> dict[str, float]:
    """aiokafka through the same broker: throughput pipelined, latency one message at a time.
    The topic must be fresh: the consumer reads it from the beginning."""
    await topics.ensure(bootstrap, [topics.TopicSpec(name=topic, partitions=4, purpose="bench")])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    payload = b"x" * size
    try:
        start = time.perf_counter()
        pending = [
            await producer.send(topic, key=str(i).encode(), value=payload) for i in range(count)
        ]
        await asyncio.gather(*pending)
        received = 0
        while received < count:
            batch = await consumer.getmany(timeout_ms=1000)
            received += sum(len(records) for records in batch.values())
            progress("raw pipe, pipelined", received, count)
        elapsed = time.perf_counter() - start
        latencies = []
        for i in range(count // 4):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, key=str(i).encode(), value=payload)
            await consumer.getone()
            latencies.append(time.perf_counter() - sent)
        result = summary(latencies, 1.0)
        result["per_second"] = count / elapsed
        result["messages"] = count
        return result
    finally:
        await producer.stop()
        await consumer.stop()


async def end_to_end(
    borrower: Library, lender: Library, count: int, concurrency: int
) -> dict[str, float]:
    started: dict[str, float] = {}
    latencies: list[float] = []

    async def lender_side() -> None:
        while len(latencies) < count:
            message = await lender.next(timeout=120)
            latencies.append(time.perf_counter() - started[message.request_id])
            progress("end to end", len(latencies), count)

    async def borrower_side(worker: int) -> None:
        for i in range(worker, count, concurrency):
            request_id = f"B-{i}"
            started[f"{transaction_id(borrower.symbol, request_id)}.1"] = time.perf_counter()
            status, response = await borrower.send(
                Message(
                    event=Event.REQUEST,
                    request_id=request_id,
                    patron_id="p",
                    request_format=RequestFormat.PHYSICAL,
                    bibliographic=BOOK,
                )
            )
            if status != 200 or not response.ok:
                raise RuntimeError(f"hub refused a request: {status} {response}")

    receiving = asyncio.create_task(lender_side())
    start = time.perf_counter()
    await asyncio.gather(*(borrower_side(w) for w in range(concurrency)))
    await receiving
    return summary(latencies, time.perf_counter() - start)


async def unloaded_latency(borrower: Library, lender: Library, count: int) -> dict[str, float]:
    """One request at a time, HTTP in to HTTP out: the latency a partner sees."""
    latencies = []
    for i in range(count):
        sent = time.perf_counter()
        await borrower.send(
            Message(
                event=Event.REQUEST,
                request_id=f"L-{i}",
                patron_id="p",
                request_format=RequestFormat.PHYSICAL,
                bibliographic=BOOK,
            )
        )
        await lender.next(timeout=120)
        latencies.append(time.perf_counter() - sent)
        progress("end to end, one at a time", i + 1, count)
    return summary(latencies, 1.0)


def library(protocol: str, symbol: str) -> Library | TcpLibrary:
    if protocol == "iso10161":
        return TcpLibrary(symbol, f"{symbol}-LIB")
    return Library(symbol, f"{symbol}-LIB", f"bench-{symbol.lower()}", protocol=protocol)


async def main(
    count: int,
    concurrency: int,
    warmup: int,
    borrower_protocol: str = "ncip",
    lender_protocol: str = "ncip",
) -> dict[str, object]:
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    borrower = library(borrower_protocol, "NORTH")
    lender = library(lender_protocol, "SOUTH")
    hub = None
    try:
        await wait_for_metadata(bootstrap)
        await topics.ensure(bootstrap, topics.load(ROOT / "topics.yaml"))
        for lib in (borrower, lender):
            await lib.start()
        workdir = Path(tempfile.mkdtemp(prefix="rshub-bench-"))
        directory = workdir / "consortium.yaml"
        directory.write_text(directory_yaml([borrower, lender], ["SOUTH"]))
        hub = HubProcess(
            bootstrap,
            directory,
            workdir,
            {
                "RSHUB_SECRET_NORTH": borrower.secret,
                "RSHUB_SECRET_SOUTH": lender.secret,
                "RSHUB_LOG_LEVEL": "WARNING",
            },
        )
        print("starting the hub ...", file=sys.stderr, flush=True)
        await hub.start()
        for lib in (borrower, lender):
            lib.hub_url = hub.url
            if isinstance(lib, TcpLibrary):
                lib.hub_tcp = ("127.0.0.1", hub.iso10161_port)
        size = len(
            borrower.encode(
                Message(event=Event.REQUEST, request_id="B-0", patron_id="p", bibliographic=BOOK)
            )
        )
        if warmup:
            print(f"warm-up ({warmup} requests) ...", file=sys.stderr, flush=True)
            for i in range(warmup):
                await borrower.send(
                    Message(
                        event=Event.REQUEST,
                        request_id=f"W-{i}",
                        patron_id="p",
                        bibliographic=BOOK,
                        request_format=RequestFormat.PHYSICAL,
                    )
                )
                await lender.next()
        pipe = await raw_pipe(bootstrap, size, count)
        e2e = await end_to_end(borrower, lender, count, concurrency)
        single = await unloaded_latency(borrower, lender, max(10, count // 20))
        e2e.update(p50_ms=single["p50_ms"], p99_ms=single["p99_ms"])
        return {
            "borrower": borrower_protocol,
            "lender": lender_protocol,
            "message_bytes": size,
            "concurrency": concurrency,
            "raw_pipe": pipe,
            "end_to_end": e2e,
            "ratio_throughput_e2e_to_pipe": e2e["per_second"] / pipe["per_second"],
            "ratio_p50_latency_e2e_to_pipe": e2e["p50_ms"] / pipe["p50_ms"],
            "note": "throughput under load (concurrent senders / pipelined producer); "
            "latency p50/p99 one message at a time",
        }
    finally:
        if hub:
            hub.stop()
        for lib in (borrower, lender):
            await lib.stop()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=20)
    choices = ["ncip", "iso18626", "iso10161"]
    parser.add_argument("--borrower", choices=choices, default="ncip")
    parser.add_argument("--lender", choices=choices, default="ncip")
    args = parser.parse_args()
    result = asyncio.run(
        main(args.messages, args.concurrency, args.warmup, args.borrower, args.lender)
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"e2e-{args.borrower}-{args.lender}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
