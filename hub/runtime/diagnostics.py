"""`kill -USR1 <hub pid>`: every asyncio task's await chain goes to the log (event
`hub.tasks`).

A hub that accepts messages but moves nothing is usually one task waiting on something that
will not come; py-spy shows only the idle event loop, and a task's own stack shows only its
outermost frame, so the hub follows each task's chain of awaits itself."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog

from hub.kafka import internals

log = structlog.get_logger(__name__)


def awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine (or async generator) waits, outermost first."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        frame = frame or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return frames


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        log.warning("hub.tasks", task=task.get_name(), awaits=awaiting(task.get_coro()))


def install(app: Any = None) -> None:
    def dump() -> None:
        dump_tasks()
        if app is not None:
            dump_consumer(app)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def dump_consumer(app: Any) -> None:
    """The worker consumer's view: what it is assigned, what is paused, and per partition
    where it reads against what the broker holds."""
    consumer = app.consumer
    kafka = internals.worker_consumer(consumer)
    active = internals.active_partitions(consumer)
    paused = {f"{tp.topic}:{tp.partition}" for tp in kafka.paused()}
    rows = []
    for tp in sorted(kafka.assignment()):
        position = internals.position(kafka, tp)
        rows.append(
            {
                "tp": f"{tp.topic}:{tp.partition}",
                "position": position,
                "highwater": kafka.highwater(tp),
                "active": active is None or tp in active,
                "read_offset": internals.read_offset(consumer, tp),
                "committed": internals.committed_offset(consumer, tp),
                "acked": len(internals.acked_offsets(consumer, tp)),
            }
        )
    log.warning(
        "hub.consumer",
        paused=sorted(paused),
        flow_active=getattr(consumer, "flow_active", None),
        unacked=sorted(
            f"{m.tp.topic}:{m.tp.partition}@{m.offset}"
            for m in list(getattr(consumer, "_unacked_messages", ()))
        ),
        partitions=rows,
    )
