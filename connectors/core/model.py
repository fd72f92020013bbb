"""The canonical message model: ISO 18626 vocabulary, used by every connector and the hub.

Connectors turn partner messages into `Message` (evidence of what a partner said); only the
transaction agent turns evidence into state. Nothing a partner sent is dropped: fields with no
ISO 18626 counterpart go into `extensions`, the raw bytes into `ill.audit` (see `audit_ref`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
)

# Re-exported: transaction ids are keyed with it, and callers import it from here.
from connectors.core.secret import id_key as id_key


class NotApplicable(ValueError):
    """A protocol has no message for this step (NCIP has no WillSupply, for instance)."""


class RenderError(ValueError):
    """A writer cannot render this (valid) canonical message in its protocol: a value the
    protocol cannot carry (an ISO 10161 amount longer than 10 characters, a character outside
    GeneralString), or a field the protocol requires and the message lacks (an NCIP
    RequestItem without a title). The outbound side records it as a failed delivery.

    Writers raise only this or `NotApplicable`, whatever valid `Message` they are given."""


# Bounds of the canonical model, checked whenever a message is built from a partner's bytes;
# each codec answers a violation with its own protocol error naming the element. Why: one
# message is stored in its transaction row and copied into several outputs, and a Kafka record
# holds at most 1 MB; with these bounds a whole message stays in the tens of kilobytes,
# whatever a partner sends. Each bound is generous for real traffic.
LIMITS: dict[str, int] = {
    # request, item, patron and agency ids, symbols, standard numbers, codes: real ones are
    # under 50 characters (ISO 18626 ids are typically UUIDs, NCIP's Alma ids 20 digits).
    "id": 256,
    # titles: the longest real serial and conference titles are a few hundred characters.
    "title": 2_000,
    # author, publisher, edition, pagination, places, call numbers, dates written as text.
    "text": 1_000,
    # free text a partner writes to the other (notes, reason notes).
    "note": 4_000,
    # a postal address or e-mail address (RFC 5321: 254 for the address).
    "address": 1_000,
    # one value kept in `extensions` (an unmapped element, a hex-encoded ISO 10161 extension).
    "extension_text": 8_192,
    # entries of one list or map in `extensions`: repeated elements a partner sends.
    "extension_items": 500,
    # nesting in `extensions` (a decoded ISO 10161 APDU is about 10 deep).
    "extension_depth": 32,
    # each top-level entry of `extensions` as JSON (one per protocol, plus the origin).
    "extension_bytes": 65_536,
}
# Amounts (costs, maximum costs): decimals, finite, not negative, below a billion in any
# currency, at most 4 decimal places (ISO 4217 minor units are at most 4).
MAX_AMOUNT = Decimal("999999999.9999")
AMOUNT_PLACES = 4
# Dates: years every protocol can write as four digits (ISO 10161 YYYYMMDD, xs:dateTime).
YEARS = (1000, 9999)

# What XML 1.0 can carry: every canonical string is rendered into NCIP or ISO 18626 XML.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: str) -> str:
    found = _NOT_XML.search(value)
    if found:
        raise ValueError(
            f"character U+{ord(found.group()):04X} at {found.start()} cannot be carried in XML"
        )
    return value


Id = Annotated[str, Field(max_length=LIMITS["id"]), AfterValidator(_xml_text)]
Title = Annotated[str, Field(max_length=LIMITS["title"]), AfterValidator(_xml_text)]
Text = Annotated[str, Field(max_length=LIMITS["text"]), AfterValidator(_xml_text)]
Note = Annotated[str, Field(max_length=LIMITS["note"]), AfterValidator(_xml_text)]
Address = Annotated[str, Field(max_length=LIMITS["address"]), AfterValidator(_xml_text)]


def _moment(value: datetime) -> datetime:
    try:
        year = value.astimezone(UTC).year  # as every writer converts it (naive: local time)
    except (OverflowError, OSError):
        year = 0
    if not YEARS[0] <= year <= YEARS[1]:
        raise ValueError(f"year outside {YEARS[0]}..{YEARS[1]}")
    return value


Moment = Annotated[datetime, AfterValidator(_moment)]


def _plain(value: Decimal) -> Decimal:
    """1E+3 as 1000: every protocol writes plain decimals (xs:decimal has no exponent)."""
    return Decimal(f"{value:f}")


Amount = Annotated[
    Decimal,
    Field(ge=0, le=MAX_AMOUNT, decimal_places=AMOUNT_PLACES, allow_inf_nan=False),
    AfterValidator(_plain),
]
_AMOUNT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def parse_amount(text: str) -> Decimal:
    """A decimal number as partners write it (no exponent, no NaN), short enough that
    arithmetic on it cannot overflow; ValueError otherwise. The range is Money's to check."""
    raw = text.strip()
    if len(raw) > 40 or not _AMOUNT_TEXT.fullmatch(raw):
        raise ValueError(f"{raw[:40]!r} is not a decimal number")
    return Decimal(raw)


def shown(value: str, limit: int = 80) -> str:
    """A partner's value as quoted back in an error: its start only, so that an error about
    an oversized value is not itself oversized."""
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


@dataclass(frozen=True)
class Violation:
    """The first bound a candidate message breaks: the canonical field (dotted) and why."""

    field: str
    reason: str


def violation(error: ValidationError) -> Violation:
    first = error.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    reason = first["msg"].removeprefix("Value error, ")
    return Violation(field, reason)


def _extensions(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise ValueError naming the path of the first value past the extension bounds."""
    if depth > LIMITS["extension_depth"]:
        raise ValueError(f"{path}: nested deeper than {LIMITS['extension_depth']}")
    if isinstance(value, str):
        if len(value) > LIMITS["extension_text"]:
            raise ValueError(f"{path}: longer than {LIMITS['extension_text']} characters")
        _xml_text(value)
        return
    items: Any = value.items() if isinstance(value, Mapping) else None
    if items is None and isinstance(value, (list, tuple)):
        items = enumerate(value)
    if items is None:
        return
    if len(value) > LIMITS["extension_items"]:
        raise ValueError(f"{path}: more than {LIMITS['extension_items']} entries")
    for key, item in items:
        _extensions(item, f"{path}/{key}" if path else str(key), depth + 1)


class Role(StrEnum):
    BORROWER = "borrower"
    LENDER = "lender"


class Event(StrEnum):
    """What a partner said, in the hub's lifecycle vocabulary (ISO 18626's, where it has a word)."""

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
    # Evidence the engine's table decides about (connectors report, never interpret).
    RETRY_POSSIBLE = "RetryPossible"  # the lender could supply on other terms, later
    CONDITIONAL = "Conditional"  # the lender will supply if the borrower accepts conditions
    LOST = "Lost"  # the item was lost (either side may say so)
    DAMAGED = "Damaged"  # the item was damaged (either side may say so)
    STATUS_QUERY = "StatusQuery"  # a question for the hub itself: where is this request?
    # The borrower asks again with changed data (ISO 18626 requestType Retry, after a
    # lender's RetryPossible): the same transaction, the request as now given. Never sent
    # on as itself: the lenders asked get a Request with the new data.
    RETRY = "Retry"


# Who may say each event. The transaction agent refuses an event from the wrong side.
# Events either side may say are in EITHER_SIDE instead.
EITHER_SIDE: frozenset[Event] = frozenset({Event.LOST, Event.DAMAGED, Event.STATUS_QUERY})
SENDER: dict[Event, Role] = {
    Event.REQUEST: Role.BORROWER,
    Event.RETRY: Role.BORROWER,
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
            Event.RETRY_POSSIBLE,
            Event.CONDITIONAL,
        )
    },
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
    code: int | None = Field(None, ge=0, le=999)
    name: Id
    note: Note | None = None

    @classmethod
    def from_code(cls, code: int, note: str | None = None) -> Reason:
        return cls(code=code, name=UNFILLED_REASONS.get(code, "ResponderSpecific"), note=note)


class Money(BaseModel):
    amount: Amount
    # ISO 4217 in principle; partners' placeholders ("currencyCode1") are kept, not refused.
    currency: Id | None = None


class Bibliographic(BaseModel):
    """What is asked for: the item (book, journal, recording), and the part of it wanted.

    The item's own description (`title`, `edition`, `pagination`: its extent) is kept apart
    from the part requested (`volume`, `issue`, `part`, `chapter`, `pages_requested`): a lender
    pulls the volume and copies the pages, and "xix, 1292 p." is not a page range.
    Every field is optional and free text within its bound; standard numbers are kept as the
    partner wrote them (hyphens and all), since lenders search them as given.
    """

    title: Title | None = Field(None, description="title of the item (book, journal)")
    subtitle: Title | None = Field(None, description="its subtitle (other title information)")
    author: Text | None = Field(None, description="author or editor of the item")
    title_of_component: Title | None = Field(
        None, description="title of the article or chapter wanted"
    )
    author_of_component: Text | None = Field(None, description="author of the article or chapter")
    edition: Text | None = None
    pagination: Text | None = Field(
        None, description='the item\'s extent as catalogued ("xix, 1292 p."), not pages wanted'
    )
    place_of_publication: Text | None = None
    publication_date: Text | None = Field(None, description="year or date of the item")
    publication_date_of_component: Text | None = Field(
        None, description="date of the article or chapter (a journal issue's date)"
    )
    publisher: Text | None = None
    series_title_number: Text | None = Field(None, description="series title and number")
    volume: Text | None = Field(None, description="volume wanted")
    issue: Text | None = Field(None, description="issue (number) wanted")
    part: Text | None = Field(None, description="part wanted")
    chapter: Text | None = Field(None, description="chapter wanted")
    pages_requested: Text | None = Field(None, description='pages wanted ("301-329")')
    doi: Id | None = None
    pmid: Id | None = Field(None, description="PubMed id")
    bibliographic_level: Id | None = Field(None, description="Book, Journal or Other")
    medium_type: Id | None = Field(None, description="medium of the item (printed, microform...)")
    call_number: Text | None = Field(None, description="the lender's shelf mark, if known")
    isbn: Id | None = None
    issn: Id | None = Field(None, description="ISSN of the print (or only) edition")
    eissn: Id | None = Field(None, description="ISSN of the electronic edition")
    oclc_number: Id | None = None
    lccn: Id | None = Field(None, description="Library of Congress control number")
    local_id: Id | None = Field(None, description="the supplier's own record id for the item")
    ean: Id | None = None

    @property
    def identified(self) -> bool:
        """Whether the item can be found without a title (a record id or standard number)."""
        return any(
            (
                self.isbn,
                self.issn,
                self.eissn,
                self.oclc_number,
                self.lccn,
                self.local_id,
                self.ean,
                self.doi,
                self.pmid,
            )
        )


# Fields added to the model after messages were first stored. A stored row lacks them (they
# are optional, so it still reads), and `Message.message_id` leaves them out while they are
# unset, so a message a partner re-sends across an upgrade keeps its id (duplicates are found
# by it).
ADDED_FIELDS: dict[str, frozenset[str]] = {
    "message": frozenset(
        {
            "patron_name",
            "patron_surname",
            "patron_given_name",
            "patron_email",
            "loan_condition",
            "previous_request_id",
        }
    ),
    "bibliographic": frozenset(
        {"subtitle", "part", "chapter", "pages_requested", "pmid", "eissn", "lccn"}
    ),
}


def _without_unset_additions(payload: dict[str, Any]) -> dict[str, Any]:
    for name in ADDED_FIELDS["message"]:
        if payload.get(name) is None:
            payload.pop(name, None)
    bib = payload.get("bibliographic")
    if isinstance(bib, dict):
        for name in ADDED_FIELDS["bibliographic"]:
            if bib.get(name) is None:
                bib.pop(name, None)
    return payload


class Correlation(BaseModel):
    """What one party needs to recognise its own messages about a request, as it gave them:
    its protocol, its own request id, and its protocol's other keys (ISO 10161 transaction-id
    qualifiers, an e-mail's reference, an SLNP order id). Each connector declares a subclass
    with typed fields; the engine stores it as it came and hands it back with every delivery
    to that party, and the connector reads it back with its own model (`Connector.correlation`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    protocol: Id
    request_id: Id = ""


class Message(BaseModel):
    """One step of a loan as a partner said it, in canonical form."""

    event: Event
    transaction_id: Id = ""
    sender: Id = Field("", description="directory symbol of the partner who sent it")
    request_id: Id = Field("", description="request id as the sender knows it")
    timestamp: Moment = Field(default_factory=lambda: datetime.now(UTC))
    source_protocol: Id = ""
    from_agency: Id | None = None
    to_agency: Id | None = None
    on_behalf_of_agency: Id | None = None
    patron_id: Id | None = None
    patron_name: Text | None = Field(
        None, description="the patron's name as one text, as ISO 10161 client-name holds it"
    )
    patron_surname: Text | None = Field(None, description="the patron's surname, when given apart")
    patron_given_name: Text | None = Field(None, description="the patron's given name(s)")
    patron_email: Address | None = Field(None, description="the patron's own e-mail address")
    service_type: ServiceType | None = None
    request_format: RequestFormat | None = None
    bibliographic: Bibliographic | None = None
    item_id: Id | None = None
    due_date: Moment | None = None
    desired_due_date: Moment | None = None
    date_shipped: Moment | None = None
    date_received: Moment | None = None
    need_before: Moment | None = None
    pickup_expiry: Moment | None = None
    pickup_location: Text | None = Field(None, description="where the patron collects the item")
    delivery_address: Address | None = Field(
        None, description="physical delivery address, lines joined by newlines or commas"
    )
    delivery_email: Address | None = Field(
        None, description="electronic delivery address (e-mail), beside any physical one"
    )
    loan_condition: Id | None = Field(
        None, description="a lender's condition on the loan (ISO 18626 loanCondition code)"
    )
    previous_request_id: Id | None = Field(
        None, description="the borrower's earlier request id this request retries (ISO 18626)"
    )
    answer: bool | None = Field(None, description="yes/no of a cancel reply or renew answer")
    reason: Reason | None = None
    note: Note | None = None
    cost: Money | None = Field(None, description="what the lender charges, in its currency")
    max_cost: Money | None = Field(
        None, description="the most the borrower will pay; a currency only when one was given"
    )
    correlation: SerializeAsAny[Correlation] | None = Field(
        None, description="what the sender needs to recognise its own messages (typed per protocol)"
    )
    audit_ref: Id | None = Field(None, description="id of the raw message on ill.audit")
    extensions: dict[str, Any] = Field(default_factory=dict)

    @field_validator("extensions")
    @classmethod
    def _bounded_extensions(cls, value: dict[str, Any]) -> dict[str, Any]:
        _extensions(value)
        for key, entry in value.items():
            size = len(json.dumps(entry, default=str))
            if size > LIMITS["extension_bytes"]:
                raise ValueError(f"{key}: {size} bytes of JSON, over {LIMITS['extension_bytes']}")
        return value

    @property
    def patron_full_name(self) -> str | None:
        """The patron's name as a person writes it: `patron_name`, else given name and surname."""
        if self.patron_name:
            return self.patron_name
        parts = [p for p in (self.patron_given_name, self.patron_surname) if p]
        return " ".join(parts) or None

    @property
    def message_id(self) -> str:
        """Content digest: a partner re-sending the same message yields the same id.

        Time of receipt and audit reference are left out, because a resend differs in them.
        """
        payload = _without_unset_additions(
            self.model_dump(mode="json", exclude={"timestamp", "audit_ref"})
        )
        digest = hashlib.blake2b(
            json.dumps(payload, sort_keys=True).encode(), digest_size=12
        ).hexdigest()
        return f"m{digest}"


TXN_PATTERN = re.compile(r"^(t[0-9a-f]{16})\.(\d+)$")


def transaction_id(borrower: str, borrower_request_id: str, key: bytes | None = None) -> str:
    """The transaction id of a borrower's request: stable within a deployment, so a re-sent
    request finds it, and keyed with its secret (`id_key`), so no one outside can compute the
    id of someone else's request."""
    raw = f"{borrower}\x00{borrower_request_id}".encode()
    digest = hmac.new(id_key() if key is None else key, raw, hashlib.sha256).hexdigest()
    return "t" + digest[:16]


def lender_request_id(txn_id: str, attempt: int) -> str:
    """The request id a lender is given; it carries the transaction and the attempt."""
    return f"{txn_id}.{attempt}"


def parse_lender_request_id(value: str) -> tuple[str, int] | None:
    match = TXN_PATTERN.match(value.strip())
    return (match.group(1), int(match.group(2))) if match else None


def now() -> datetime:
    return datetime.now(UTC)
