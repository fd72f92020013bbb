"""Where the hub's CPU goes, by stage of a request's way through it.

py-spy (a sampling profiler; `pip install py-spy`) samples the hub process while it is under
load, keeping only the samples in which one of its threads holds the GIL: the Python work. Each
sample's stack is given to the first stage in `STAGES` one of whose markers it contains, so a
record produced from the gateway's request handler counts as the gateway's and the producer's
own sending task as the producer's. The shares are then scaled to the hub's measured CPU ms
per request (work outside the GIL, mostly the kernel's socket calls, is spread with them).

Sampling needs ptrace rights on the hub (same user, and `kernel.yama.ptrace_scope` 0 or 1 for a
child process); where py-spy is missing or refused, the benchmark says so and goes on without
the breakdown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (stage, markers): a marker is a piece of a py-spy frame, "function (package/module.py)".
# Ordered: callers before what they call, so that work done on a stage's behalf (a send's
# encoding, a codec's parse) counts for the stage that asked for it.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "gateway: HTTP in, decode, audit and inbound records",
        ("(hub/runtime/gateway.py)", "(aiohttp/web_protocol.py)", "(aiohttp/web_app.py)"),
    ),
    (
        "transaction agent: the engine applying a step",
        ("TransactionAgent.apply", "TransactionAgent.prepare", "(hub/domain/engine.py)"),
    ),
    (
        "transaction agent: table row, sending its records",
        ("transaction_agent", "FaustStepLog."),
    ),
    (
        "outbound agent: render, POST, delivery result",
        ("(hub/runtime/outbound_agent.py)", "(hub/runtime/partner_queues.py)", "(aiohttp/client"),
    ),
    (
        "followers (verdicts, items, load) and the operators' index",
        ("(hub/kafka/followers.py)", "(hub/ops/index.py)"),
    ),
    # faust's consumer runs in a thread of its own (a mode ServiceThread) with its own loop.
    ("fetching (faust's consumer thread)", ("(mode/threads.py)", "(aiokafka/consumer/fetcher.py)")),
    (
        "faust: handing fetched records to the agents",
        (
            "(faust/transport/consumer.py)",
            "(faust/transport/conductor.py)",
            "(faust/streams.py)",
            "(faust/agents/",
        ),
    ),
    (
        "producing (faust's buffer, aiokafka's sender)",
        (
            "(aiokafka/producer/",
            "(faust/transport/producer.py)",
            "(faust/topics.py)",
            "murmur2",
            "(hub/kafka/partitioning.py)",
        ),
    ),
    (
        "Kafka wire protocol: encoding requests, reading responses",
        ("(aiokafka/conn.py)", "(aiokafka/protocol/", "(aiokafka/client.py)"),
    ),
)
OTHER = "other: event loop, timers, faust's services"
KEEP = "RSHUB_BENCH_STAGES_RAW"  # a path: the sampler copies py-spy's raw stacks there


def stage(stack: str) -> str:
    for name, markers in STAGES:
        if any(marker in stack for marker in markers):
            return name
    return OTHER


def parse(lines: Iterable[str]) -> Counter[str]:
    """py-spy's raw format: one line per distinct stack, "frame;frame;... count"."""
    samples: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            samples[stage(stack)] += int(count)
    return samples


def breakdown(
    samples: Counter[str], cpu_ms_per_request: float | None
) -> dict[str, dict[str, float]]:
    """Each stage's share of the samples and, given the hub's CPU per request, its ms."""
    total = sum(samples.values())
    result: dict[str, dict[str, float]] = {}
    for name in [s for s, _ in STAGES] + [OTHER]:
        share = samples.get(name, 0) / total if total else 0.0
        row = {"share": share}
        if cpu_ms_per_request is not None:
            row["cpu_ms_per_request"] = share * cpu_ms_per_request
        result[name] = row
    return result


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


class Sampler:
    """py-spy recording one process between start() and stop(); `samples` after stop() (None
    when it could not sample, with the reason in `problem`)."""

    def __init__(self, pid: int | None, rate: int = 100) -> None:
        self.pid, self.rate = pid, rate
        self.process: subprocess.Popen[bytes] | None = None
        self.samples: Counter[str] | None = None
        self.problem: str | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="rshub-stages-"))
        self.output = self.folder / "raw.txt"

    def start(self) -> None:
        binary = py_spy()
        if binary is None:
            self.problem = "py-spy is not installed (pip install py-spy)"
            return
        if self.pid is None:
            self.problem = "no hub process to sample"
            return
        self.process = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--gil",
                "--nolineno",
                "--format",
                "raw",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        # py-spy writes what it has on SIGINT, as on Ctrl-C.
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.problem = "py-spy did not finish"
            return
        if not self.output.exists():
            self.problem = "py-spy wrote nothing: " + err.decode(errors="replace").strip()[-300:]
            return
        with self.output.open() as lines:
            self.samples = parse(lines)
        keep = os.environ.get(KEEP)
        if keep:  # the raw stacks, for a look by function (`python -m bench.stages FILE`)
            shutil.copyfile(self.output, keep)
        shutil.rmtree(self.folder, ignore_errors=True)


def table(breakdown_: dict[str, dict[str, float]]) -> list[list[object]]:
    return [
        [name, 100 * row["share"], row.get("cpu_ms_per_request")]
        for name, row in breakdown_.items()
    ]


def functions(lines: Iterable[str], top: int = 40) -> list[tuple[str, int, int]]:
    """The functions with the most samples in py-spy's raw stacks: (frame, own samples,
    samples it is on the stack of)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not (stack and count.isdigit()):
            continue
        frames = stack.split(";")
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    return [(frame, own[frame], n) for frame, n in inclusive.most_common(top)] + [
        (f"own: {frame}", n, inclusive[frame]) for frame, n in own.most_common(top)
    ]


if __name__ == "__main__":
    with open(sys.argv[1]) as raw:
        for frame, mine, under in functions(raw, int(sys.argv[2]) if len(sys.argv) > 2 else 40):
            print(f"{mine:6d} {under:6d}  {frame}")
