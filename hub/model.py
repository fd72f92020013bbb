"""The canonical message model: ISO 18626 vocabulary, used by every connector and the hub.

Connectors turn partner messages into `Message` (evidence of what a partner said); only the
transaction agent turns evidence into state. Nothing a partner sent is dropped: fields with no
ISO 18626 counterpart go into `extensions`, the raw bytes into `ill.audit` (see `audit_ref`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NotApplicable(ValueError):
    """A protocol has no message for this step (NCIP has no WillSupply, for instance)."""


class Role(StrEnum):
    BORROWER = "borrower"
    LENDER = "lender"


class Event(StrEnum):
    """What a partner said, in the hub's lifecycle vocabulary (see ISO18626_FORM)."""

    REQUEST = "Request"
    WILL_SUPPLY = "WillSupply"
    LOANED = "Loaned"
    COPY_COMPLETED = "CopyCompleted"
    UNFILLED = "Unfilled"
    EXPIRED = "Expired"
    RECEIVED = "Received"
    SHIPPED_RETURN = "ShippedReturn"
    LOAN_COMPLETED = "LoanCompleted"
    CANCEL = "Cancel"
    CANCEL_REPLY = "CancelReply"
    RENEW = "Renew"
    RENEW_ANSWER = "RenewAnswer"
    RECALLED = "Recalled"
    OVERDUE = "Overdue"
    # Information that changes no state (ISO 18626 Notification, RequestReceived).
    LENDER_NOTE = "LenderNotification"
    BORROWER_NOTE = "BorrowerNotification"


# Who may say each event. The transaction agent refuses an event from the wrong side.
SENDER: dict[Event, Role] = {
    Event.REQUEST: Role.BORROWER,
    Event.RECEIVED: Role.BORROWER,
    Event.SHIPPED_RETURN: Role.BORROWER,
    Event.CANCEL: Role.BORROWER,
    Event.RENEW: Role.BORROWER,
    Event.BORROWER_NOTE: Role.BORROWER,
    **{
        e: Role.LENDER
        for e in (
            Event.WILL_SUPPLY,
            Event.LOANED,
            Event.COPY_COMPLETED,
            Event.UNFILLED,
            Event.EXPIRED,
            Event.LOAN_COMPLETED,
            Event.CANCEL_REPLY,
            Event.RENEW_ANSWER,
            Event.RECALLED,
            Event.OVERDUE,
            Event.LENDER_NOTE,
        )
    },
}

# The ISO 18626 form of each event: (message, status or action, reasonForMessage).
ISO18626_FORM: dict[Event, tuple[str, str | None, str | None]] = {
    Event.REQUEST: ("request", None, None),
    Event.WILL_SUPPLY: ("supplyingAgencyMessage", "WillSupply", "RequestResponse"),
    Event.LOANED: ("supplyingAgencyMessage", "Loaned", "StatusChange"),
    Event.COPY_COMPLETED: ("supplyingAgencyMessage", "CopyCompleted", "StatusChange"),
    Event.UNFILLED: ("supplyingAgencyMessage", "Unfilled", "RequestResponse"),
    Event.EXPIRED: ("supplyingAgencyMessage", "Unfilled", "StatusChange"),
    Event.LOAN_COMPLETED: ("supplyingAgencyMessage", "LoanCompleted", "StatusChange"),
    Event.CANCEL_REPLY: ("supplyingAgencyMessage", "Cancelled", "CancelResponse"),
    Event.RENEW_ANSWER: ("supplyingAgencyMessage", "Loaned", "RenewResponse"),
    Event.RECALLED: ("supplyingAgencyMessage", "Recalled", "StatusChange"),
    Event.OVERDUE: ("supplyingAgencyMessage", "Overdue", "StatusChange"),
    Event.RECEIVED: ("requestingAgencyMessage", "Received", None),
    Event.SHIPPED_RETURN: ("requestingAgencyMessage", "ShippedReturn", None),
    Event.CANCEL: ("requestingAgencyMessage", "Cancel", None),
    Event.RENEW: ("requestingAgencyMessage", "Renew", None),
    Event.LENDER_NOTE: ("supplyingAgencyMessage", None, "Notification"),
    Event.BORROWER_NOTE: ("requestingAgencyMessage", "Notification", None),
}


class ServiceType(StrEnum):
    LOAN = "Loan"
    COPY = "Copy"


class RequestFormat(StrEnum):
    """NCIP RequestType as Alma uses it; ISO 18626 deliveryMethod/format in spirit."""

    PHYSICAL = "Physical"
    DIGITAL = "Digital"
    NON_RETURNABLE = "NonReturnable"


# ISO 10161 / Alma NCIP P2P unfilled reasons (Ext/ItemNote numbers). 26 is unassigned.
UNFILLED_REASONS: dict[int, str] = {
    1: "InUseOnLoan",
    2: "InProcess",
    3: "Lost",
    4: "NonCirculating",
    5: "NotOwned",
    6: "OnOrder",
    7: "VolumeIssueNotYetAvailable",
    8: "AtBindery",
    9: "Lacking",
    10: "NotOnShelf",
    11: "OnReserve",
    12: "PoorCondition",
    13: "CostExceedsLimit",
    14: "Charges",
    15: "PrepaymentRequired",
    16: "LacksCopyrightCompliance",
    17: "NotFoundAsCited",
    18: "LocationsNotFound",
    19: "OnHold",
    20: "PolicyProblem",
    21: "MandatoryMessagingNotSupported",
    22: "ExpiryNotSupported",
    23: "RequestedDeliveryServicesNotSupported",
    24: "PreferredDeliveryTimeNotPossible",
    25: "CriticalExtensionNotSupported",
    27: "Other",
    28: "ResponderSpecific",
}


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: int | None = None
    name: str
    note: str | None = None

    @classmethod
    def from_code(cls, code: int, note: str | None = None) -> Reason:
        return cls(code=code, name=UNFILLED_REASONS.get(code, "ResponderSpecific"), note=note)


class Money(BaseModel):
    amount: str
    currency: str | None = None


class Bibliographic(BaseModel):
    title: str | None = None
    author: str | None = None
    title_of_component: str | None = None
    author_of_component: str | None = None
    edition: str | None = None
    pagination: str | None = None
    place_of_publication: str | None = None
    publication_date: str | None = None
    publication_date_of_component: str | None = None
    publisher: str | None = None
    series_title_number: str | None = None
    bibliographic_level: str | None = None
    medium_type: str | None = None
    call_number: str | None = None
    isbn: str | None = None
    issn: str | None = None
    oclc_number: str | None = None
    local_id: str | None = None
    ean: str | None = None


class Message(BaseModel):
    """One step of a loan as a partner said it, in canonical form."""

    event: Event
    transaction_id: str = ""
    sender: str = Field("", description="directory symbol of the partner who sent it")
    request_id: str = Field("", description="request id as the sender knows it")
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source_protocol: str = ""
    from_agency: str | None = None
    to_agency: str | None = None
    on_behalf_of_agency: str | None = None
    patron_id: str | None = None
    service_type: ServiceType | None = None
    request_format: RequestFormat | None = None
    bibliographic: Bibliographic | None = None
    item_id: str | None = None
    due_date: datetime | None = None
    desired_due_date: datetime | None = None
    date_shipped: datetime | None = None
    date_received: datetime | None = None
    need_before: datetime | None = None
    pickup_expiry: datetime | None = None
    pickup_location: str | None = None
    delivery_address: str | None = None
    delivery_email: str | None = None
    answer: bool | None = Field(None, description="yes/no of a cancel reply or renew answer")
    reason: Reason | None = None
    note: str | None = None
    cost: Money | None = None
    max_cost: Money | None = None
    relay: bool = Field(True, description="False: recorded and answered, not passed on")
    audit_ref: str | None = Field(None, description="id of the raw message on ill.audit")
    extensions: dict[str, Any] = Field(default_factory=dict)

    @property
    def message_id(self) -> str:
        """Content digest: a partner re-sending the same message yields the same id.

        Time of receipt and audit reference are left out, because a resend differs in them.
        """
        payload = self.model_dump(mode="json", exclude={"timestamp", "audit_ref"})
        digest = hashlib.blake2b(
            json.dumps(payload, sort_keys=True).encode(), digest_size=12
        ).hexdigest()
        return f"m{digest}"


TXN_PATTERN = re.compile(r"^(t[0-9a-f]{16})\.(\d+)$")


def transaction_id(borrower: str, borrower_request_id: str) -> str:
    """The transaction id of a borrower's request: stable, so a re-sent request finds it."""
    raw = f"{borrower}\x00{borrower_request_id}".encode()
    return "t" + hashlib.blake2b(raw, digest_size=8).hexdigest()


def lender_request_id(txn_id: str, attempt: int) -> str:
    """The request id a lender is given; it carries the transaction and the attempt."""
    return f"{txn_id}.{attempt}"


def parse_lender_request_id(value: str) -> tuple[str, int] | None:
    match = TXN_PATTERN.match(value.strip())
    return (match.group(1), int(match.group(2))) if match else None


def now() -> datetime:
    return datetime.now(UTC)
