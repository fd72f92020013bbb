"""The transaction row and what applying an input to it yields.

A `Transaction` is one row of the transaction agent's table: the borrower's request, every
lender attempt, the deliveries not yet accepted, the parties' correlation data, the history
and what deduplication needs. `Result` is what `hub.domain.engine.apply` returns: the new row and
the records to write. Models only; no decisions here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, SerializeAsAny

from connectors.core.model import Correlation, Message, Reason
from connectors.core.records import Delivery, Verdict
from hub.domain.lifecycle import TERMINAL, State
from hub.domain.rota import Candidate

SEEN_LIMIT = 200
REPLAY_LIMIT = 8


def aware(moment: datetime) -> datetime:
    """Partners send bare dates too; deadlines compare in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def party(recipient: str, attempt: int) -> str:
    """The key of a party in `Transaction.parties`: the borrower by its symbol; a lender by
    its symbol and attempt, so a lender asked again (a later attempt, a staff restart) starts
    afresh and never gets the correlation it gave for an earlier attempt."""
    return recipient if attempt == 0 else f"{recipient}#{attempt}"


class Output(BaseModel):
    topic: str
    key: str
    value: dict[str, Any] | None


def as_output(topic: str, key: str, record: BaseModel | None) -> Output:
    return Output(
        topic=topic, key=key, value=None if record is None else record.model_dump(mode="json")
    )


class Attempt(BaseModel):
    number: int
    lender: str
    request_id: str
    outcome: str | None = None
    reason: Reason | None = None
    automatic: bool = Field(False, description="rejected by rshub on the lender's behalf")


class Step(BaseModel):
    at: datetime
    event: str
    sender: str | None
    from_state: State
    to_state: State
    ref: str


class Sending(StrEnum):
    IN_FLIGHT = "in_flight"  # handed to the outbound connector, no result yet
    QUEUED = "queued"  # waits behind an earlier step to the same recipient
    RETRY = "retry"  # failed; tried again at next_at
    PARKED = "parked"  # failed every scheduled try; tried again rarely, or on demand


class Pending(BaseModel):
    """A delivery its recipient has not accepted yet. Kept until it has: a crash, a restart
    or a partner outage between the decision and the delivery loses nothing."""

    command: Delivery
    status: Sending = Sending.IN_FLIGHT
    failures: int = Field(0, description="failed tries so far")
    first_failed: datetime | None = None
    next_at: datetime | None = Field(None, description="next try (retry and parked)")
    error: str = ""

    @property
    def recipient(self) -> str:
        return self.command.recipient


class Transaction(BaseModel):
    id: str
    state: State = State.NEW
    previous_state: State | None = None
    borrower: str
    borrower_request_id: str
    request: Message | None = None
    profile: str | None = None
    rota: list[str] = Field(default_factory=list)
    ranking: list[Candidate] = Field(default_factory=list)
    locate_id: str | None = None
    skipped_by_staff: list[str] = Field(default_factory=list)
    round_start: int = Field(0, description="attempts before a staff restart do not count")
    attempts: list[Attempt] = Field(default_factory=list)
    parties: dict[str, SerializeAsAny[Correlation]] = Field(
        default_factory=dict,
        description="what each party gave to recognise its own messages, by `party` key",
    )
    item_id: str | None = None
    due_date: datetime | None = None
    need_before: datetime | None = None
    lender_deadline: datetime | None = None
    next_deadline: datetime | None = None
    needs_attention: str | None = None
    pending: list[Pending] = Field(
        default_factory=list, description="deliveries not yet accepted, oldest first"
    )
    withdrawn: list[str] = Field(
        default_factory=list,
        description="command ids of steps taken back before they were sent (a late result "
        "for one is not tried again)",
    )
    history: list[Step] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    replay: dict[str, list[Output]] = Field(default_factory=dict)

    @property
    def attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def open_with(self) -> str | None:
        """The lender holding this request open (counted in its load), if any."""
        attempt = self.attempt
        if attempt is None or attempt.outcome is not None or self.state in TERMINAL:
            return None
        return attempt.lender if self.state is not State.LOCATING else None

    def working_copy(self) -> Transaction:
        """A copy the engine may change without changing this row. New containers, and new
        copies of the models the engine changes in place (attempts, pending deliveries);
        what it only ever replaces or appends (the request, steps, candidates, remembered
        outputs, correlations) is shared. A deep copy of the whole row cost more than the
        rest of a step, most of it in the remembered outputs."""
        return self.model_copy(
            update={
                "rota": list(self.rota),
                "ranking": list(self.ranking),
                "skipped_by_staff": list(self.skipped_by_staff),
                "attempts": [attempt.model_copy() for attempt in self.attempts],
                "parties": dict(self.parties),
                "pending": [pending.model_copy() for pending in self.pending],
                "history": list(self.history),
                "seen": list(self.seen),
                "replay": dict(self.replay),
            }
        )

    def remember(self, ref: str, outputs: list[Output]) -> None:
        self.seen = [*self.seen, ref][-SEEN_LIMIT:]
        # Outputs only: the row is not among them (the agent writes it to the table's
        # changelog), so a replay never writes an old row after a later one.
        self.replay[ref] = list(outputs)
        while len(self.replay) > REPLAY_LIMIT:
            self.replay.pop(next(iter(self.replay)))


class Result(BaseModel):
    transaction: Transaction | None
    outputs: list[Output]
    verdict: Verdict | None = None


def new_transaction(message: Message) -> Transaction:
    return Transaction(
        id=message.transaction_id, borrower=message.sender, borrower_request_id=message.request_id
    )
