"""The timer: one Tick per passed deadline, and memory only of what still waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hub.runtime.timer import Timer
from hub.runtime.writing import Writer
from tests.steplog_memory import MemoryStepLog

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def deadline(minutes: int) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


async def test_a_passed_deadline_is_ticked_once_and_a_moved_one_again() -> None:
    rows: dict[str, Any] = {
        "t1": {"next_deadline": deadline(-1)},
        "t2": {"next_deadline": deadline(5)},
    }
    log = MemoryStepLog()
    timer = Timer(lambda: rows.items(), Writer(log, 10_000))

    assert [o.key for o in await timer.tick(NOW)] == ["t1"]
    assert await timer.tick(NOW) == []  # the engine has not acted yet: no second tick
    rows["t1"] = {"next_deadline": deadline(-0)}  # the engine moved the deadline
    assert [o.key for o in await timer.tick(NOW)] == ["t1"]
    assert [w.topics() for w in log.writes] == [["ill.control"], ["ill.control"]]


async def test_what_it_remembers_is_bounded_by_the_transactions_still_waiting() -> None:
    rows: dict[str, Any] = {f"t{n}": {"next_deadline": deadline(-1)} for n in range(100)}
    timer = Timer(lambda: rows.items(), Writer(MemoryStepLog(), 100_000))
    await timer.tick(NOW)
    assert len(timer.ticked) == 100
    for n in range(90):  # closed, or their deadline cleared
        rows[f"t{n}"] = {"next_deadline": None}
    await timer.tick(NOW)
    assert set(timer.ticked) == {f"t{n}" for n in range(90, 100)}
