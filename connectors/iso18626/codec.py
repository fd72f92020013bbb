"""ISO 18626 codec, reading side: bytes -> canonical `Message`, or the Confirmation error.

Sans-IO. Reads v1.2 and 2021 (message-specific headers, element order), prefixed or default
namespace, bare message roots, nanosecond and +0000 timestamps; empty elements count as absent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from pydantic import BaseModel, ValidationError

from connectors import xmlsafe
from connectors.core.model import (
    UNFILLED_REASONS,
    YEARS,
    Event,
    Message,
    Money,
    RequestFormat,
    ServiceType,
    parse_amount,
    shown,
    violation,
)
from connectors.iso18626 import tables as t

MESSAGES = frozenset(t.CONFIRMATION) | {c for c, _e in t.CONFIRMATION.values()}


class Iso18626Error(Exception):
    """What the Confirmation says: errorType, errorValue, and the HTTP status to answer with."""

    def __init__(
        self, error_type: str, value: str, http_status: int = 200, kind: str | None = None
    ) -> None:
        # errorValue quotes the partner's input: bounded, since it is sent back and written to
        # ill.deadletter however large the input was.
        value = shown(value, 500)
        super().__init__(f"{error_type}: {value}")
        self.error_type, self.value, self.http_status, self.kind = (
            error_type,
            value,
            http_status,
            kind,
        )


def _children(node: etree._Element) -> list[etree._Element]:
    return [c for c in node if isinstance(c.tag, str)]


def child(node: etree._Element | None, *path: str) -> etree._Element | None:
    """The first element child of that local name, in any namespace or none (lxml's "{*}"
    does the search in C: scanning the children in Python was a third of the codec's time)."""
    for name in path:
        if node is None:
            return None
        node = node.find("{*}" + name)
    return node


def text(node: etree._Element | None, *path: str) -> str | None:
    found = child(node, *path) if path else node
    value = (found.text or "").strip() if found is not None else ""
    return value or None


class Parsed:
    def __init__(self, root: etree._Element) -> None:
        if xmlsafe.local(root) == "ISO18626Message":
            self.version = next(
                (v for k, v in root.attrib.items() if etree.QName(k).localname == "version"), ""
            )
            children = _children(root)
            if not children:
                raise Iso18626Error("BadlyFormedMessage", "ISO18626Message holds no message", 400)
            self.element = children[0]
        else:
            self.version, self.element = "", root  # a bare message, as some fixtures are
        self.kind = xmlsafe.local(self.element)
        if self.kind not in MESSAGES:
            raise Iso18626Error(
                "UnrecognisedDataElement", f"{self.kind} is not an ISO 18626 message", 400
            )
        self.root = root
        # v1.2: <header>; 2021: <requestHeader>, <supplyingAgencyMessageHeader>, ...
        self.header = next(
            (c for c in _children(self.element) if xmlsafe.local(c).lower().endswith("header")),
            None,
        )

    @property
    def is_confirmation(self) -> bool:
        return self.kind.endswith("Confirmation")


def parse(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> Parsed:
    try:
        return Parsed(xmlsafe.parse(body, limit))
    except xmlsafe.UnsafeXml as exc:
        status = 413 if "exceeds the limit" in str(exc) else 400
        raise Iso18626Error("BadlyFormedMessage", str(exc), status) from None


_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_date(value: str | None, element: str) -> datetime | None:
    if not value:
        return None
    raw = _FRACTION.sub(r"\1", _OFFSET.sub(r"\1:\2", value.strip().replace("Z", "+00:00")))
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Iso18626Error(
            "UnrecognisedDataValue", f"{element}: {shown(value)!r} is not a dateTime"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _written_at(raw: str | None, diagnostics: list[str]) -> datetime:
    """The header timestamp is informative (when the partner wrote the message; the hub keeps
    its own times): a zero or malformed one (Go's 0001-01-01T00:00:00Z) refuses nothing. The
    time of reading stands instead, with a diagnostic; the raw value stays in extensions."""
    now = datetime.now(UTC)
    if not raw:
        return now
    try:
        moment = parse_date(raw, "timestamp")
        if moment is not None and YEARS[0] <= moment.astimezone(UTC).year <= YEARS[1]:
            return moment
    except (Iso18626Error, OverflowError):
        pass
    diagnostics.append(f"header/timestamp {shown(raw)!r} is no usable time: time of reading used")
    return now


def _agency(node: etree._Element | None) -> str | None:
    value = text(node, "agencyIdValue")
    kind = text(node, "agencyIdType")
    if value and kind and kind.upper() != "ISIL":
        return f"{kind}:{value}"
    return value


def _costs(node: etree._Element | None, where: str, kind: str) -> Money | None:
    """Costs as canonical money: a decimal in range (core model), else UnrecognisedDataValue."""
    amount = text(node, "monetaryValue")
    if not amount:
        return None
    try:
        return Money(amount=parse_amount(amount), currency=text(node, "currencyCode"))
    except ValidationError as error:
        found = violation(error)
        raise Iso18626Error(
            "UnrecognisedDataValue",
            f"{where}/{t.ELEMENTS.get(found.field, found.field)}: {found.reason}",
            kind=kind,
        ) from None
    except ValueError as error:
        raise Iso18626Error(
            "UnrecognisedDataValue", f"{where}/monetaryValue: {error}", kind=kind
        ) from None


def _event(parsed: Parsed) -> Event:
    element = parsed.element
    if parsed.kind == "request":
        kind = text(element, "serviceInfo", "requestType") or "New"
        return t.REQUEST_TYPE_EVENTS.get(kind, Event.REQUEST)
    if parsed.kind == "requestingAgencyMessage":
        action = text(element, "action") or ""
        if action in t.ACTIONS:
            return t.ACTIONS[action]
        if action in t.UNSUPPORTED_ACTIONS:
            raise Iso18626Error("UnsupportedActionType", action, kind=parsed.kind)
        raise Iso18626Error("UnrecognisedDataValue", f"action: {action!r}", kind=parsed.kind)
    reason = text(element, "messageInfo", "reasonForMessage") or ""
    status = text(element, "statusInfo", "status") or ""
    if reason not in t.REASONS:
        raise Iso18626Error(
            "UnsupportedReasonForMessageType" if reason else "UnrecognisedDataValue",
            f"reasonForMessage: {reason!r}",
            kind=parsed.kind,
        )
    for want_reason, want_status, event in t.SUPPLIER:
        if want_reason in (None, reason) and want_status in (None, status):
            return event
    raise Iso18626Error("UnrecognisedDataValue", f"status: {status!r}", kind=parsed.kind)


def to_canonical(parsed: Parsed, sender: str = "") -> Message:
    """The canonical form of a request, supplyingAgencyMessage or requestingAgencyMessage."""
    if parsed.is_confirmation:
        raise Iso18626Error(
            "UnsupportedActionType",
            f"{parsed.kind} is a confirmation, not a message to relay",
            kind=parsed.kind,
        )
    event = _event(parsed)
    header, element = parsed.header, parsed.element
    request_id = text(header, "requestingAgencyRequestId")
    if not request_id:
        raise Iso18626Error(
            "UnrecognisedDataValue", "requestingAgencyRequestId is missing", kind=parsed.kind
        )
    supplier, requester = (
        _agency(child(header, "supplyingAgencyId")),
        _agency(child(header, "requestingAgencyId")),
    )
    from_lender = parsed.kind == "supplyingAgencyMessage"
    diagnostics: list[str] = []
    fields: dict[str, Any] = {
        "event": event,
        "sender": sender,
        "source_protocol": "iso18626",
        "request_id": request_id,
        "from_agency": supplier if from_lender else requester,
        "to_agency": requester if from_lender else supplier,
        "timestamp": _written_at(text(header, "timestamp"), diagnostics),
    }
    answer = text(element, "messageInfo", "answerYesNo")
    if event is Event.CANCEL_REPLY:
        fields["answer"] = answer == "Y" or text(element, "statusInfo", "status") == "Cancelled"
    elif event is Event.RENEW_ANSWER:
        fields["answer"] = answer == "Y"
    fields["note"] = text(element, "messageInfo", "note") or text(element, "note")
    reason = text(element, "messageInfo", "reasonUnfilled")
    status = text(element, "statusInfo", "status")
    if event is Event.UNFILLED:
        name = reason or ("RetryPossible" if status == "RetryPossible" else "Other")
        code = next((c for c, n in UNFILLED_REASONS.items() if n.lower() == name.lower()), None)
        fields["reason"] = {"code": code, "name": name}
    fields["due_date"] = parse_date(text(element, "statusInfo", "dueDate"), "dueDate")
    fields["date_shipped"] = parse_date(text(element, "deliveryInfo", "dateSent"), "dateSent")
    fields["item_id"] = text(element, "deliveryInfo", "itemId")
    fields["loan_condition"] = text(element, "deliveryInfo", "loanCondition")
    fields["cost"] = _costs(
        child(element, "deliveryInfo", "deliveryCosts"), "deliveryInfo/deliveryCosts", parsed.kind
    ) or _costs(
        child(element, "messageInfo", "offeredCosts"), "messageInfo/offeredCosts", parsed.kind
    )
    if event in (Event.REQUEST, Event.RETRY):
        _request_fields(element, fields)
        if event is Event.RETRY:
            _retry_address(fields)
    elif parsed.kind == "request":  # a Reminder: a note on the request it names
        _reminder_fields(element, fields)
    fields["extensions"] = {"iso18626": _extensions(parsed)}
    if diagnostics:
        fields["extensions"]["diagnostics"] = diagnostics
    try:
        return Message.model_validate(fields)
    except ValidationError as error:
        found = violation(error)
        where = t.ELEMENTS.get(found.field, found.field)
        if found.field == "extensions":  # the reason starts with its path: iso18626/fields/..
            path, _, reason = found.reason.partition(": ")
            inner = path.removeprefix("iso18626").removeprefix("/fields").removeprefix("/")
            where, found = inner or parsed.kind, type(found)(found.field, reason)
        raise Iso18626Error(
            "UnrecognisedDataValue", f"{where}: {found.reason}", kind=parsed.kind
        ) from None


def _reminder_fields(element: etree._Element, fields: dict[str, Any]) -> None:
    """A Reminder is about a request already made (by its previous id when it has a new one):
    it reaches that request's lender as a note and creates nothing (ISO 18626 requestType)."""
    service = child(element, "serviceInfo")
    previous = text(service, "requestingAgencyPreviousRequestId")
    if previous:
        fields["request_id"], fields["previous_request_id"] = previous, fields["request_id"]
    note = text(service, "note")
    fields["note"] = f"Reminder: {note}" if note else "Reminder"


def _retry_address(fields: dict[str, Any]) -> None:
    """A Retry continues the request it names: by requestingAgencyPreviousRequestId when the
    borrower gave the retry a new id (the transaction is found by the earlier one, and the
    new id is kept as previous_request_id, as for a Reminder), else by its own id."""
    previous = fields.get("previous_request_id")
    if previous and previous != fields["request_id"]:
        fields["request_id"], fields["previous_request_id"] = previous, fields["request_id"]
    else:
        fields["previous_request_id"] = None


def _request_fields(element: etree._Element, fields: dict[str, Any]) -> None:
    info = child(element, "bibliographicInfo")
    if info is None:
        raise Iso18626Error("UnrecognisedDataValue", "bibliographicInfo is missing", kind="request")
    bib: dict[str, str | None] = {field: text(info, name) for name, field in t.BIB_INFO.items()}
    publication = child(element, "publicationInfo")
    for name, field in t.PUBLICATION_INFO.items():
        bib[field] = text(publication, name)
    bib["call_number"] = text(element, "supplierInfo", "callNumber")
    for node in _children(info):
        name = xmlsafe.local(node)
        if name == "bibliographicItemId":
            code = (text(node, "bibliographicItemIdentifierCode") or "").lower()
            known = t.ITEM_ID_CODES.get(code)
            if known and not bib.get(known):
                bib[known] = text(node, "bibliographicItemIdentifier")
        elif name == "bibliographicRecordId":
            code = (text(node, "bibliographicRecordIdentifierCode") or "").lower()
            field = t.RECORD_ID_CODES.get(code, "local_id")
            if not bib.get(field):
                bib[field] = text(node, "bibliographicRecordIdentifier")
    # The title is optional: an item can be named by a record id or a standard number.
    if not any(bib.get(field) for field in ("title", *t.IDENTIFYING)):
        raise Iso18626Error(
            "UnrecognisedDataValue",
            "bibliographicInfo names no item: it needs a title, a supplierUniqueRecordId, "
            "or a bibliographicItemId or bibliographicRecordId",
            kind="request",
        )
    fields["bibliographic"] = {k: v for k, v in bib.items() if v}
    service = child(element, "serviceInfo")
    service_type = text(service, "serviceType")
    if service_type and service_type not in t.SERVICE_TYPES:
        raise Iso18626Error(
            "UnrecognisedDataValue", f"serviceType: {service_type!r}", kind="request"
        )
    fields["service_type"] = t.SERVICE_TYPES.get(service_type or "Loan", ServiceType.LOAN)
    fields["request_format"] = (
        RequestFormat.PHYSICAL
        if fields["service_type"] is ServiceType.LOAN
        else RequestFormat.NON_RETURNABLE
    )
    fields["need_before"] = parse_date(text(service, "needBeforeDate"), "needBeforeDate")
    fields["note"] = text(service, "note") or fields.get("note")
    fields["previous_request_id"] = text(service, "requestingAgencyPreviousRequestId")
    fields["loan_condition"] = text(service, "loanCondition") or fields.get("loan_condition")
    patron = child(element, "patronInfo")
    fields["patron_id"] = text(patron, "patronId")
    fields["patron_surname"] = text(patron, "surname")
    fields["patron_given_name"] = text(patron, "givenName")
    for address in patron.iterfind("{*}address") if patron is not None else ():
        fields["patron_email"] = fields.get("patron_email") or text(
            address, "electronicAddress", "electronicAddressData"
        )
    fields["max_cost"] = _costs(
        child(element, "billingInfo", "maximumCosts"), "billingInfo/maximumCosts", "request"
    )
    # requestedDeliveryInfo repeats: one address each, postal and electronic both kept.
    for delivery in element.iterfind("{*}requestedDeliveryInfo/{*}address"):
        physical = child(delivery, "physicalAddress")
        if physical is not None and not fields.get("delivery_address"):
            parts = [text(c) for c in _children(physical)]
            fields["delivery_address"] = ", ".join(p for p in parts if p) or None
        if not fields.get("delivery_email"):
            fields["delivery_email"] = text(delivery, "electronicAddress", "electronicAddressData")


def _extensions(parsed: Parsed) -> dict[str, Any]:
    """Everything in the message as path -> text, so nothing the partner sent is lost."""
    leaves: dict[str, str] = {}
    for node in parsed.element.iter():
        if not isinstance(node.tag, str) or _children(node):
            continue
        value = (node.text or "").strip()
        if value:
            path, up = [], node
            while up is not None and up is not parsed.element:
                path.append(xmlsafe.local(up))
                up = up.getparent()
            leaves.setdefault("/".join(reversed(path)), value)
    return {
        "message": parsed.kind,
        "version": parsed.version,
        "supplying_agency_request_id": text(parsed.header, "supplyingAgencyRequestId"),
        "fields": leaves,
    }


class Confirmation(BaseModel):
    kind: str
    status: str
    error_type: str | None = None
    error_value: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "OK"


def read_confirmation(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> Confirmation:
    parsed = parse(body, limit)
    if not parsed.is_confirmation:
        raise Iso18626Error("BadlyFormedMessage", f"expected a confirmation, got {parsed.kind}")
    element = parsed.element
    return Confirmation(
        kind=parsed.kind,
        status=text(element, "confirmationHeader", "messageStatus") or "",
        error_type=text(element, "errorData", "errorType"),
        error_value=text(element, "errorData", "errorValue"),
    )
