"""Snapshots of the embedded broker: what it holds, written to the data folder and put back.

The embedded broker (Tansu, memory engine) forgets everything when its process ends. The
keeper (hub.kafka.embedded) therefore dumps it here on stop and every few minutes, and restores the
last snapshot into a fresh broker before any hub connects. Everything goes through the Kafka
protocol: every topic (partitions, cleanup policy, retention), every record (offset, key,
value, headers, timestamp) and the consumer groups' committed offsets.

Offsets stay what they were, so committed offsets and the operators' index keep their
meaning. Where a record is not written back (past its topic's retention, or an older record of
a key in a compacted topic), a *filler* takes its offset: no key, no value, the header
`FILLER_HEADER`, timestamp 0. Readers skip fillers (`is_filler`); a dump never stores them
(the gap they fill is implied by the offsets around it). A record still ahead of a consumer
group's committed offset is never dropped for its age: it was accepted and not yet processed;
so fillers reach only readers outside consumer groups (table recovery, the followers, the
operators' index, `rshub tail`), and of compacted topics.

Restoring writes records in large batches (a fetch on Tansu costs in proportion to the
batches a partition holds), except a partition's last record, which goes alone: Tansu answers
ListOffsets "latest" from the batch with the newest timestamp (hub.kafka.partition_ends).

The file: `MAGIC`, a version, frames (kind, length, payload), then `END` and the SHA-256 of
everything before it. It is written to a temporary file, synced and renamed into place, so a
crash leaves the previous snapshot whole. `read` checks magic, version and digest before it
parses anything: a damaged or foreign file is refused with the reason, never half-loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from hub.kafka import internals, partition_ends

log = structlog.get_logger(__name__)

FILE = "broker.snapshot"
MAGIC = b"RSHUB-BROKER-SNAPSHOT\n"
VERSION = 1
END = b"END!"
FILLER_HEADER = "rshub.filler"
# Records per produced batch when restoring: large batches are what make a restored partition
# cheap to fetch from; a batch stays well under the producer's default max request size.
BATCH_BYTES = 900_000
READ_RECORDS = 5_000

_FRAME = struct.Struct(">cI")  # kind, payload length
_RECORD = struct.Struct(">qqiiH")  # offset, timestamp, key length, value length, headers
_HEADER = struct.Struct(">Hi")  # name length, value length


class SnapshotError(ValueError):
    """The snapshot file cannot be used; the message says why."""


@dataclass
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Partition:
    topic: str
    partition: int
    start: int
    end: int
    records: list[Record] = field(default_factory=list)


@dataclass
class Snapshot:
    taken: str
    topics: dict[str, dict[str, Any]]  # name -> {"partitions": n, "config": {...}}
    groups: dict[str, dict[str, int]]  # group -> {"topic/partition": committed offset}
    partitions: list[Partition]

    @property
    def records(self) -> int:
        return sum(len(p.records) for p in self.partitions)

    @property
    def signature(self) -> str:
        """What changes when anything is written or committed: each partition's end and each
        group's committed offsets (a broker that wrote nothing needs no new snapshot)."""
        ends = {f"{p.topic}/{p.partition}": p.end for p in self.partitions}
        return json.dumps([ends, self.groups], sort_keys=True)


def is_filler(headers: Any) -> bool:
    """Whether a consumed record is a filler the restore wrote (readers skip it)."""
    return bool(headers) and any(name == FILLER_HEADER for name, _ in headers)


# -- the file ------------------------------------------------------------------------------


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(kind, len(payload)) + payload


def _pack_records(records: list[Record]) -> bytes:
    parts: list[bytes] = []
    for r in records:
        key = r.key if r.key is not None else b""
        value = r.value if r.value is not None else b""
        parts.append(
            _RECORD.pack(
                r.offset,
                r.timestamp,
                -1 if r.key is None else len(key),
                -1 if r.value is None else len(value),
                len(r.headers),
            )
        )
        parts.append(key)
        parts.append(value)
        for name, header in r.headers:
            encoded = name.encode()
            parts.append(_HEADER.pack(len(encoded), len(header)))
            parts.append(encoded)
            parts.append(header)
    return b"".join(parts)


def _unpack_records(payload: bytes) -> Iterator[Record]:
    at = 0
    while at < len(payload):
        offset, timestamp, key_len, value_len, count = _RECORD.unpack_from(payload, at)
        at += _RECORD.size
        key = None if key_len < 0 else payload[at : at + key_len]
        at += max(key_len, 0)
        value = None if value_len < 0 else payload[at : at + value_len]
        at += max(value_len, 0)
        headers = []
        for _ in range(count):
            name_len, header_len = _HEADER.unpack_from(payload, at)
            at += _HEADER.size
            name = payload[at : at + name_len].decode()
            at += name_len
            headers.append((name, payload[at : at + header_len]))
            at += header_len
        yield Record(offset, timestamp, key, value, tuple(headers))
    if at != len(payload):
        raise SnapshotError("damaged: a record runs past its frame")


def write(path: Path, snapshot: Snapshot) -> int:
    """Writes `snapshot` to `path` atomically; the file's size in bytes."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    digest = hashlib.sha256()
    size = 0
    try:
        with temporary.open("wb") as out:

            def put(chunk: bytes) -> None:
                nonlocal size
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)

            put(MAGIC + struct.pack(">I", VERSION))
            head = {"taken": snapshot.taken, "topics": snapshot.topics, "groups": snapshot.groups}
            put(_frame(b"H", json.dumps(head).encode()))
            for part in snapshot.partitions:
                bounds = {k: getattr(part, k) for k in ("topic", "partition", "start", "end")}
                put(_frame(b"P", json.dumps(bounds).encode()))
                for at in range(0, len(part.records), READ_RECORDS):
                    put(_frame(b"R", _pack_records(part.records[at : at + READ_RECORDS])))
            out.write(END + digest.digest())
            size += len(END) + digest.digest_size
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
    return size


def read(path: Path) -> Snapshot:
    """The snapshot in `path`, checked whole before anything is parsed (`SnapshotError`)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path} is not an rshub broker snapshot")
    if len(data) < len(MAGIC) + 4:
        raise SnapshotError(f"{path} is truncated")
    (version,) = struct.unpack_from(">I", data, len(MAGIC))
    if version != VERSION:
        raise SnapshotError(f"{path} is version {version}; this rshub reads version {VERSION}")
    digest_size = hashlib.sha256().digest_size
    body, trailer = data[: -len(END) - digest_size], data[-len(END) - digest_size :]
    if not trailer.startswith(END) or hashlib.sha256(body).digest() != trailer[len(END) :]:
        raise SnapshotError(f"{path} is damaged or truncated (its checksum does not match)")
    try:
        return _parse(body, len(MAGIC) + 4)
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as error:
        raise SnapshotError(f"{path} is damaged: {error}") from error


def _parse(body: bytes, at: int) -> Snapshot:
    snapshot: Snapshot | None = None
    current: Partition | None = None
    while at < len(body):
        kind, length = _FRAME.unpack_from(body, at)
        at += _FRAME.size
        payload = body[at : at + length]
        if len(payload) != length:
            raise SnapshotError("damaged: a frame runs past the end")
        at += length
        if kind == b"H":
            head = json.loads(payload)
            snapshot = Snapshot(head["taken"], head["topics"], head["groups"], [])
        elif snapshot is None:
            raise SnapshotError("damaged: no header")
        elif kind == b"P":
            bounds = json.loads(payload)
            current = Partition(**bounds)
            snapshot.partitions.append(current)
        elif kind == b"R" and current is not None:
            current.records.extend(_unpack_records(payload))
        else:
            raise SnapshotError(f"damaged: unknown frame {kind!r}")
    if snapshot is None:
        raise SnapshotError("damaged: no header")
    return snapshot


@dataclass(frozen=True)
class Summary:
    """What `rshub broker status` says of the last snapshot."""

    path: Path
    size: int
    taken: float  # the file's modification time (seconds since the epoch)

    def age_s(self) -> float:
        return max(0.0, time.time() - self.taken)


def summary(data_dir: Path) -> Summary | None:
    path = data_dir / FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return Summary(path, stat.st_size, stat.st_mtime)


# -- dump: read everything the broker holds ------------------------------------------------


async def dump(bootstrap: str, since: Snapshot | None = None) -> Snapshot | None:
    """What the broker at `bootstrap` holds. `since`: an earlier dump of the same broker (the
    same life: see the keeper); None is then returned when nothing was written or committed
    since, and of a partition that only grew, only the new records are read. Committed
    offsets are read first and the records up to the ends found afterwards, so no committed
    offset points past what is saved."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=f"rshub-snapshot-{uuid.uuid4().hex[:6]}",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        names = sorted(await admin.list_topics())
        await internals.refresh_metadata(consumer)
        counts = {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
        configs = await _configs(admin, names)
        topics: dict[str, dict[str, Any]] = {
            name: {"partitions": counts[name], "config": configs.get(name, {})} for name in names
        }
        tps = [TopicPartition(n, p) for n in names for p in range(counts[n])]
        groups = await _committed(bootstrap, admin, tps)
        found = await partition_ends.bounds(consumer, tps)
        survey = Snapshot(
            "",
            topics,
            groups,
            [Partition(tp.topic, tp.partition, 0, found[tp].end) for tp in tps],
        )
        if since is not None and survey.signature == since.signature:
            return None
        before = {(p.topic, p.partition): p for p in since.partitions} if since else {}
        partitions = []
        for tp in tps:
            start = max(found[tp].start, 0)
            part = Partition(tp.topic, tp.partition, start, found[tp].end)
            known = before.get((tp.topic, tp.partition))
            if known is not None and known.start == start and known.end <= part.end:
                # Incremental: what was read then is still there (Tansu deletes nothing).
                part.records = list(known.records)
                start = known.end
            if part.end > start:
                part.records += await _read(consumer, tp, start, part.end)
            partitions.append(part)
        return Snapshot(datetime.now(UTC).isoformat(), topics, groups, partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    wanted = {"cleanup.policy", "retention.ms"}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    found: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _error, _message, _kind, name, entries in response.resources:
            found[name] = {
                entry[0]: entry[1] for entry in entries if entry[0] in wanted and entry[1]
            }
    return found


async def _committed(
    bootstrap: str, admin: AIOKafkaAdminClient, tps: list[TopicPartition]
) -> dict[str, dict[str, int]]:
    """Each consumer group's committed offsets. Asked one partition at a time through a
    consumer of the group that never joins it (the admin client's OffsetFetch answer from
    Tansu 0.6.0 does not decode)."""
    groups: dict[str, dict[str, int]] = {}
    for group, _protocol in await admin.list_consumer_groups():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            offsets = {}
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is not None and committed >= 0:
                    offsets[f"{tp.topic}/{tp.partition}"] = committed
            if offsets:
                groups[group] = offsets
        finally:
            await consumer.stop()
    return groups


async def _read(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> list[Record]:
    consumer.assign([tp])
    consumer.seek(tp, start)
    records: list[Record] = []
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=READ_RECORDS)
        for r in batch.get(tp, ()):
            if r.offset >= end:
                break
            if not is_filler(r.headers):
                records.append(Record(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)))
    return records


# -- restore: a fresh broker gets it all back ----------------------------------------------


@dataclass
class Restored:
    records: int = 0  # written back
    dropped: int = 0  # past retention or compacted away (their offsets filled)
    fillers: int = 0


def keep(
    part: Partition, config: dict[str, str], committed: int | None, now_ms: int
) -> list[Record]:
    """The records of `part` worth writing back: a compacted topic keeps each key's last
    record; a topic with a retention drops older records, but only those every consumer
    group has read past (`committed`: the least committed offset on the partition, None
    where no group reads it)."""
    records = part.records
    if "compact" in config.get("cleanup.policy", ""):
        last: dict[bytes, int] = {}
        for r in records:
            if r.key is not None:
                last[r.key] = r.offset
        records = [r for r in records if r.key is None or last[r.key] == r.offset]
    retention = config.get("retention.ms")
    if retention and int(retention) > 0:
        horizon = now_ms - int(retention)
        read_up_to = committed if committed is not None else part.end
        records = [r for r in records if r.timestamp >= horizon or r.offset >= read_up_to]
    return records


async def restore(bootstrap: str, snapshot: Snapshot) -> Restored:
    """Writes `snapshot` into the (empty) broker at `bootstrap`: topics, records at their
    offsets, committed offsets; then checks every partition ends where it did."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, spec["partitions"], 1, topic_configs=spec.get("config") or {})
            for name, spec in snapshot.topics.items()
            if name not in existing and spec["partitions"] > 0
        ]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()
    least = _least_committed(snapshot)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=4 * BATCH_BYTES
    )
    await producer.start()
    done = Restored()
    now_ms = int(time.time() * 1000)
    try:
        for part in snapshot.partitions:
            config = snapshot.topics.get(part.topic, {}).get("config") or {}
            kept = keep(part, config, least.get(f"{part.topic}/{part.partition}"), now_ms)
            written, fillers = await _write_partition(producer, part, kept)
            done.records += written
            done.fillers += fillers
            done.dropped += len(part.records) - len(kept)
    finally:
        await producer.stop()
    await _commit(
        bootstrap, snapshot.groups, {(p.topic, p.partition): p.end for p in snapshot.partitions}
    )
    await _check_ends(bootstrap, snapshot)
    return done


def _least_committed(snapshot: Snapshot) -> dict[str, int]:
    """Per partition ("topic/partition"), the least offset a consumer group reading it has
    committed. A group reads a topic where it committed on any of its partitions; on one it
    has not committed on yet it has read nothing (0): nothing there is dropped for its age,
    and no filler ever reaches a group's consumer."""
    least: dict[str, int] = {}
    for offsets in snapshot.groups.values():
        read = {key.rpartition("/")[0] for key in offsets}
        for part in snapshot.partitions:
            if part.topic in read:
                key = f"{part.topic}/{part.partition}"
                offset = offsets.get(key, 0)
                least[key] = min(offset, least.get(key, offset))
    return least


async def _write_partition(
    producer: AIOKafkaProducer, part: Partition, kept: list[Record]
) -> tuple[int, int]:
    """Writes offsets 0 .. part.end: `kept` at their offsets, a filler at every other one,
    in large batches; the last offset in a batch of its own. (written, fillers)."""
    if part.end == 0:
        return 0, 0
    by_offset = {r.offset: r for r in kept}
    filler = Record(0, 0, None, None, ((FILLER_HEADER, b""),))
    batch = producer.create_batch()
    pending: list[asyncio.Future[Any]] = []
    fillers = 0

    async def send() -> None:
        nonlocal batch
        if batch.record_count():
            pending.append(await producer.send_batch(batch, part.topic, partition=part.partition))
            batch = producer.create_batch()

    for offset in range(part.end):
        record = by_offset.get(offset, filler)
        if record is filler:
            fillers += 1
        if offset == part.end - 1:
            await send()  # the last record alone: see the module's docstring
        timestamp = record.timestamp
        if record is filler and offset == part.end - 1:
            timestamp = int(time.time() * 1000)  # the newest batch must be the last one
        appended = batch.append(
            key=record.key, value=record.value, timestamp=timestamp, headers=list(record.headers)
        )
        if appended is None:
            await send()
            appended = batch.append(
                key=record.key,
                value=record.value,
                timestamp=timestamp,
                headers=list(record.headers),
            )
            if appended is None:
                raise SnapshotError(f"a record of {part.topic}/{part.partition} is too large")
    await send()
    await asyncio.gather(*pending)
    return part.end - fillers, fillers


async def _commit(
    bootstrap: str, groups: dict[str, dict[str, int]], ends: dict[tuple[str, int], int]
) -> None:
    for group, offsets in groups.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            commits = {}
            for key, offset in offsets.items():
                topic, _, partition = key.rpartition("/")
                end = ends.get((topic, int(partition)))
                if end is not None:
                    commits[TopicPartition(topic, int(partition))] = min(offset, end)
            if commits:
                consumer.assign(list(commits))
                await consumer.commit(commits)
        finally:
            await consumer.stop()


async def _check_ends(bootstrap: str, snapshot: Snapshot) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(p.topic, p.partition) for p in snapshot.partitions]
        found = await partition_ends.end_offsets(consumer, tps)
        wrong = [
            f"{p.topic}/{p.partition}: {found[TopicPartition(p.topic, p.partition)]} not {p.end}"
            for p in snapshot.partitions
            if found[TopicPartition(p.topic, p.partition)] != p.end
        ]
        if wrong:
            raise SnapshotError(f"restored partitions end elsewhere: {', '.join(wrong)}")
    finally:
        await consumer.stop()
