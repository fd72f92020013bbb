"""ISO 18626 codec, writing side: canonical `Message` -> v1.2 XML; Confirmations.

Sans-IO. Element order follows the v1.2 schema sequences.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from connectors import xmlsafe
from connectors.core import fidelity
from connectors.core.model import (
    LIMITS,
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    RenderError,
    ServiceType,
)
from connectors.iso18626 import tables as t
from connectors.iso18626.codec import Iso18626Error, Parsed, child, parse_date, text

XSI = "http://www.w3.org/2001/XMLSchema-instance"


el = xmlsafe.element_maker(t.NS, {None: t.NS, "ill": t.NS})


def opt(name: str, value: str | None) -> etree._Element | None:
    return el(name, value) if value else None


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _agency(name: str, agency: str, default_type: str = "ISIL") -> etree._Element:
    """An agency id: `TYPE:value` names its type; a bare id has the directory's type."""
    kind, _, value = agency.rpartition(":") if ":" in agency else (default_type, "", agency)
    return el(name, el("agencyIdType", kind), el("agencyIdValue", value))


def _costs(name: str, money: Money | None) -> etree._Element | None:
    """Costs with their currency; an amount without one (currencyCode is required) is said in
    the note instead, never guessed into a currency."""
    if money is None or not money.currency:
        return None
    return el(
        name,
        el("currencyCode", money.currency),
        el("monetaryValue", f"{money.amount:f}"),  # xs:decimal: never an exponent
    )


def _document(body: etree._Element, version: str = t.VERSION) -> bytes:
    root = el("ISO18626Message", body)
    root.set(f"{{{t.NS}}}version", version)
    root.set(f"{{{XSI}}}schemaLocation", t.SCHEMA_LOCATIONS[version])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _header(
    message: Message,
    supplier: str,
    requester: str,
    supplier_request_id: str | None,
    version: str = t.VERSION,
    types: tuple[str, str] = ("ISIL", "ISIL"),
) -> etree._Element:
    """`types`: the agencyIdType of (supplier, requester) ids written bare."""
    # 2021 headers are per message and drop the (v1.2 required, empty) multipleItemRequestId.
    return el(
        "header",
        _agency("supplyingAgencyId", supplier, types[0]),
        _agency("requestingAgencyId", requester, types[1]),
        el("multipleItemRequestId") if version == "1.2" else None,
        el("timestamp", stamp(message.timestamp)),
        el("requestingAgencyRequestId", message.request_id),
        opt("supplyingAgencyRequestId", supplier_request_id),
    )


def _item_ids(bib: Bibliographic, version: str) -> list[etree._Element]:
    out = []
    for field, code in t.ITEM_ID_OUT.items():
        value = getattr(bib, field)
        if value:
            parts = [
                el("bibliographicItemIdentifier", value),
                el("bibliographicItemIdentifierCode", code),
            ]
            if version != "1.2":
                parts.reverse()  # 2021 puts the code first
            out.append(el("bibliographicItemId", *parts))
    for field, code in t.RECORD_ID_OUT.items():
        value = getattr(bib, field)
        if value:
            out.append(
                el(
                    "bibliographicRecordId",
                    el("bibliographicRecordIdentifierCode", code),
                    el("bibliographicRecordIdentifier", value),
                )
            )
    return out


def _patron(message: Message) -> etree._Element | None:
    """patronInfo: the name as surname and given name; a name given whole (ISO 10161
    client-name) stands as the surname, since it cannot be split reliably."""
    surname = message.patron_surname or (None if message.patron_given_name else message.patron_name)
    email = message.patron_email
    if not (message.patron_id or surname or message.patron_given_name or email):
        return None
    return el(
        "patronInfo",
        opt("patronId", message.patron_id),
        opt("surname", surname),
        opt("givenName", message.patron_given_name),
        el(
            "address",
            el(
                "electronicAddress",
                el("electronicAddressType", "email"),
                el("electronicAddressData", email),
            ),
        )
        if email
        else None,
    )


def _deliveries(message: Message) -> list[etree._Element]:
    """requestedDeliveryInfo repeats: the postal and the electronic address each get one."""
    out = []
    if message.delivery_address:
        lines = [line.strip() for line in message.delivery_address.splitlines() if line.strip()]
        first, rest = (lines[0], ", ".join(lines[1:])) if lines else (message.delivery_address, "")
        physical = el("physicalAddress", el("line1", first), opt("line2", rest))
        out.append(el("requestedDeliveryInfo", el("address", physical)))
    if message.delivery_email:
        electronic = el(
            "electronicAddress",
            el("electronicAddressType", "email"),
            el("electronicAddressData", message.delivery_email),
        )
        out.append(el("requestedDeliveryInfo", el("address", electronic)))
    return out


def _carried(message: Message, version: str) -> frozenset[str]:
    carried = t.CARRIES_2021 if version != "1.2" else t.CARRIES
    if message.max_cost is not None and not message.max_cost.currency:
        carried -= {"max_cost"}  # currencyCode is required: never guessed
    return carried


def _request(message: Message, header: etree._Element, version: str = t.VERSION) -> etree._Element:
    bib = message.bibliographic or Bibliographic()
    info = el("bibliographicInfo")
    for name, field in t.BIB_INFO.items():
        value = getattr(bib, field)
        if value:
            info.append(el(name, value))
    info.extend(_item_ids(bib, version))
    publication = None
    if any(getattr(bib, field) for field in t.PUBLICATION_INFO.values()):
        publication = el(
            "publicationInfo",
            *(opt(name, getattr(bib, field)) for name, field in t.PUBLICATION_INFO.items()),
        )
    service = el(
        "serviceInfo",
        el("requestType", "New"),
        opt("requestingAgencyPreviousRequestId", message.previous_request_id),
        el("serviceType", (message.service_type or ServiceType.LOAN).value),
        opt("needBeforeDate", stamp(message.need_before) if message.need_before else None),
        opt("loanCondition", message.loan_condition if version != "1.2" else None),
        opt("note", fidelity.note_for(message, _carried(message, version))),
    )
    supplier = el("supplierInfo", el("callNumber", bib.call_number)) if bib.call_number else None
    billing = None
    if message.max_cost is not None and message.max_cost.currency:
        billing = el("billingInfo", _costs("maximumCosts", message.max_cost))
    return el(
        "request",
        header,
        info,
        publication,
        service,
        supplier,
        *_deliveries(message),
        _patron(message),
        billing,
    )


def _supplying(
    message: Message, header: etree._Element, state: str | None = None
) -> etree._Element:
    status, reason = t.SUPPLIER_OUT[message.event]
    if message.event is Event.LENDER_NOTE and state in t.STATE_STATUS:
        status = t.STATE_STATUS[state]
    answer = None
    if message.answer is not None:
        answer = "Y" if message.answer else "N"
        if message.event is Event.CANCEL_REPLY and not message.answer:
            status = "WillSupply"  # a refused cancel leaves the request open
    carried = {"loan_condition"} | ({"cost"} if message.cost and message.cost.currency else set())
    info = el(
        "messageInfo",
        el("reasonForMessage", reason),
        opt("answerYesNo", answer),
        opt("note", fidelity.note_for(message, carried)),
        opt("reasonUnfilled", message.reason.name if message.reason else None),
    )
    status_info = el(
        "statusInfo",
        el("status", status),
        opt("dueDate", stamp(message.due_date) if message.due_date else None),
        el("lastChange", stamp(message.timestamp)),
    )
    delivery = None
    if message.event in (Event.LOANED, Event.COPY_COMPLETED):
        delivery = el(
            "deliveryInfo",
            el("dateSent", stamp(message.date_shipped or message.timestamp)),
            opt("itemId", message.item_id),
            opt("loanCondition", message.loan_condition),
            _costs("deliveryCosts", message.cost),
        )
    return el("supplyingAgencyMessage", header, info, status_info, delivery)


def encode(
    message: Message,
    *,
    from_agency: str,
    to_agency: str,
    version: str = t.VERSION,
    state: str | None = None,
    to_borrower: bool | None = None,
    agency_types: tuple[str, str] = ("ISIL", "ISIL"),
) -> bytes:
    """The ISO 18626 message (v1.2, or 2021-2) for a canonical message (rshub as requester or
    supplier). `state`: the transaction's state, the status a Notification carries;
    `to_borrower`: the side of an event either party may say (Lost, Damaged);
    `agency_types`: the agencyIdType of (from_agency, to_agency) when written bare."""
    if version not in t.SCHEMA_LOCATIONS:
        raise RenderError(
            f"ISO 18626 version {version!r} is not one of {sorted(t.SCHEMA_LOCATIONS)}"
        )
    if message.event in t.NOTIFIED:
        lender_side = message.event is Event.CONDITIONAL or bool(to_borrower)
        name = t.NOTIFIED[message.event]
        message = message.model_copy(
            update={
                "event": Event.LENDER_NOTE if lender_side else Event.BORROWER_NOTE,
                "note": f"{name}: {message.note}" if message.note else name,
            }
        )
    if message.event is Event.REQUEST:
        header = _header(message, to_agency, from_agency, None, version, agency_types[::-1])
        return _document(_request(message, header, version), version)
    if message.event in t.ACTION_OUT:
        header = _header(message, to_agency, from_agency, None, version, agency_types[::-1])
        return _document(
            el(
                "requestingAgencyMessage",
                header,
                el("action", t.ACTION_OUT[message.event]),
                opt("note", message.note),
            ),
            version,
        )
    if message.event in t.SUPPLIER_OUT:
        header = _header(
            message, from_agency, to_agency, message.transaction_id or None, version, agency_types
        )
        return _document(_supplying(message, header, state), version)
    raise NotApplicable(f"ISO 18626 has no message for {message.event.value}")


def confirm(
    parsed: Parsed | None,
    error_type: str | None = None,
    error_value: str | None = None,
    kind: str | None = None,
) -> bytes:
    """The Confirmation of a message: OK, or ERROR with errorData."""
    source = parsed.kind if parsed is not None else (kind or "request")
    name, echo = t.CONFIRMATION.get(source, ("requestConfirmation", None))
    header = parsed.header if parsed is not None else None
    now = datetime.now(UTC)
    confirmation_header = el(
        "confirmationHeader",
        _copy(child(header, "supplyingAgencyId")),
        _copy(child(header, "requestingAgencyId")),
        el("timestamp", _echo_time(text(header, "timestamp")) or stamp(now)),
        opt("requestingAgencyRequestId", _echoable(text(header, "requestingAgencyRequestId"))),
        el("timestampReceived", stamp(now)),
        el("messageStatus", "ERROR" if error_type else "OK"),
    )
    echoed = None
    if echo and parsed is not None:
        value = text(parsed.element, echo) or text(parsed.element, "messageInfo", echo)
        valid = t.REASONS if echo == "reasonForMessage" else {*t.ACTIONS, *t.UNSUPPORTED_ACTIONS}
        echoed = opt(echo, value if value in valid else None)
    error = None
    if error_type:
        error = el("errorData", el("errorType", error_type), opt("errorValue", error_value))
    # Answer in the partner's version.
    version = "2021-2" if parsed is not None and parsed.version.startswith("2021") else t.VERSION
    return _document(el(name, confirmation_header, echoed, error), version)


def _echo_time(value: str | None) -> str | None:
    """The partner's timestamp, echoed only if it is one (so our answer stays valid)."""
    try:
        moment = parse_date(value, "timestamp") if value else None
        return stamp(moment) if moment else None
    except (Iso18626Error, OverflowError):  # 9999-12-31T23:59-23:59 is past year 9999 in UTC
        return None


def _echoable(value: str | None) -> str | None:
    """A partner's id echoed in a Confirmation only if it is one (within the canonical bound):
    the answer to a huge value is not itself huge. The elements echoed are optional."""
    return value if value is not None and len(value) <= LIMITS["id"] else None


def _copy(source: etree._Element | None) -> etree._Element | None:
    """A partner's agency id element, re-namespaced into ISO 18626."""
    if source is None or any(
        _echoable((c.text or "").strip()) is None for c in source if isinstance(c.tag, str)
    ):
        return None
    return el(
        etree.QName(source).localname,
        *[
            el(etree.QName(c).localname, (c.text or "").strip())
            for c in source
            if isinstance(c.tag, str)
        ],
    )
