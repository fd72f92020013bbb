"""Benchmark: one slow lender must not hold up deliveries to the other partners.

    python -m bench.slow_partner [--mode delay|never] [--delay 30] [--slow-requests 3]
                                 [--duration 30] [--interval 0.5] [--deadline 240]
                                 [--slow-protocol ncip] [--healthy-protocol ncip]
                                 [--fetch-wait-ms W] [--hub-env KEY=VALUE ...] [--quick]

The directory has two borrowers and two lenders. Requests from NORTH go to a rota naming the
slow lender SLOW first (then FAST); requests from EAST go to a rota naming the healthy lender
FAST first (then SLOW). SLOW takes each delivery and answers it after --delay seconds
(--mode delay) or never (--mode never: it holds the connection until the hub gives up or the
benchmark ends).

Two phases on one hub: "without": EAST sends a request every --interval seconds for
--duration seconds and each is timed from EAST's POST to FAST's receipt (an open loop, so a
held-up queue shows as latency, not as fewer requests); "with": NORTH first sends
--slow-requests requests, and once SLOW holds the first of them, EAST sends the same paced
stream. A healthy delivery that has not arrived --deadline seconds after the last one was sent
counts as undelivered. Printed and written to bench/results/slow-partner-<mode>.json: p50, p99
and max latency of the healthy deliveries with and without the slow lender, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import yaml

from bench import measure
from bench.partners import (
    PROTOCOLS,
    Route,
    SlowLibrary,
    hub_pid,
    hub_running,
    library,
    parse_env,
    request,
    tap,
)
from connectors.simulator import Library, TcpLibrary, directory_yaml


def directory(
    north: Library | TcpLibrary,
    east: Library | TcpLibrary,
    slow: Library | TcpLibrary,
    fast: Library | TcpLibrary,
) -> str:
    """NORTH's requests: SLOW first; EAST's: FAST first."""
    document = yaml.safe_load(directory_yaml([north, east, slow, fast], ["FAST"]))
    document["rotas"] = [
        {"name": "slow-first", "members": ["SLOW", "FAST"]},
        {"name": "healthy-first", "members": ["FAST", "SLOW"]},
    ]
    document["rules"] = [
        {"rota": "slow-first", "borrowers": ["NORTH"]},
        {"rota": "healthy-first", "borrowers": ["EAST"]},
    ]
    document["default_rota"] = "healthy-first"
    return yaml.safe_dump(document, sort_keys=False)


async def paced(
    route: Route, count: int, interval: float, deadline: float, prefix: str
) -> dict[str, Any]:
    """`count` requests, one every `interval` s whatever happens to the earlier ones; the
    latency of each that arrives within `deadline` s of the last send."""
    latencies: list[float] = []
    late: list[str] = []
    start = time.perf_counter()
    last_send = start + interval * (count - 1)

    async def one(n: int) -> None:
        await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
        key = f"{prefix}-{n}"
        received = route.arrivals.expect(key)
        sent = time.perf_counter()
        await route.send(key, n)
        try:
            remaining = last_send + deadline - time.perf_counter()
            at = await asyncio.wait_for(received, max(remaining, 0.1))
        except TimeoutError:
            route.arrivals.forget(key)
            late.append(key)
            return
        latencies.append(at - sent)
        measure.progress(f"{prefix}: delivered", len(latencies), count)

    await asyncio.gather(*(one(n) for n in range(count)))
    result = measure.summary(latencies)
    result["sent"] = count
    result["undelivered"] = len(late)
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    delay = None if args.mode == "never" else args.delay
    async with measure.broker() as broker:
        wait = measure.fetch_wait_ms(broker.embedded, args.fetch_wait_ms)
        north = library(args.borrower, "NORTH")
        east = library(args.borrower, "EAST")
        slow = SlowLibrary("SLOW", "SLOW-LIB", "bench-slow", protocol=args.slow_protocol)
        slow.delay = delay
        fast = library(args.healthy_protocol, "FAST")
        text = directory(north, east, slow, fast)
        libraries = [north, east, slow, fast]
        async with hub_running(broker, libraries, text, wait, parse_env(args.hub_env)) as hub:
            healthy, held = Route(east, fast), tap(slow)  # SLOW's deliveries queue in `held`
            measure.say(f"warm-up ({args.warmup} requests to FAST) ...")
            await measure.closed_loop(
                healthy.send, healthy.arrivals, args.warmup, 1, "warm-up", "W"
            )
            count = max(1, round(args.duration / args.interval))
            measure.say(f"without the slow lender: {count} requests every {args.interval} s ...")
            without = await paced(healthy, count, args.interval, args.deadline, "without")
            measure.say(f"with the slow lender: {args.slow_requests} requests to SLOW ...")
            slow_sent = time.perf_counter()
            for n in range(args.slow_requests):
                status, answer = await north.send(request(f"slow-{n}"))
                if status != 200 or not answer.ok:
                    raise RuntimeError(f"hub refused slow-{n}: {status} {answer}")
            first = await asyncio.wait_for(held.get(), args.deadline)
            measure.say(
                f"  SLOW holds its first delivery ({time.perf_counter() - slow_sent:.1f} s); "
                f"{count} requests to FAST every {args.interval} s ..."
            )
            with_slow = await paced(healthy, count, args.interval, args.deadline, "with")
            slow_received = 1 + held.qsize()
            result = {
                "mode": args.mode,
                "delay_s": delay,
                "slow_requests": args.slow_requests,
                "slow_protocol": args.slow_protocol,
                "healthy_protocol": args.healthy_protocol,
                "borrower_protocol": args.borrower,
                "interval_s": args.interval,
                "duration_s": args.duration,
                "deadline_s": args.deadline,
                "fetch_wait_ms": wait,
                "hub_env": parse_env(args.hub_env),
                "without_slow_lender": without,
                "with_slow_lender": with_slow,
                "slow_lender_received": slow_received,
                "slow_lender_first_request": first.request_id,
                "ratio_with_to_without": {
                    "p50": measure.ratio(with_slow["p50_ms"], without["p50_ms"]),
                    "p99": measure.ratio(with_slow["p99_ms"], without["p99_ms"]),
                    "max": measure.ratio(with_slow["max_ms"], without["max_ms"]),
                },
                "hub_pid": hub_pid(hub),
            }
            return result


def report(result: dict[str, Any]) -> str:
    head = (
        f"slow lender ({result['slow_protocol']}) answers "
        + ("never" if result["delay_s"] is None else f"after {result['delay_s']:g} s")
        + f"; requests to it: {result['slow_requests']}; healthy lender "
        f"({result['healthy_protocol']}) gets one request every {result['interval_s']:g} s"
    )
    rows = []
    for name, key in (("without", "without_slow_lender"), ("with", "with_slow_lender")):
        r = result[key]
        rows.append([name, r["sent"], r["undelivered"], r["p50_ms"], r["p99_ms"], r["max_ms"]])
    ratios = result["ratio_with_to_without"]
    rows.append(["with/without", None, None, ratios["p50"], ratios["p99"], ratios["max"]])
    headers = ["to the healthy lender", "sent", "undelivered", "p50 ms", "p99 ms", "max ms"]
    return head + "\n\n" + measure.table(headers, rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["delay", "never"], default="delay")
    parser.add_argument("--delay", type=float, default=30.0, help="seconds before SLOW answers")
    parser.add_argument("--slow-requests", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of paced requests")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between requests")
    parser.add_argument(
        "--deadline",
        type=float,
        default=240.0,
        help="seconds after the last send a healthy delivery may still arrive",
    )
    http = [p for p in PROTOCOLS if p != "iso10161"]
    parser.add_argument("--slow-protocol", choices=http, default="ncip")
    parser.add_argument("--healthy-protocol", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--borrower", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--fetch-wait-ms", type=int, default=None)
    parser.add_argument("--hub-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="--delay 5 --slow-requests 2 --duration 6 --deadline 60",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.delay, arguments.slow_requests, arguments.duration = 5.0, 2, 6.0
        arguments.deadline, arguments.warmup = 60.0, 5
    outcome = asyncio.run(main(arguments))
    print(report(outcome))
    name = f"slow-partner-{outcome['mode']}"
    print(f"\nwritten: {measure.write_result(name, outcome)}")
