"""Benchmark: a partition restored from the embedded broker's snapshot fetches as fast as a
fresh one (hub.kafka.snapshots rewrites records in large batches; Tansu's fetch cost grows with the
batches a partition holds, see bench.broker_age).

    python -m bench.restore [--records 20000] [--fresh 100] [--fetches 40]

In one run, on embedded Tansu brokers only (a snapshot is the embedded broker's business):
- *fresh*: a new broker's partition holding --fresh records written one per batch (a hub
  just started);
- *batched*: a new broker's partition holding --records records written --per-batch at a
  time (the same content, in about the batches a restore writes: the best that content
  can do);
- *aged*: a partition filled with --records records one per batch (acks=all, linger 0: how a
  hub writes a message at a time), on the same kind of broker;
- *restored*: that broker dumped (hub.kafka.snapshots.dump), written to a file, read back and
  restored into a new broker.
For each, the median time of a fetch that returns the newest record and the broker's CPU per
such fetch (bench.broker_age.newest_fetch), as ratios to *fresh*. Dumping and restoring are
given as records per second and as ratios to the rate the aged partition was filled at; a
periodic snapshot after --more records (read since the last one) as a ratio to a full dump.
Results: bench/results/restore.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import measure
from bench.broker_age import fill, new_topic, newest_fetch
from hub.kafka import snapshots
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata


async def _filled(bootstrap: str, count: int, per_batch: int = 1) -> tuple[Any, float]:
    """A new topic with `count` records in batches of `per_batch`; and the seconds the
    filling took."""
    tp = await new_topic(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    began = time.perf_counter()
    try:
        await fill(producer, tp, count, per_batch)
    finally:
        await producer.stop()
    return tp, time.perf_counter() - began


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with EmbeddedBroker() as fresh:
        await wait_for_metadata(fresh.bootstrap_servers)
        tp, _ = await _filled(fresh.bootstrap_servers, args.fresh)
        assert fresh.process is not None
        baseline = await newest_fetch(
            fresh.bootstrap_servers, tp, args.fresh, args.fetches, fresh.process.pid
        )
    measure.say(f"fresh: fetch {baseline['fetch_ms']:.1f} ms")

    with EmbeddedBroker() as batched:
        await wait_for_metadata(batched.bootstrap_servers)
        tp, _ = await _filled(batched.bootstrap_servers, args.records, args.per_batch)
        assert batched.process is not None
        grouped = await newest_fetch(
            batched.bootstrap_servers, tp, args.records, args.fetches, batched.process.pid
        )

    with EmbeddedBroker() as aged:
        await wait_for_metadata(aged.bootstrap_servers)
        tp, filling_s = await _filled(aged.bootstrap_servers, args.records)
        assert aged.process is not None
        old = await newest_fetch(
            aged.bootstrap_servers, tp, args.records, args.fetches, aged.process.pid
        )
        measure.say(f"aged: fetch {old['fetch_ms']:.1f} ms")
        began = time.perf_counter()
        saved = await snapshots.dump(aged.bootstrap_servers)
        assert saved is not None
        dump_s = time.perf_counter() - began
        # The keeper's next periodic snapshot: a few more records, read since the last one.
        producer = AIOKafkaProducer(bootstrap_servers=aged.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await fill(producer, tp, args.more, 1)
        finally:
            await producer.stop()
        began = time.perf_counter()
        grown = await snapshots.dump(aged.bootstrap_servers, since=saved)
        since_s = time.perf_counter() - began
        began = time.perf_counter()
        await snapshots.dump(aged.bootstrap_servers)
        full_again_s = time.perf_counter() - began
        assert grown is not None
        saved = grown

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / snapshots.FILE
        began = time.perf_counter()
        size = snapshots.write(path, saved)
        saved = snapshots.read(path)
        file_s = time.perf_counter() - began

    with EmbeddedBroker() as restored:
        await wait_for_metadata(restored.bootstrap_servers)
        began = time.perf_counter()
        await snapshots.restore(restored.bootstrap_servers, saved)
        restore_s = time.perf_counter() - began
        assert restored.process is not None
        new = await newest_fetch(
            restored.bootstrap_servers, tp, saved.records, args.fetches, restored.process.pid
        )
        measure.say(f"restored: fetch {new['fetch_ms']:.1f} ms")

    rows = {"fresh": baseline, "batched": grouped, "aged": old, "restored": new}
    for row in rows.values():
        for key in ("fetch_ms", "broker_cpu_ms_per_fetch"):
            row[f"{key}_to_fresh"] = measure.ratio(row[key], baseline[key])
    fill_rate = args.records / filling_s
    return {
        "records": args.records,
        "fresh_records": args.fresh,
        "more": args.more,
        "fetch": rows,
        "snapshot_bytes": size,
        "dump_records_per_s": args.records / dump_s,
        "incremental_dump_s": since_s,
        "full_dump_s": full_again_s,
        "incremental_to_full_dump": measure.ratio(since_s, full_again_s),
        "restore_records_per_s": saved.records / restore_s,
        "file_write_and_read_s": file_s,
        "dump_to_fill_rate": measure.ratio(args.records / dump_s, fill_rate),
        "restore_to_fill_rate": measure.ratio(saved.records / restore_s, fill_rate),
    }


def report(result: dict[str, Any]) -> str:
    headers = ["partition", "fetch ms", "x fresh", "broker CPU ms/fetch", "x fresh"]
    rows = [
        [
            f"{name} ({result['fresh_records'] if name == 'fresh' else result['records']})",
            row["fetch_ms"],
            row["fetch_ms_to_fresh"],
            row["broker_cpu_ms_per_fetch"],
            row["broker_cpu_ms_per_fetch_to_fresh"],
        ]
        for name, row in result["fetch"].items()
    ]
    return "\n".join(
        [
            measure.table(headers, rows, 2),
            f"snapshot: {result['snapshot_bytes']:,} bytes; dump "
            f"{result['dump_records_per_s']:,.0f} records/s "
            f"(x{result['dump_to_fill_rate']:.1f} the one-at-a-time fill rate), restore "
            f"{result['restore_records_per_s']:,.0f} records/s "
            f"(x{result['restore_to_fill_rate']:.1f}); a periodic snapshot after "
            f"{result['more']} more records took x{result['incremental_to_full_dump']:.2f} "
            "the time of a full dump",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--fresh", type=int, default=100)
    parser.add_argument("--fetches", type=int, default=40)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--more", type=int, default=200, help="records between two snapshots")
    outcome = asyncio.run(main(parser.parse_args()))
    print(report(outcome), flush=True)
    print(f"written: {measure.write_result('restore', outcome)}")
