"""What the API answers, as pydantic models (the OpenAPI document is generated from them),
and how a transaction becomes one: from this worker's table row (fresh: the state the
engine wrote last) or, when this worker does not hold the request, from the operators'
index (which follows the topics a few seconds behind).

What a client sees of a request is what its library may see: state, the lender asked now,
dates, and the history as steps and states; never raw messages, notes between staff or
other libraries' identities beyond the current lender."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


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
