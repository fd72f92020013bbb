"""Benchmark: what a fetch costs the broker as a partition fills, and whether the broker can
be made to forget (the cause behind `bench.longrun`'s slope on the embedded broker).

    python -m bench.broker_age [--sizes 1000 5000 10000 20000 40000] [--fetches 40]
                               [--per-batch 10] [--retention-wait-s 5] [--quick]

On the run's broker (KAFKA_BOOTSTRAP_SERVERS, else a fresh embedded Tansu), one 1-partition
topic is filled one record per batch (acks=all, linger 0: what a hub writes one message at a
time) up to each of --sizes. At each size, --fetches fetches that each return the newest
record are timed (median ms) and the broker's CPU per such fetch is read from /proc (embedded
broker only); so is the CPU per second of fetches that find nothing. A second topic holds the
largest size's records in batches of --per-batch, to tell a cost per batch from one per record.
Every figure is also given as a ratio to the smallest size's, measured in the same run.
Then two capabilities are checked, last, because a broker that lacks one may drop the
connection: DeleteRecords (the trim a hub could apply to what every reader has consumed), and
retention (a topic with retention.ms = 1000: is its first record gone after
--retention-wait-s?). Results: bench/results/broker-age.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError

from bench import measure

RECORD = b"x" * 1000  # about a canonical event's size
SIZES = [1000, 5000, 10000, 20000, 40000]


async def new_topic(bootstrap: str, config: dict[str, str] | None = None) -> TopicPartition:
    """A fresh 1-partition topic, with `config` (topics.yaml's specs speak in hours)."""
    name = f"bench.age.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config or {})])
    finally:
        await admin.close()
    return TopicPartition(name, 0)


async def fill(producer: AIOKafkaProducer, tp: TopicPartition, count: int, per_batch: int) -> None:
    """`count` records in batches of `per_batch` (sent together, awaited together)."""
    done = 0
    while done < count:
        n = min(per_batch, count - done)
        sent = [await producer.send(tp.topic, RECORD, partition=tp.partition) for _ in range(n)]
        await asyncio.gather(*sent)
        done += n
        if done % 5000 < per_batch:
            measure.progress(f"filling {tp.topic}", done, count)


async def newest_fetch(
    bootstrap: str, tp: TopicPartition, end: int, fetches: int, pid: int | None
) -> dict[str, float | None]:
    """Median ms of a fetch that returns the newest record, and the broker's CPU ms per fetch."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([tp])
    times, meter = [], measure.CpuMeter({"broker": pid})
    try:
        meter.start()
        for _ in range(fetches):
            consumer.seek(tp, end - 1)
            start = time.perf_counter()
            got = await consumer.getmany(tp, timeout_ms=30_000, max_records=1)
            times.append(time.perf_counter() - start)
            if not got.get(tp):
                raise RuntimeError(f"no record came back from {tp} within 30 s")
        spent = meter.stop()["broker"]
    finally:
        await consumer.stop()
    return {
        "fetch_ms": statistics.median(times) * 1000,
        "broker_cpu_ms_per_fetch": spent * 1000 / fetches if spent is not None else None,
    }


async def empty_polls(
    bootstrap: str, tp: TopicPartition, end: int, pid: int | None, seconds: float = 2.0
) -> float | None:
    """The broker's CPU ms per second while a consumer polls the end of the partition (100 ms
    fetch wait): what an idle reader costs at this size."""
    if pid is None:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    consumer.assign([tp])
    consumer.seek(tp, end)
    meter = measure.CpuMeter({"broker": pid})
    try:
        meter.start()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await consumer.getmany(tp, timeout_ms=200)
        spent = meter.stop()["broker"]
    finally:
        await consumer.stop()
    return spent * 1000 / meter.elapsed if spent is not None else None


async def can_delete_records(bootstrap: str, tp: TopicPartition, before: int) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=before)})
        return {"supported": True, "low_watermark": low.get(tp)}
    except (KafkaError, OSError) as exc:
        return {"supported": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        await admin.close()


async def keeps_retention(bootstrap: str, wait_s: float) -> dict[str, Any]:
    tp = await new_topic(bootstrap, {"retention.ms": "1000", "segment.ms": "1000"})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await fill(producer, tp, 100, 1)
    finally:
        await producer.stop()
    measure.say(f"retention: waiting {wait_s:g} s for records older than 1 s to go ...")
    await asyncio.sleep(wait_s)  # the passing of time is what is tested
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        first = (await consumer.beginning_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    return {"applied": first > 0, "first_offset_after_wait": first, "waited_s": wait_s}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with measure.broker() as broker:
        bootstrap, pid = broker.bootstrap, broker.pid
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        rows: list[dict[str, Any]] = []
        try:
            single = await new_topic(bootstrap)
            filled = 0
            for size in args.sizes:
                await fill(producer, single, size - filled, 1)
                filled = size
                row = {"batches": size, "records": size}
                row.update(await newest_fetch(bootstrap, single, size, args.fetches, pid))
                row["empty_poll_broker_cpu_ms_per_s"] = await empty_polls(
                    bootstrap, single, size, pid
                )
                rows.append(row)
                measure.say(f"{size} batches: fetch {row['fetch_ms']:.1f} ms")
            largest = args.sizes[-1]
            batched = await new_topic(bootstrap)
            await fill(producer, batched, largest, args.per_batch)
            grouped = {"batches": largest // args.per_batch, "records": largest}
            grouped.update(await newest_fetch(bootstrap, batched, largest, args.fetches, pid))
        finally:
            await producer.stop()
        first = rows[0]
        for row in [*rows, grouped]:
            for key in ("fetch_ms", "broker_cpu_ms_per_fetch"):
                row[f"{key}_to_smallest"] = measure.ratio(row[key], first[key])
        result: dict[str, Any] = {
            "broker": "embedded (Tansu)" if broker.embedded else "external",
            "by_size": rows,
            "batched": grouped,
            "retention": await keeps_retention(bootstrap, args.retention_wait_s),
            # Last: Tansu 0.6.0's memory engine panics on it and drops the connection.
            "delete_records": await can_delete_records(bootstrap, single, args.sizes[0] // 2),
        }
        return result


def report(result: dict[str, Any]) -> str:
    headers = ["batches", "records", "fetch ms", "x smallest", "broker CPU ms/fetch", "x smallest"]
    headers.append("idle reader: broker CPU ms/s")
    rows = [
        [
            r["batches"],
            r["records"],
            r["fetch_ms"],
            r["fetch_ms_to_smallest"],
            r["broker_cpu_ms_per_fetch"],
            r["broker_cpu_ms_per_fetch_to_smallest"],
            r.get("empty_poll_broker_cpu_ms_per_s"),
        ]
        for r in [*result["by_size"], result["batched"]]
    ]
    deleted, kept = result["delete_records"], result["retention"]
    return "\n".join(
        [
            f"broker: {result['broker']}",
            measure.table(headers, rows, 2),
            "(last row: the largest size in batches of several records)",
            "DeleteRecords: "
            + ("supported" if deleted["supported"] else f"not supported ({deleted['error']})"),
            f"retention.ms: {'applied' if kept['applied'] else 'not applied'} "
            f"(first offset {kept['first_offset_after_wait']} after {kept['waited_s']:g} s)",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--fetches", type=int, default=40)
    parser.add_argument("--per-batch", type=int, default=10)
    parser.add_argument("--retention-wait-s", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="sizes 1000 5000 10000")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [1000, 5000, 10000]
    args.sizes = sorted(set(args.sizes))
    outcome = asyncio.run(main(args))
    print(report(outcome), flush=True)
    print(f"written: {measure.write_result('broker-age', outcome)}")
