"""What every benchmark shares: latency statistics, the closed-loop load driver, CPU sampling
from /proc, the broker to measure on, printing and writing results.

Figures on a shared 2-core machine are noisy; benchmarks therefore report each figure beside a
baseline measured in the same run (ratios), and write everything to `bench/results/<name>.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
from hub.runtime import logs

RESULTS = Path(__file__).resolve().parent / "results"
INFLIGHT = (16, 64, 128)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    """Progress and phase announcements: stderr, so stdout carries only the tables."""
    print(text, file=sys.stderr, flush=True)


def progress(label: str, done: int, total: int) -> None:
    if done % max(1, total // 10) == 0 or done == total:
        say(f"  {label}: {done}/{total}")


# -- statistics -----------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values (p99 of 100 values is the 99th)."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


def summary(latencies: Iterable[float], elapsed: float | None = None) -> dict[str, float]:
    """Latencies in seconds -> count, p50/p99/max in ms, and msg/s if `elapsed` is given."""
    ordered = sorted(latencies)
    result = {
        "messages": len(ordered),
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else float("nan")) * 1000,
    }
    if elapsed:
        result["per_second"] = len(ordered) / elapsed
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or a != a or b != b:  # None, zero or NaN
        return None
    return a / b


# -- arrivals and the load driver -------------------------------------------------------------


class Arrivals:
    """Where a receiving side reports what reached it: one future per expected id, resolved
    with the perf_counter time of receipt. Ids nobody waits for are counted and ignored."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.unexpected = 0

    def expect(self, key: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        return future

    def arrived(self, key: str, at: float | None = None) -> None:
        future = self.waiting.pop(key, None)
        if future is None:
            self.unexpected += 1
        elif not future.done():
            future.set_result(time.perf_counter() if at is None else at)

    def forget(self, key: str) -> None:
        self.waiting.pop(key, None)


Send = Callable[[str, int], Awaitable[None]]  # (message id, sequence number)


async def closed_loop(
    send: Send,
    arrivals: Arrivals,
    count: int,
    inflight: int,
    label: str,
    prefix: str,
    timeout: float = 120.0,
) -> dict[str, float]:
    """`inflight` workers; each sends a message and waits until the far side has it before
    sending the next, so exactly `inflight` messages are in the system. Latency: from the
    start of the send to the receipt; msg/s: messages over the wall time of the phase."""
    latencies: list[float] = []
    numbers = itertools.count()

    async def worker() -> None:
        while (n := next(numbers)) < count:
            key = f"{prefix}-{n}"
            received = arrivals.expect(key)
            sent = time.perf_counter()
            await send(key, n)
            try:
                at = await asyncio.wait_for(received, timeout)
            except TimeoutError:
                arrivals.forget(key)
                raise RuntimeError(f"{label}: {key} did not arrive within {timeout} s") from None
            latencies.append(at - sent)
            progress(label, len(latencies), count)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(inflight, count))))
    result = summary(latencies, time.perf_counter() - start)
    result["inflight"] = inflight
    return result


async def after_pauses(
    send: Send, arrivals: Arrivals, count: int, pause_s: float, label: str, prefix: str
) -> dict[str, float]:
    """`count` messages one at a time, each after `pause_s` of quiet: the latency a partner
    sees when traffic is sparse, as in most consortia (the hub's consumers have gone idle)."""
    latencies: list[float] = []
    for n in range(count):
        await asyncio.sleep(pause_s)  # the quiet is what is measured, not a synchronisation
        one = await closed_loop(send, arrivals, 1, 1, f"{label} {n + 1}/{count}", f"{prefix}-{n}")
        latencies.append(one["p50_ms"] / 1000)
    result = summary(latencies)
    result["pause_s"] = pause_s
    return result


async def load_levels(
    send: Send,
    arrivals: Arrivals,
    single: int,
    per_level: int,
    levels: Sequence[int],
    label: str,
    pids: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """One at a time (p50/p99), then each in-flight level (msg/s, p50/p99). The CPU of `pids`
    is taken over the in-flight levels only and divided by their messages: CPU ms per request
    under load, not inflated by idle fetch loops between one-at-a-time messages."""
    result: dict[str, Any] = {}
    result["one_at_a_time"] = await closed_loop(
        send, arrivals, single, 1, f"{label}, one at a time", f"{label}-1"
    )
    result["load"] = {}
    meter = CpuMeter(pids or {})
    meter.start()
    for level in levels:
        result["load"][str(level)] = await closed_loop(
            send, arrivals, per_level, level, f"{label}, {level} in flight", f"{label}-{level}"
        )
    spent = meter.stop()
    total = per_level * len(levels)
    result["cpu_ms_per_request"] = {
        name: (seconds * 1000 / total if seconds is not None else None)
        for name, seconds in spent.items()
    }
    return result


# -- CPU --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds spent by named processes between start() and stop(); a name whose pid is
    None (an external broker) reports None."""

    pids: dict[str, int | None]

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.begin = {n: cpu_seconds(p) for n, p in self.pids.items() if p}

    def stop(self) -> dict[str, float | None]:
        self.elapsed = time.perf_counter() - self.wall
        return {n: (cpu_seconds(p) - self.begin[n]) if p else None for n, p in self.pids.items()}


# Before idle CPU is measured, this long with nothing sent: a process that has just worked
# is not idle yet (the hub's consumers slow their fetches after a quiet second, and its
# operators' index reads what the warm-up wrote). Same for every process measured.
IDLE_SETTLE_S = 5.0


async def idle_cpu(
    pids: dict[str, int | None], seconds: float, settle_s: float = IDLE_SETTLE_S
) -> dict[str, float | None]:
    """Fraction of one core each process uses while nothing is sent, after `settle_s`."""
    await asyncio.sleep(settle_s)  # the quiet is the condition measured, not a synchronisation
    meter = CpuMeter(pids)
    meter.start()
    await asyncio.sleep(seconds)  # measuring idleness: nothing to await but time
    spent = meter.stop()
    fractions = {n: (s / meter.elapsed if s is not None else None) for n, s in spent.items()}
    known = [f for f in fractions.values() if f is not None]
    fractions["total"] = sum(known) if known else None
    return fractions


async def cpu_during(
    pids: dict[str, int | None], work: Awaitable[Any]
) -> tuple[Any, dict[str, float | None]]:
    meter = CpuMeter(pids)
    meter.start()
    result = await work
    return result, meter.stop()


# -- broker and fetch wait --------------------------------------------------------------------


@dataclass
class Broker:
    bootstrap: str
    pid: int | None  # None: an external broker, whose CPU this machine cannot see
    embedded: bool


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[Broker]:
    """The broker every phase of a run shares: KAFKA_BOOTSTRAP_SERVERS if set, else a fresh
    embedded Tansu. The bench process logs warnings only, to stderr."""
    logs.configure("WARNING", "console")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        await wait_for_metadata(external)
        yield Broker(external, None, embedded=False)
        return
    embedded = EmbeddedBroker()
    bootstrap = embedded.start()
    try:
        await wait_for_metadata(bootstrap)
        assert embedded.process is not None
        yield Broker(bootstrap, embedded.process.pid, embedded=True)
    finally:
        embedded.stop()


def fetch_wait_ms(embedded: bool, given: int | None = None) -> int:
    """The consumers' fetch max wait: the argument, else RSHUB_FETCH_WAIT_MS, else what the hub
    uses on this broker kind (`hub.kafka.fetching`), so the baselines wait as the hub does."""
    from hub.kafka import fetching

    if given is not None:
        return given
    configured = os.environ.get("RSHUB_FETCH_WAIT_MS")
    return fetching.fetch_wait_ms(
        int(configured) if configured else None, "tansu" if embedded else "kafka"
    )


# -- output -----------------------------------------------------------------------------------


def fmt(value: object, digits: int = 1) -> str:
    """A float with `digits` decimals; a negative `digits` means that many significant
    digits (for ratios, which range from 0.003 to 400)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{-digits}g}" if digits < 0 else f"{value:.{digits}f}"
    return str(value)


def line(values: Sequence[object], widths: Sequence[int], digits: int = 1) -> str:
    cells = [v if isinstance(v, str) else fmt(v, digits) for v in values]
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], digits: int = 1) -> str:
    cells = [list(headers), *[[fmt(v, digits) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [line(row, widths) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {
        "benchmark": name,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "note": "absolute figures are noisy on a shared machine; compare the ratios, which "
        "are measured in the same run",
        **result,
    }
    path.write_text(json.dumps(result, indent=2))
    return path
