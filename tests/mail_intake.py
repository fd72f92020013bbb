"""A plain in-memory `Intake` for the mail listener tests (unit level: the hub's real intake
sits on Kafka and is tested end to end). It decodes with the connector's codec as the hub
does, drops a re-read mail by its content id as the engine does, keeps checkpoints and dead
letters in memory, and can `crash` (a BaseException, so no handler in the listener catches
it, as a killed process) at a chosen point."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from connectors.core.contract import Answer, Attempt, Codec, Fault, Limits, Refusal
from connectors.core.directory import Directory


class Crash(BaseException):
    """The process dies here."""


class BrokerRefused(Exception):
    """What the hub's producer raises for a record the broker will not take (aiokafka's
    MessageSizeTooLargeError, a KafkaError: a connector cannot name it)."""


class MemoryIntake:
    def __init__(self, directory: Directory | None = None) -> None:
        self.directory = directory or Directory(consortium="test", partners=[])
        self.limits = Limits()
        self.audits: list[bytes] = []
        self.refused_sources: list[str | None] = []
        self.taken: Counter[str] = Counter()  # request id -> times handed over
        self.applied: dict[str, str] = {}  # content id -> request id (what the engine keeps)
        self.dead: list[tuple[str, str, str | None]] = []  # (stage, reason, partner)
        self.checkpoints: dict[str, str] = {}
        self.crash_after_take: str | None = None  # request id: crash once it is durable
        self.crash_after_checkpoint: int | None = None  # UID: crash once it is recorded
        self.unknown: set[str] = set()  # request ids the state machine refuses (no such request)
        # Records over this many bytes are refused as the producer refuses them (None: all
        # fit); the raw bytes are the audit record's least size.
        self.record_limit: int | None = None
        self.defects: set[str] = set()  # request ids whose handing over raises RuntimeError
        self.broker_up = True  # the gateway's view of the broker; False: nothing is stored
        # Called while a mail is being handed over (a test delivers the next mail then).
        self.during_take: Callable[[], None] | None = None

    async def take(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> Answer:
        # As the gateway: a broker known down, or one refusing a record on the way, is the
        # protocol's temporary failure (stage "unavailable").
        if not self.broker_up:
            raise self.unavailable(codec)
        if self.during_take is not None:
            self.during_take()
        try:
            await self.audit("in", codec.protocol, partner, body, content_type)
        except BrokerRefused:
            raise self.unavailable(codec) from None
        decoded = codec.decode(body, partner, self.limits)
        # As the gateway: a body naming a request the hub does not know is refused whole.
        for message in decoded.messages:
            if message.request_id in self.unknown:
                # The engine's refusal: its dead letter, and the codec's fault as the answer.
                self.dead.append(("apply", f"no transaction {message.request_id}", partner))
                return codec.fault(Fault.STATE, f"no transaction {message.request_id}", decoded)
        for message in decoded.messages:
            if message.request_id in self.defects:
                raise RuntimeError(f"a defect met by {message.request_id}")
            self.taken[message.request_id] += 1
            self.applied.setdefault(message.message_id, message.request_id)
            if self.crash_after_take == message.request_id:
                self.crash_after_take = None
                raise Crash(f"after taking {message.request_id}")
        return codec.accept(decoded)

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        if not self.broker_up:
            raise BrokerRefused("broker unreachable: no dead letter written")
        self.dead.append((refusal.stage, refusal.reason, partner))

    def unavailable(self, codec: Codec[Any]) -> Refusal:
        detail = "the hub cannot store messages at the moment"
        return Refusal(detail, codec.fault(Fault.UNAVAILABLE, detail), "unavailable")

    def authenticated(self, partner: str, authorization: str | None) -> bool:
        raise NotImplementedError

    async def audit(
        self,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
    ) -> str:
        if not self.broker_up:
            raise BrokerRefused("broker unreachable")
        if self.record_limit is not None and len(body) > self.record_limit:
            raise BrokerRefused(f"record of {len(body)} bytes over {self.record_limit}")
        self.audits.append(body)
        return f"audit-{len(self.audits)}"

    async def audit_refused(
        self,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
        source: str | None,
    ) -> str | None:
        """As the hub's gateway: a bounded prefix of a refused sender's mail."""
        self.refused_sources.append(source)
        return await self.audit("in", protocol, partner, body[:2048], content_type)

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        raise NotImplementedError

    async def status(self, transaction_id: str) -> str | None:
        return None

    async def load_checkpoint(self, key: str) -> str | None:
        return self.checkpoints.get(key)

    async def save_checkpoint(self, key: str, value: str) -> None:
        self.checkpoints[key] = value
        uid = int(value.split()[1])
        if self.crash_after_checkpoint == uid:
            self.crash_after_checkpoint = None
            raise Crash(f"after checkpoint {value}")
