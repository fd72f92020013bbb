"""Benchmark: does a hub that has moved many messages through the broker answer as fast as a
fresh one?

    python -m bench.longrun [--total 200000] [--every 20000] [--inflight 128] [--probe 20]
                            [--borrower ncip] [--lender ncip] [--fetch-wait-ms W]
                            [--hub-env KEY=VALUE ...] [--quick]

One hub, one broker. First a probe of --probe requests one at a time (the fresh hub's p50/p99
latency, borrower's POST to the lender's receipt). Then blocks of --every requests with
--inflight in flight, each followed by the same probe; after each block a row is printed: the
messages so far, the block's msg/s and p50/p99 under load, the probe's p50/p99, the hub's
CPU ms per request over the block and the resident memory of hub and broker. The probe and
block figures are also given as a ratio to the first (fresh) ones. Results are rewritten to
bench/results/longrun-<borrower>-<lender>.json after every block, so an interrupted run keeps
what it measured. Each request is a new transaction, so the hub's tables grow all along.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench import measure
from bench.partners import PROTOCOLS, Route, hub_pid, hub_running, library, parse_env
from connectors.simulator import directory_yaml

HEADERS = [
    "messages",
    "msg/s",
    "load p50",
    "load p99",
    "probe p50",
    "probe p99",
    "p50/fresh",
    "p99/fresh",
    "msg/s/first",
    "hub CPU ms/req",
    "hub MB",
    "broker MB",
]


WIDTHS = [max(len(h), 8) for h in HEADERS]


def rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def row(block: dict[str, Any]) -> list[object]:
    return [
        block["messages_so_far"],
        block["load"]["per_second"],
        block["load"]["p50_ms"],
        block["load"]["p99_ms"],
        block["probe"]["p50_ms"],
        block["probe"]["p99_ms"],
        block["probe_p50_to_fresh"],
        block["probe_p99_to_fresh"],
        block["msg_per_s_to_first_block"],
        block["hub_cpu_ms_per_request"],
        block["hub_rss_mb"],
        block["broker_rss_mb"],
    ]


async def main(args: argparse.Namespace, name: str) -> dict[str, Any]:
    async with measure.broker() as broker:
        wait = measure.fetch_wait_ms(broker.embedded, args.fetch_wait_ms)
        borrower = library(args.borrower, "NORTH")
        lender = library(args.lender, "SOUTH")
        text = directory_yaml([borrower, lender], ["SOUTH"])
        env = parse_env(args.hub_env)
        async with hub_running(broker, [borrower, lender], text, wait, env) as hub:
            route = Route(borrower, lender)
            pids = {"hub": hub_pid(hub), "broker": broker.pid}
            measure.say(f"warm-up ({args.warmup} requests) ...")
            await measure.closed_loop(route.send, route.arrivals, args.warmup, 1, "warm-up", "W")
            fresh = await measure.closed_loop(
                route.send, route.arrivals, args.probe, 1, "fresh probe", "P0"
            )
            result: dict[str, Any] = {
                "borrower": args.borrower,
                "lender": args.lender,
                "total": args.total,
                "every": args.every,
                "inflight": args.inflight,
                "fetch_wait_ms": wait,
                "fresh_probe": fresh,
                "fresh_hub_rss_mb": rss_mb(pids["hub"]),
                "blocks": [],
            }
            print(
                f"fresh hub: probe p50 {fresh['p50_ms']:.1f} ms, p99 {fresh['p99_ms']:.1f} ms "
                f"({args.probe} requests one at a time)",
                flush=True,
            )
            print(measure.line(HEADERS, WIDTHS), flush=True)
            done, number = 0, 0
            while done < args.total:
                number += 1
                size = min(args.every, args.total - done)
                meter = measure.CpuMeter(pids)
                meter.start()
                load = await measure.closed_loop(
                    route.send,
                    route.arrivals,
                    size,
                    args.inflight,
                    f"block {number} ({done + size}/{args.total})",
                    f"R{number}",
                )
                spent = meter.stop()
                done += size
                probe = await measure.closed_loop(
                    route.send, route.arrivals, args.probe, 1, f"probe {number}", f"P{number}"
                )
                blocks = result["blocks"]
                hub_cpu = spent.get("hub")
                block = {
                    "messages_so_far": done,
                    "load": load,
                    "probe": probe,
                    "probe_p50_to_fresh": measure.ratio(probe["p50_ms"], fresh["p50_ms"]),
                    "probe_p99_to_fresh": measure.ratio(probe["p99_ms"], fresh["p99_ms"]),
                    "msg_per_s_to_first_block": measure.ratio(
                        load["per_second"],
                        blocks[0]["load"]["per_second"] if blocks else load["per_second"],
                    ),
                    "hub_cpu_ms_per_request": hub_cpu * 1000 / size if hub_cpu else None,
                    "hub_rss_mb": rss_mb(pids["hub"]),
                    "broker_rss_mb": rss_mb(pids["broker"]),
                }
                blocks.append(block)
                print(measure.line(row(block), WIDTHS, digits=2), flush=True)
                measure.write_result(name, result)
            last = result["blocks"][-1]
            result["last_probe_to_fresh"] = {
                "p50": last["probe_p50_to_fresh"],
                "p99": last["probe_p99_to_fresh"],
            }
            result["last_block_msg_per_s_to_first"] = last["msg_per_s_to_first_block"]
            return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=200_000, help="requests in all")
    parser.add_argument("--every", type=int, default=20_000, help="requests per reported block")
    parser.add_argument("--inflight", type=int, default=128, help="requests in flight in a block")
    parser.add_argument("--probe", type=int, default=20, help="one-at-a-time requests per probe")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--borrower", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--lender", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--fetch-wait-ms", type=int, default=None)
    parser.add_argument("--hub-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="--total 4000 --every 1000 --probe 5")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.total, arguments.every, arguments.probe, arguments.warmup = 4000, 1000, 5, 5
    result_name = f"longrun-{arguments.borrower}-{arguments.lender}"
    outcome = asyncio.run(main(arguments, result_name))
    to_fresh = outcome["last_probe_to_fresh"]
    print(
        f"\nafter {outcome['total']} requests: probe p50 x{measure.fmt(to_fresh['p50'], 2)}, "
        f"p99 x{measure.fmt(to_fresh['p99'], 2)} of the fresh hub; msg/s "
        f"x{measure.fmt(outcome['last_block_msg_per_s_to_first'], 2)} of the first block"
    )
    print(f"written: {measure.write_result(result_name, outcome)}")
