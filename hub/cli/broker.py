"""`rshub broker status|stop|compact`: the data folder's embedded broker."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from hub.cli import running
from hub.kafka import embedded as kept_broker
from hub.runtime.settings import Settings


def _say_snapshot(data_dir: Path) -> None:
    from hub.kafka import snapshots

    last = snapshots.summary(data_dir)
    if last is None:
        print("  no snapshot yet")
        return
    taken = datetime.fromtimestamp(last.taken, UTC)
    age = (
        f"{last.age_s():.0f}s"
        if last.age_s() < 60
        else running.age(taken.isoformat(), datetime.now(UTC))
    )
    print(f"  last snapshot {last.path}: {last.size:,} bytes, {age} old ({taken.isoformat()})")


def broker_command(settings: Settings, action: str, force: bool) -> int:
    """`rshub broker status|stop|compact`: the data folder's embedded broker."""
    data_dir = settings.data_dir
    kept = kept_broker.running(data_dir)
    if action == "status":
        if settings.bootstrap_servers:
            answers = (
                "answers" if running.answers(settings.bootstrap_servers) else "does NOT answer"
            )
            print(f"Kafka at {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) {answers}")
        if kept is None:
            print(f"no embedded broker is running for {data_dir.resolve()}")
            _say_snapshot(data_dir)
            return 1
        state = "answers" if running.answers(kept.address) else "does NOT answer"
        used = "yes" if kept_broker.in_use(data_dir) else "no"
        print(f"embedded broker at {kept.address} {state}")
        print(f"  keeper pid {kept.pid}, broker pid {kept.broker_pid}, since {kept.started}")
        print(f"  used by a running `rshub serve`: {used}")
        _say_snapshot(data_dir)
        print(f"  {kept_broker.loss_bound(kept.snapshot_s)}")
        return 0
    if kept is None and action == "stop":
        print(f"no embedded broker is running for {data_dir.resolve()}")
        return 0
    if kept is not None and kept_broker.in_use(data_dir) and not force:
        print(
            f"rshub: a running `rshub serve` uses the embedded broker at {kept.address}; "
            "stop it first (or --force: what it writes after the last snapshot is lost)",
            file=sys.stderr,
        )
        return 2
    if kept is not None:
        kept_broker.stop(data_dir)  # its keeper writes a last snapshot first
        print(f"stopped the embedded broker at {kept.address}; its data is in the snapshot")
        _say_snapshot(data_dir)
    if action == "compact":
        # A fresh broker with the snapshot restored: past retention dropped, compacted topics
        # compacted, records in large batches (hub.kafka.snapshots).
        try:
            again, _ = kept_broker.ensure(
                data_dir, snapshot_s=kept.snapshot_s if kept else settings.broker_snapshot_s
            )
        except kept_broker.BrokerError as error:
            print(f"rshub: {error}", file=sys.stderr)
            return 1
        print(f"compacted: the embedded broker at {again.address} holds the snapshot rewritten")
    return 0


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `broker` command's options."""
    p_broker = sub.add_parser(
        "broker",
        help="the embedded broker that outlives `rshub serve`: status, stop, compact "
        "(restart it from its snapshot: retention and compaction applied)",
    )
    p_broker.add_argument("action", choices=("status", "stop", "compact"))
    p_broker.add_argument(
        "--force",
        action="store_true",
        help="stop it even while a hub uses it (what it writes after the snapshot is lost)",
    )
