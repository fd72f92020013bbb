"""One application of an input to a transaction: the working copy, the clock and the outputs.

`Run` is what effects and the delivery logic work on: the transaction being changed, the
directory and load view they consult, the time `at` (given by the caller: nothing here reads
a clock), the records to write and the follow-up inputs still to go through the table.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from pydantic import BaseModel

from connectors.core.directory import Directory
from connectors.core.records import RoutingDecision, StateChange
from connectors.core.topics import OUTBOUND_PREFIX, Topic
from hub.domain.addressing import item_key, retried_key
from hub.domain.deadlines import settle
from hub.domain.inputs import Input
from hub.domain.lifecycle import TERMINAL, State
from hub.domain.load import LoadView, NoLoad, load_key
from hub.domain.transaction import Output, Step, Transaction, as_output


class Run:
    def __init__(
        self,
        txn: Transaction,
        directory: Directory,
        ref: str,
        at: datetime,
        load: LoadView | None = None,
    ) -> None:
        self.txn, self.directory, self.ref, self.at = txn, directory, ref, at
        self.load = load or NoLoad()
        self.outputs: list[Output] = []
        self.follow_ups: deque[Input] = deque()
        self.open_before = txn.open_with
        self.state_before = txn.state
        self.created: set[str] = set()  # command ids of the deliveries this run made

    def next_id(self) -> str:
        """A deterministic id for the next record: a replayed input yields the same ones."""
        return f"{self.ref}:{len(self.outputs)}"

    def emit(self, follow_up: Input) -> None:
        """A follow-up input: it goes through the table after the current row."""
        self.follow_ups.append(follow_up)

    def write(self, topic: str, record: BaseModel | None, key: str | None = None) -> None:
        self.outputs.append(as_output(topic, key or self.txn.id, record))

    def route(self, decision: RoutingDecision) -> None:
        self.write(Topic.ROUTING, decision)

    def record(
        self, kind: str, event: str, sender: str | None, before: State, detail: str = ""
    ) -> None:
        change = StateChange(
            event_id=self.next_id(),
            transaction_id=self.txn.id,
            kind=kind,
            event=event,
            sender=sender,
            from_state=before,
            to_state=self.txn.state,
            detail=detail,
            at=self.at,
            borrower=self.txn.borrower,
            request_id=self.txn.borrower_request_id,
        )
        self.write(Topic.EVENTS, change)
        if kind == "transition":
            self.txn.history.append(
                Step(
                    at=self.at,
                    event=event,
                    sender=sender,
                    from_state=before,
                    to_state=self.txn.state,
                    ref=self.ref,
                )
            )

    def index_item(self, item_id: str, lender: str, alive: bool) -> None:
        for partner in (lender, self.txn.borrower):
            value = {"transaction_id": self.txn.id} if alive else None
            self.outputs.append(
                Output(topic=Topic.ITEMS, key=item_key(partner, item_id), value=value)
            )

    def index_retried(self, request_id: str) -> None:
        """The borrower's new id for this request (an ISO 18626 Retry's) names it from now on:
        the gateway finds the transaction by it in ill.items, also after a restart."""
        key = retried_key(self.txn.borrower, request_id)
        self.outputs.append(
            Output(topic=Topic.ITEMS, key=key, value={"transaction_id": self.txn.id})
        )

    def finish(self) -> list[Output]:
        """The records every application ends with: the state after the step on the
        deliveries it made, the load change and the next deadline (the row itself is
        written by the transaction agent, to the table's changelog, ill.transactions)."""
        txn = self.txn
        state = txn.state.value
        for pending in txn.pending:
            if pending.command.command_id in self.created:
                pending.command = pending.command.model_copy(update={"state": state})
        for output in self.outputs:
            value = output.value
            ours = value is not None and value.get("command_id") in self.created
            if ours and value is not None and output.topic.startswith(OUTBOUND_PREFIX):
                value["state"] = state
        if txn.state in TERMINAL and self.state_before not in TERMINAL:
            attempt = txn.attempt
            if txn.item_id and attempt is not None:
                self.index_item(txn.item_id, attempt.lender, alive=False)
        after = txn.open_with
        if after != self.open_before:
            if self.open_before:
                key = load_key(self.open_before, txn.id)
                self.outputs.append(Output(topic=Topic.LOAD, key=key, value=None))
            if after:
                value = {"borrower": txn.borrower, "lender": after, "transaction_id": txn.id}
                self.outputs.append(
                    Output(topic=Topic.LOAD, key=load_key(after, txn.id), value=value)
                )
        settle(txn, self.directory)
        return self.outputs
