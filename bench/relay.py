"""The NCIP broker relay's round trip (broker -> hub -> member -> hub -> broker) beside a
direct call to the same member in the same run: p50/p99 and calls per second at a few
concurrency levels. The hub's added latency should be milliseconds, not a poll interval.

    python -m bench.relay [--calls N]

Needs the relay wired into the hub (notes/relay-requests.md)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.measure import broker, say, summary, table, write_result
from connectors.ncip_relay.simulator import Broker, MemberResponder
from hub.cli.process import HubProcess
from hub.kafka import topics

LEVELS = (1, 8, 32)
NORTH = "01NORTH_INST"


def _directory(member: MemberResponder) -> dict[str, Any]:
    return {
        "consortium": "Relay bench",
        "supported_protocols": ["ncip", "iso18626", "iso10161", "ncip-relay"],
        "partners": [
            {
                "symbol": "RELAIS",
                "name": "Relais D2D",
                "protocol": "ncip-relay",
                "lends": False,
                "inbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_RELAIS"},
                "options": {"role": "broker", "members": ["*"]},
            },
            {
                "symbol": "NORTH-CIRC",
                "name": "North (Alma-like)",
                "protocol": "ncip-relay",
                "lends": False,
                "endpoint": member.endpoint,
                "options": {"role": "member", "agency_ids": [NORTH], "institution_code": NORTH},
            },
        ],
    }


async def _loop(post: Any, bodies: list[bytes], inflight: int) -> dict[str, float]:
    latencies: list[float] = []
    numbers = itertools.count()

    async def worker() -> None:
        while (n := next(numbers)) < len(bodies):
            sent = time.perf_counter()
            status, answer = await post(bodies[n])
            if status != 200 or b"Problem" in answer:
                raise RuntimeError(f"call {n}: HTTP {status} {answer[:200]!r}")
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return {**summary(latencies, time.perf_counter() - start), "inflight": inflight}


async def main(calls: int) -> dict[str, Any]:
    async with broker() as kafka:
        member = MemberResponder("NORTH-CIRC", NORTH)
        await member.start()
        folder = Path(tempfile.mkdtemp(prefix="rshub-relay-bench-"))
        (folder / "consortium.yaml").write_text(yaml.safe_dump(_directory(member)))
        declared = yaml.safe_load(topics.DEFAULT.read_text())
        names = {t["name"] for t in declared["topics"]}
        for name in ("ill.relay", "ill.relay.results"):
            if name not in names:
                declared["topics"].append({"name": name, "partitions": 4, "purpose": "relay"})
        (folder / "topics.yaml").write_text(yaml.safe_dump(declared))
        hub = HubProcess(
            kafka.bootstrap,
            folder / "consortium.yaml",
            folder,
            {
                "RSHUB_SECRET_RELAIS": "bench",
                "RSHUB_NCIP_RELAY_REPLAY_WINDOW_S": "0",
                "RSHUB_SINGLE_WORKER": "true",
            },
            topics_file=folder / "topics.yaml",
        )
        await hub.start()
        relais = Broker("RELAIS", "Relais", "bench", hub_url=hub.url)
        connector = aiohttp.TCPConnector(limit=256)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:

                async def post_to(url: str, body: bytes) -> tuple[int, bytes]:
                    headers = {"Authorization": "Bearer bench", "Content-Type": "application/xml"}
                    async with session.post(url, data=body, headers=headers) as reply:
                        return reply.status, await reply.read()

                rows = []
                for inflight in LEVELS:
                    bodies = [
                        relais.call("CheckOutItem", NORTH, item=f"B{i}") for i in range(calls)
                    ]
                    direct = await _loop(lambda b: post_to(member.endpoint, b), bodies, inflight)
                    say(f"  direct x{inflight}: p50 {direct['p50_ms']:.1f} ms")
                    relayed = await _loop(
                        lambda b: post_to(f"{hub.url}/ncip/RELAIS", b), bodies, inflight
                    )
                    say(f"  relayed x{inflight}: p50 {relayed['p50_ms']:.1f} ms")
                    rows.append({"inflight": inflight, "direct": direct, "relayed": relayed})
        finally:
            hub.stop()
            await member.stop()
        return {"calls": calls, "embedded": kafka.embedded, "levels": rows}


def report(result: dict[str, Any]) -> str:
    rows = [
        [
            r["inflight"],
            r["direct"]["p50_ms"],
            r["direct"]["p99_ms"],
            r["direct"]["per_second"],
            r["relayed"]["p50_ms"],
            r["relayed"]["p99_ms"],
            r["relayed"]["per_second"],
            r["relayed"]["p50_ms"] - r["direct"]["p50_ms"],
        ]
        for r in result["levels"]
    ]
    headers = [
        "in flight",
        "direct p50",
        "p99",
        "calls/s",
        "relayed p50",
        "p99",
        "calls/s",
        "added p50 ms",
    ]
    return table(headers, rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.calls))
    print(report(outcome))
    write_result("relay", outcome)
    sys.exit(0)
