"""Records the hub writes to Kafka besides canonical messages (one pydantic model per topic)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializeAsAny, TypeAdapter

from connectors.core.holdings import HoldingsResult
from connectors.core.model import Correlation, Event, Message, now


class Delivery(BaseModel):
    """A command to an outbound connector: deliver this message to this partner."""

    command_id: str
    transaction_id: str
    recipient: str
    protocol: str
    attempt: int = Field(0, description="lender attempt the message belongs to (0: borrower)")
    try_number: int = Field(1, ge=1, description="1 for the first try; retries count up")
    message: Message
    correlation: SerializeAsAny[Correlation] | None = Field(
        None, description="what the recipient gave to recognise its own messages (None: new)"
    )
    state: str | None = Field(None, description="the transaction's state after this step")
    withdraws: list[str] = Field(
        default_factory=list,
        description="commands this step takes back (a Cancel after staff rerouted while the "
        "request was in flight): those not yet tried are not sent, and this step is sent "
        "only if one of them was",
    )


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"  # the partner's protocol has no form for this step
    WITHDRAWN = "withdrawn"  # taken back before it was tried: never sent, never to be


class DeliveryResult(BaseModel):
    command_id: str
    transaction_id: str
    recipient: str
    event: Event
    attempt: int = 0
    outcome: DeliveryOutcome
    retryable: bool = Field(True, description="a failure another try may cure (network, 5xx)")
    detail: str = ""
    tries: int = Field(1, description="attempts made in this try (quick in-call retries)")
    try_number: int = 1
    at: datetime = Field(default_factory=now)

    @property
    def result_id(self) -> str:
        return f"{self.command_id}:{self.try_number}:{self.outcome.value}"


class VerdictOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class Verdict(BaseModel):
    """What the state machine did with one inbound message (on ill.replies)."""

    message_id: str
    transaction_id: str
    outcome: VerdictOutcome
    state: str
    error: str | None = None


class DeadLetter(BaseModel):
    stage: str = Field(description="parse, authenticate, address, apply or deliver")
    error: str
    partner: str | None = None
    protocol: str | None = None
    transaction_id: str | None = None
    audit_ref: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=now)


class DeadLetterMark(BaseModel):
    """Staff settled a dead letter: acknowledged it (the cause is known and dealt with) or
    replayed it. Written to ill.deadletter after the letter; the letter stays, marked."""

    ref: str = Field(description="the dead letter's reference, topic/partition/offset")
    mark: Literal["acknowledged", "replayed"]
    by: str
    note: str = ""
    at: datetime = Field(default_factory=now)


# Raw bytes inside JSON records. Text stays readable in Kafka tools, but JSON writes a byte
# >= 0x80 as two and a control byte as six (\u00XX): only printable ASCII up to TEXT_LIMIT
# (at most two bytes each in JSON: quote, backslash, tab, CR, LF) is kept as text, anything
# else as base64 (4/3 of its size), so the largest record follows from the body limit (the
# settings check RSHUB_MAX_BODY_BYTES against RSHUB_MAX_RECORD_BYTES with `packed_size`).
TEXT_LIMIT = 64 * 1024
RawEncoding = Literal["latin-1", "base64"]
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\r\n"


def pack(data: bytes) -> tuple[str, RawEncoding]:
    """Bytes as JSON-safe text: (text, encoding)."""
    if len(data) <= TEXT_LIMIT and not data.translate(None, _PRINTABLE):
        return data.decode("ascii"), "latin-1"
    return base64.b64encode(data).decode("ascii"), "base64"


def unpack(text: str | None, encoding: str | None) -> bytes:
    """The bytes `pack` was given; a record written before `encoding` existed is latin-1."""
    if encoding == "base64":
        return base64.b64decode(text or "")
    return (text or "").encode("latin-1", "replace")


def packed_size(size: int) -> int:
    """The most text `pack` makes of `size` bytes (JSON escapes included)."""
    return max(2 * min(size, TEXT_LIMIT), 4 * ((size + 2) // 3))


class AuditRecord(BaseModel):
    direction: str = Field(description="in or out")
    protocol: str
    partner: str | None
    content_type: str | None = None
    body: str = Field(description="the raw bytes as text (see `encoding`)")
    encoding: RawEncoding = Field(
        "latin-1", description="latin-1: the bytes latin-1 decoded; base64 for large bodies"
    )
    size: int | None = Field(None, description="bytes received (when `body` holds fewer)")
    sha256: str | None = Field(None, description="digest of all bytes received")
    truncated: bool = Field(False, description="`body` holds only the first bytes")
    transaction_id: str | None = None
    at: datetime = Field(default_factory=now)

    @classmethod
    def of(
        cls,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None = None,
        transaction_id: str | None = None,
        *,
        keep: int | None = None,
    ) -> AuditRecord:
        """The record of `body`; with `keep`, only its first `keep` bytes plus its size and
        digest (input refused before authentication costs bounded space)."""
        kept = body if keep is None else body[:keep]
        text, encoding = pack(kept)
        return cls(
            direction=direction,
            protocol=protocol,
            partner=partner,
            content_type=content_type[:200] if content_type else content_type,
            body=text,
            encoding=encoding,
            size=len(body) if keep is not None else None,
            sha256=hashlib.sha256(body).hexdigest() if keep is not None else None,
            truncated=len(kept) < len(body),
            transaction_id=transaction_id,
        )

    def raw(self) -> bytes:
        return unpack(self.body, self.encoding)


def audit_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes an audit record (as read from JSON) holds."""
    return unpack(record.get("body"), record.get("encoding"))


class RoutingDecision(BaseModel):
    """Why a lender was asked (or none could be): on ill.routing, one per choice."""

    transaction_id: str
    attempt: int = Field(description="number of the attempt the chosen lender gets")
    profile: str | None = None
    candidates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="every rota member: holdings, load figures, rank or skip reason",
    )
    chosen: str | None
    skipped: list[dict[str, str]] = Field(default_factory=list)
    reason: str
    at: datetime = Field(default_factory=now)


class Locate(BaseModel):
    """A command to the locate agent (ill.locate): search these lenders' catalogues."""

    locate_id: str
    transaction_id: str
    terms: list[tuple[str, str]]
    lenders: list[str]


class Located(BaseModel):
    """The locate agent's answer, back to the transaction (ill.control)."""

    kind: Literal["located"] = "located"
    locate_id: str
    transaction_id: str
    results: list[HoldingsResult]

    @property
    def ref(self) -> str:
        return self.locate_id + ":located"


class Tick(BaseModel):
    """The clock reached `at` for a transaction with a deadline (ill.control). The engine
    reads time only from here, so tests move the clock by sending a Tick."""

    kind: Literal["tick"] = "tick"
    transaction_id: str
    at: datetime

    @property
    def ref(self) -> str:
        return f"tick:{self.at.isoformat()}"


class RouteAction(StrEnum):
    LENDER = "lender"  # ask this lender now
    SKIP = "skip"  # never ask this lender for this request
    RESTART = "restart"  # search the catalogues again and rebuild the rota
    NEXT = "next"  # take it back from the lender holding it and ask the next one


class RouteCommand(BaseModel):
    """Staff intervention in a request's routing (`rshub route`), on ill.control."""

    kind: Literal["route"] = "route"
    command_id: str
    transaction_id: str
    action: RouteAction
    lender: str | None = None
    by: str = Field("staff", description="who asked, for the record")

    @property
    def ref(self) -> str:
        return self.command_id


class Redeliver(BaseModel):
    """Send a transaction's failed or parked deliveries again now (to one partner, or all):
    `rshub redeliver`, or the hub itself once a partner answers again (ill.control)."""

    kind: Literal["redeliver"] = "redeliver"
    command_id: str
    transaction_id: str
    partner: str | None = None
    by: str = Field("staff", description="who asked, for the record")

    @property
    def ref(self) -> str:
        return self.command_id


class StaffAction(StrEnum):
    CANCEL = "cancel"  # cancel the request: the lender holding it and the borrower are told
    CLOSE = "close"  # a loan staff know is finished (returned outside the system): closed
    NOTE = "note"  # a note on the timeline; no partner hears of it
    MESSAGE = "message"  # a message to the borrower or the lender, in its protocol


class StaffCommand(BaseModel):
    """Staff acting on a request beyond its routing (the console, the API, the command line),
    on ill.control: the engine decides, as for `RouteCommand`."""

    kind: Literal["staff"] = "staff"
    command_id: str
    transaction_id: str
    action: StaffAction
    text: str = Field("", max_length=2000, description="the reason, the note or the message")
    to: Literal["borrower", "lender"] | None = Field(None, description="a message's recipient")
    by: str = Field("staff", description="who asked, for the record")

    @property
    def ref(self) -> str:
        return self.command_id


class PartnerBack(BaseModel):
    """A partner answered again after failed deliveries (ill.control, every partition): each
    worker asks its transactions with deliveries parked for that partner to send them."""

    kind: Literal["partner_back"] = "partner_back"
    partner: str
    at: datetime

    @property
    def ref(self) -> str:
        return f"back:{self.partner}:{self.at.isoformat()}"


ControlRecord = Located | Tick | RouteCommand | Redeliver | StaffCommand | PartnerBack
Control = Annotated[ControlRecord, Field(discriminator="kind")]
CONTROL: TypeAdapter[ControlRecord] = TypeAdapter(Control)


class StateChange(BaseModel):
    """One line of ill.events."""

    event_id: str
    transaction_id: str
    kind: str = Field(description="transition, refused, delivery")
    event: str
    sender: str | None = None
    from_state: str
    to_state: str
    detail: str = ""
    at: datetime = Field(default_factory=now)
    # Whose request it is, so a follower of this stream (the API's webhooks) can tell a
    # library of its own requests' changes without reading the transaction table.
    borrower: str | None = None
    request_id: str | None = Field(None, description="the borrower's own id for the request")
