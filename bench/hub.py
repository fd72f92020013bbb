"""Benchmark: the hub end to end beside its two baselines, in one run on one broker.

    python -m bench.hub [--borrower ncip] [--lender ncip] [--quick]
                        [--single N] [--per-level N] [--inflight 16 64 128] [--idle-s S]
                        [--fetch-wait-ms W] [--hub-env KEY=VALUE ...] [--name NAME]
                        [--no-stages] [--pauses N] [--pause-s S]

Phases, one after the other (so no phase's CPU disturbs another's):
1. raw pipe: aiokafka produce (acks=all) and `getmany()` consume, messages of the size of the
   borrower's request;
2. minimal forwarder (its own process): HTTP POST in -> aiokafka -> HTTP POST out, no parsing,
   no state: the baseline;
3. the hub (`rshub serve`, its own process): the borrower's request in its protocol, through
   the state machine, to the lender in the lender's protocol.
Each is measured one message at a time (p50/p99 latency) and with 16, 64 and 128 messages in
flight (msg/s, p50/p99): a message is timed from the start of its send to its receipt at the
far end. Idle CPU (fraction of a core over --idle-s of idleness) of forwarder + broker and hub +
broker, and CPU ms per request under load (over the in-flight phases) of each process; the
hub's CPU per request by stage, in a phase of its own at the highest level (bench.stages,
with py-spy, which stops the hub for each sample). The hub also
gets --pauses messages each sent after --pause-s of quiet: sparse traffic, what most partners
see, once its consumers have gone idle (RSHUB_IDLE_FETCH_WAIT_MS).
Idle CPU is measured after IDLE_SETTLE_S (5 s) without traffic, for both alike.
Ratios hub/forwarder and hub/pipe are printed and written to bench/results/<name>.json
(default hub-<borrower>-<lender>).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import measure, stages
from bench.forwarder import measure_forwarder
from bench.partners import PROTOCOLS, Route, hub_pid, hub_running, library, parse_env, request
from bench.pipe import measure_pipe
from connectors.simulator import directory_yaml


async def measure_hub(
    broker: measure.Broker,
    borrower_protocol: str,
    lender_protocol: str,
    fetch_wait_ms: int,
    single: int,
    per_level: int,
    levels: list[int],
    idle_s: float,
    warmup: int,
    env: dict[str, str],
    by_stage: bool = True,
    pauses: int = 0,
    pause_s: float = 3.0,
    stage_messages: int = 1000,
) -> dict[str, Any]:
    borrower = library(borrower_protocol, "NORTH")
    lender = library(lender_protocol, "SOUTH")
    text = directory_yaml([borrower, lender], ["SOUTH"])
    async with hub_running(broker, [borrower, lender], text, fetch_wait_ms, env) as hub:
        route = Route(borrower, lender)
        pids = {"hub": hub_pid(hub), "broker": broker.pid}
        measure.say(f"hub: warm-up ({warmup} requests) ...")
        await measure.closed_loop(route.send, route.arrivals, warmup, 1, "hub warm-up", "W")
        measure.say(f"hub: idle CPU over {idle_s:g} s ...")
        idle = await measure.idle_cpu(pids, idle_s)
        result = await measure.load_levels(
            route.send, route.arrivals, single, per_level, levels, "hub", pids
        )
        result["idle_cpu_cores"] = idle
        if pauses:
            result["after_pause"] = await measure.after_pauses(
                route.send, route.arrivals, pauses, pause_s, "hub, after a pause", "hub-p"
            )
        if by_stage:
            await by_stages(route, pids["hub"], stage_messages, max(levels), result)
        return result


async def by_stages(
    route: Route, pid: int | None, count: int, inflight: int, result: dict[str, Any]
) -> None:
    """The hub's CPU by stage, from a phase of its own: py-spy stops the process for each
    sample, so the figures above are measured without it."""
    sampler, meter = stages.Sampler(pid), measure.CpuMeter({"hub": pid})
    meter.start()
    sampler.start()
    try:
        await measure.closed_loop(
            route.send, route.arrivals, count, inflight, "hub, sampled by stage", "hub-s"
        )
    finally:
        spent = meter.stop()["hub"]
        sampler.stop()
    if sampler.samples is None:
        measure.say(f"hub: no CPU by stage: {sampler.problem}")
        return
    cpu_ms = spent * 1000 / count if spent is not None else None
    result["cpu_by_stage"] = stages.breakdown(sampler.samples, cpu_ms)
    result["cpu_by_stage_phase"] = {"messages": count, "inflight": inflight, "cpu_ms": cpu_ms}


def ratios(hub: dict[str, Any], base: dict[str, Any], levels: list[int]) -> dict[str, Any]:
    one, one_base = hub["one_at_a_time"], base["one_at_a_time"]
    result: dict[str, Any] = {
        "one_at_a_time_p50": measure.ratio(one["p50_ms"], one_base["p50_ms"]),
        "one_at_a_time_p99": measure.ratio(one["p99_ms"], one_base["p99_ms"]),
    }
    for level in levels:
        mine, theirs = hub["load"][str(level)], base["load"][str(level)]
        result[f"msg_per_s_{level}_in_flight"] = measure.ratio(
            mine["per_second"], theirs["per_second"]
        )
        result[f"p50_{level}_in_flight"] = measure.ratio(mine["p50_ms"], theirs["p50_ms"])
        result[f"p99_{level}_in_flight"] = measure.ratio(mine["p99_ms"], theirs["p99_ms"])
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    levels = list(args.inflight)
    async with measure.broker() as broker:
        wait = measure.fetch_wait_ms(broker.embedded, args.fetch_wait_ms)
        probe = library(args.borrower, "NORTH")
        size = len(probe.encode(request("B-0")))
        pipe = await measure_pipe(broker.bootstrap, size, wait, args.single, args.per_level, levels)
        forwarder = await measure_forwarder(
            broker, size, wait, args.single, args.per_level, levels, args.idle_s
        )
        hub = await measure_hub(
            broker,
            args.borrower,
            args.lender,
            wait,
            args.single,
            args.per_level,
            levels,
            args.idle_s,
            args.warmup,
            parse_env(args.hub_env),
            args.stages,
            args.pauses,
            args.pause_s,
            args.stage_messages,
        )
    hub_cpu = hub["cpu_ms_per_request"].get("hub")
    fwd_cpu = forwarder["cpu_ms_per_request"].get("forwarder")
    return {
        "borrower": args.borrower,
        "lender": args.lender,
        "message_bytes": size,
        "broker": "embedded tansu" if broker.embedded else broker.bootstrap,
        "fetch_wait_ms": wait,
        "inflight": levels,
        "raw_pipe": pipe,
        "forwarder": forwarder,
        "hub": hub,
        "ratio_hub_to_forwarder": {
            **ratios(hub, forwarder, levels),
            "cpu_ms_per_request": measure.ratio(hub_cpu, fwd_cpu),
            "idle_cpu": measure.ratio(
                hub["idle_cpu_cores"]["total"], forwarder["idle_cpu_cores"]["total"]
            ),
        },
        "ratio_hub_to_pipe": ratios(hub, pipe, levels),
    }


def report(result: dict[str, Any]) -> str:
    levels = result["inflight"]
    phases = [
        ("raw pipe", result["raw_pipe"]),
        ("forwarder", result["forwarder"]),
        ("hub", result["hub"]),
    ]
    singles = [
        [name, r["one_at_a_time"]["p50_ms"], r["one_at_a_time"]["p99_ms"]] for name, r in phases
    ]
    if "after_pause" in result["hub"]:
        paused = result["hub"]["after_pause"]
        singles.append(
            [f"hub, each after {paused['pause_s']:g} s quiet", paused["p50_ms"], paused["p99_ms"]]
        )
    latency = measure.table(["one at a time", "p50 ms", "p99 ms"], singles)
    rows = []
    for level in levels:
        for name, r in phases:
            f = r["load"][str(level)]
            rows.append([f"{name} @ {level}", f["per_second"], f["p50_ms"], f["p99_ms"]])
    load = measure.table(["in flight", "msg/s", "p50 ms", "p99 ms"], rows)
    fwd, hub = result["forwarder"], result["hub"]
    cpu = measure.table(
        ["CPU", "idle (cores)", "ms per request"],
        [
            [
                "forwarder",
                fwd["idle_cpu_cores"]["forwarder"],
                fwd["cpu_ms_per_request"]["forwarder"],
            ],
            [
                "broker (fwd phase)",
                fwd["idle_cpu_cores"]["broker"],
                fwd["cpu_ms_per_request"]["broker"],
            ],
            ["hub", hub["idle_cpu_cores"]["hub"], hub["cpu_ms_per_request"]["hub"]],
            [
                "broker (hub phase)",
                hub["idle_cpu_cores"]["broker"],
                hub["cpu_ms_per_request"]["broker"],
            ],
        ],
        digits=3,
    )
    to_fwd, to_pipe = result["ratio_hub_to_forwarder"], result["ratio_hub_to_pipe"]
    keys = ["one_at_a_time_p50", "one_at_a_time_p99"]
    keys += [f"msg_per_s_{level}_in_flight" for level in levels]
    keys += [f"p99_{level}_in_flight" for level in levels]
    ratio_rows = [[k, to_fwd.get(k), to_pipe.get(k)] for k in keys]
    ratio_rows += [
        ["cpu_ms_per_request", to_fwd["cpu_ms_per_request"], None],
        ["idle_cpu (with broker)", to_fwd["idle_cpu"], None],
    ]
    ratio_table = measure.table(["ratio", "hub/forwarder", "hub/pipe"], ratio_rows, digits=-3)
    head = (
        f"hub {result['borrower']} -> {result['lender']}, {result['message_bytes']} bytes, "
        f"broker {result['broker']}, fetch wait {result['fetch_wait_ms']} ms"
    )
    parts = [head, latency, load, cpu]
    if "cpu_by_stage" in hub:
        parts.append(
            measure.table(
                ["hub CPU by stage (under load)", "% of samples", "ms per request"],
                stages.table(hub["cpu_by_stage"]),
                digits=2,
            )
        )
    return "\n\n".join([*parts, ratio_table])


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--borrower", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--lender", choices=PROTOCOLS, default="ncip")
    parser.add_argument("--single", type=int, default=50, help="messages one at a time")
    parser.add_argument("--per-level", type=int, default=500, help="messages per in-flight level")
    parser.add_argument("--inflight", type=int, nargs="+", default=list(measure.INFLIGHT))
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU sampling time")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--pauses", type=int, default=6, help="hub messages sent each after a quiet pause"
    )
    parser.add_argument("--pause-s", type=float, default=3.0, help="length of that pause")
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=None,
        help="consumers' fetch max wait; default RSHUB_FETCH_WAIT_MS, else "
        "5 on the embedded broker, 500 on an external one",
    )
    parser.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the hub process",
    )
    parser.add_argument(
        "--stages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sample the hub with py-spy under load and report its CPU by stage",
    )
    parser.add_argument(
        "--stage-messages", type=int, default=1000, help="messages of the phase sampled by stage"
    )
    parser.add_argument("--name", default=None, help="results file name (without .json)")
    parser.add_argument("--quick", action="store_true", help="small counts, for a check")
    return parser


def quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.single, args.per_level, args.idle_s, args.warmup = 8, 160, 3.0, 5
        args.pauses, args.stage_messages = min(args.pauses, 3), min(args.stage_messages, 600)


if __name__ == "__main__":
    parsed = arguments(__doc__.splitlines()[0]).parse_args()
    quick(parsed)
    outcome = asyncio.run(main(parsed))
    print(report(outcome))
    name = parsed.name or f"hub-{parsed.borrower}-{parsed.lender}"
    print(f"\nwritten: {measure.write_result(name, outcome)}")
