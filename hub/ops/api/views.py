"""What the API answers, as pydantic models (the OpenAPI document is generated from them),
and how a transaction becomes one: from this worker's table row (fresh: the state the
engine wrote last) or, when this worker does not hold the request, from the operators'
index (which follows the topics a few seconds behind).

What a client sees of a request is what its library may see: state, the lender asked now,
dates, and the history as steps and states; never raw messages, notes between staff or
other libraries' identities beyond the current lender."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class Step(BaseModel):
    at: datetime
    event: str = Field(description="what happened (the canonical event or the hub's own input)")
    state: str = Field(description="the request's state after it")


class RequestView(BaseModel):
    request_id: str = Field(description="the borrower's own id for the request")
    transaction_id: str = Field(description="the hub's id for the request")
    borrower: str
    state: str
    lender: str | None = Field(None, description="the lender asked now, if any")
    title: str | None = None
    due_date: datetime | None = None
    need_before: datetime | None = None
    history: list[Step] = Field(default_factory=list)
    source: Literal["table", "index"] = Field(
        description="table: as the engine wrote it last; index: a few seconds behind"
    )


class RequestSummary(BaseModel):
    request_id: str | None
    transaction_id: str
    borrower: str | None
    state: str | None
    lender: str | None = None
    title: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    attention: str | None = Field(None, description="staff tokens: why it needs staff")


class RequestPage(BaseModel):
    items: list[RequestSummary]
    offset: int
    limit: int
    next_offset: int | None = Field(None, description="the offset of the next page, if any")


class Accepted(BaseModel):
    request_id: str
    transaction_id: str
    state: str | None = Field(
        description="the state after the step, when the engine answered in time"
    )
    accepted: str = Field(description="the canonical event the call became")
    status_url: str | None = Field(
        None,
        description="placing: the patron's status page, relative to the hub's address; "
        "unguessable: give it to the patron only",
    )


class PatronStatus(BaseModel):
    """What the patron's status page says (JSON when asked with Accept: application/json)."""

    request_id: str
    title: str | None = None
    state: str | None = Field(description="None: the hub cannot tell now (try again)")
    state_text: str = Field(description="the state in the patron's words")
    due_date: datetime | None = None
    need_before: datetime | None = None


class Outcome(BaseModel):
    ok: bool
    detail: str


class Redeliver(BaseModel):
    partner: str | None = Field(None, description="only the steps waiting for this partner")


class Route(BaseModel):
    action: Literal["lender", "skip", "next", "restart"]
    lender: str | None = Field(None, description="for lender and skip: the lender's symbol")


class StaffAct(BaseModel):
    action: Literal["cancel", "close", "note", "message"] = Field(
        description="cancel the request, close a loan known to be finished, note something "
        "on its timeline, or send the borrower or the lender a message"
    )
    text: str = Field(
        "", max_length=2000, description="the reason (cancel, close), the note or the message"
    )
    to: Literal["borrower", "lender"] | None = Field(None, description="a message's recipient")


class Replay(BaseModel):
    ref: str = Field(min_length=1, max_length=256, description="the dead letter's reference")
    trust_sender: bool = False


StateName = Literal[
    "New", "Locating", "Requested", "WillSupply", "Loaned", "Received", "RenewPending",
    "CancelPending", "Recalled", "Overdue", "Returned", "LoanCompleted", "CopyCompleted",
    "Cancelled", "Unfilled", "Expired",
]  # fmt: skip


class WebhookCreate(BaseModel):
    """A URL to be told of state changes of the token's library's requests."""

    model_config = ConfigDict(extra="forbid", title="WebhookCreate")

    url: HttpUrl = Field(description="where each change is POSTed (https in production)")
    states: list[StateName] = Field(
        default_factory=list,
        max_length=16,
        description="only changes into these states; empty: every change",
    )


class Webhook(BaseModel):
    id: str
    partner: str = Field(description="the library whose requests it tells of")
    url: str
    states: list[str]
    created: datetime


class WebhookCreated(Webhook):
    secret: str = Field(
        description="signs every delivery (Rshub-Signature); shown only now, keep it secret"
    )


class WebhookList(BaseModel):
    items: list[Webhook]


class WebhookDelivery(BaseModel):
    id: str = Field(description="the Rshub-Delivery header: the same on every try")
    request_id: str | None
    transaction_id: str
    state: str = Field(description="the state the request changed into")
    status: Literal["waiting", "parked", "delivered"]
    attempts: int
    last_error: str | None = None
    last_tried: datetime | None = None
    delivered: datetime | None = None
    next_try: datetime | None = Field(None, description="waiting or parked: when it is tried")


class WebhookDeliveries(BaseModel):
    items: list[WebhookDelivery]
    offset: int
    limit: int
    next_offset: int | None = None


class WebhookRedeliver(BaseModel):
    model_config = ConfigDict(extra="forbid", title="WebhookRedeliver")

    delivery_id: str | None = Field(
        None,
        max_length=200,
        description="this delivery (even one delivered); unset: every one not yet delivered",
    )


class Problem(BaseModel):
    """RFC 9457."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = Field(
        None, description="each field at fault: {field, message}"
    )


NO_LENDER = frozenset({"New", "Locating", "Unfilled", "Cancelled", "Expired"})


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def from_row(row: dict[str, Any]) -> RequestView:
    """From the transaction table's row (hub.domain.transaction.Transaction, as JSON)."""
    attempts = row.get("attempts") or []
    # The last lender asked, unless none holds the request now (not yet asked, or the
    # request ended without one).
    current = attempts[-1] if attempts and str(row["state"]) not in NO_LENDER else None
    request = row.get("request") or {}
    history = [
        Step(at=_when(step["at"]) or datetime.min, event=str(step["event"]), state=step["to_state"])
        for step in row.get("history") or []
    ]
    return RequestView(
        request_id=row["borrower_request_id"],
        transaction_id=row["id"],
        borrower=row["borrower"],
        state=str(row["state"]),
        lender=current["lender"] if current else None,
        title=(request.get("bibliographic") or {}).get("title"),
        due_date=_when(row.get("due_date")),
        need_before=_when(row.get("need_before")),
        history=history,
        source="table",
    )


def from_index(row: dict[str, Any]) -> RequestView:
    return RequestView(
        request_id=row.get("borrower_request_id") or "",
        transaction_id=row["id"],
        borrower=row.get("borrower") or "",
        state=row.get("state") or "New",
        lender=row.get("lender"),
        title=row.get("title"),
        source="index",
    )


def summary(row: dict[str, Any], staff: bool) -> RequestSummary:
    return RequestSummary(
        request_id=row.get("borrower_request_id"),
        transaction_id=row["id"],
        borrower=row.get("borrower"),
        state=row.get("state"),
        lender=row.get("lender"),
        title=row.get("title"),
        created=_when(row.get("created")),
        updated=_when(row.get("updated")),
        attention=row.get("attention") if staff else None,
    )


def webhook(sub: Any) -> Webhook:
    """From hub.runtime.webhook_store.Subscription."""
    return Webhook(
        id=sub.id, partner=sub.partner, url=sub.url, states=sorted(sub.states), created=sub.created
    )


def webhook_delivery(found: Any) -> WebhookDelivery:
    """From hub.runtime.webhook_store.Delivery."""
    pending = found.status != "delivered"
    return WebhookDelivery(
        id=found.id,
        request_id=found.request_id,
        transaction_id=found.transaction_id,
        state=found.state,
        status=found.status,
        attempts=found.attempts,
        last_error=found.last_error,
        last_tried=_when(found.last_at),
        delivered=_when(found.delivered_at),
        next_try=datetime.fromtimestamp(found.due, UTC) if pending else None,
    )
