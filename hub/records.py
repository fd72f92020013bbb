"""Records the hub writes to Kafka besides canonical messages (one pydantic model per topic)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hub.model import Event, Message, now


class Delivery(BaseModel):
    """A command to an outbound connector: deliver this message to this partner."""

    command_id: str
    transaction_id: str
    recipient: str
    protocol: str
    attempt: int = Field(0, description="lender attempt the message belongs to (0: borrower)")
    message: Message


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"  # the partner's protocol has no form for this step


class DeliveryResult(BaseModel):
    command_id: str
    transaction_id: str
    recipient: str
    event: Event
    attempt: int = 0
    outcome: DeliveryOutcome
    detail: str = ""
    tries: int = 1
    at: datetime = Field(default_factory=now)

    @property
    def result_id(self) -> str:
        return f"{self.command_id}:{self.outcome.value}"


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


class AuditRecord(BaseModel):
    direction: str = Field(description="in or out")
    protocol: str
    partner: str | None
    content_type: str | None = None
    body: str = Field(description="the raw bytes, latin-1 decoded so any byte survives JSON")
    transaction_id: str | None = None
    at: datetime = Field(default_factory=now)


class RoutingDecision(BaseModel):
    transaction_id: str
    attempt: int
    candidates: list[str]
    chosen: str | None
    skipped: list[dict[str, str]] = Field(default_factory=list)
    reason: str
    at: datetime = Field(default_factory=now)


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
