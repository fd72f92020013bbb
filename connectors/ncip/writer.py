"""NCIP codec, writing side: canonical `Message` -> NCIP 2.02 bytes; responses and Problems.

Sans-IO. Element order follows `tables.ORDER` (the XSD sequences); each element has one
builder here. Written as Alma writes it: `ns1:` prefix, qualified `ns1:version`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP

from lxml import etree

from connectors import xmlsafe
from connectors.core import fidelity
from connectors.core.model import (
    Event,
    Message,
    Money,
    NotApplicable,
    RenderError,
    RequestFormat,
    ServiceType,
)
from connectors.ncip import tables as t
from connectors.ncip.codec import Parsed, Problem

NSMAP: dict[str | None, str] = {"ns1": t.NS}


def _q(name: str) -> str:
    return f"{{{t.NS}}}{name}"


el = xmlsafe.element_maker(t.NS, NSMAP)


def _date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Envelope:
    message: Message
    from_agency: str
    to_agency: str
    system_id: str
    notice: str | None


def _header(env: Envelope) -> etree._Element:
    institution, _, library = env.to_agency.partition(t.AGENCY_SEPARATOR)
    return el(
        "InitiationHeader",
        el("FromSystemId", env.system_id),
        el("FromAgencyId", el("AgencyId", env.from_agency)),
        el("OnBehalfOfAgency", el("AgencyId", library or institution)),
        el("ToAgencyId", el("AgencyId", institution)),
    )


def _user(env: Envelope) -> etree._Element | None:
    patron = env.message.patron_id
    if patron is None and env.message.event not in (
        Event.REQUEST,
        Event.CANCEL,
        Event.CANCEL_REPLY,
    ):
        return None
    return el("UserId", el("UserIdentifierValue", patron or "unknown"))


def _request_id(env: Envelope) -> etree._Element | None:
    rid = env.message.request_id
    return el("RequestId", el("RequestIdentifierValue", rid)) if rid else None


def _item_id(env: Envelope) -> etree._Element | None:
    item = env.message.item_id
    if not item:
        return None
    return el("ItemId", el("ItemIdentifierType", "Barcode"), el("ItemIdentifierValue", item))


def _bibliographic_ids(env: Envelope) -> list[etree._Element]:
    bib = env.message.bibliographic
    out = []
    for field, code in t.WRITTEN_IDS.items():
        value = getattr(bib, field, None) if bib else None
        if value:
            out.append(
                el(
                    "BibliographicId",
                    el(
                        "BibliographicRecordId",
                        el("BibliographicRecordIdentifier", value),
                        el("BibliographicRecordIdentifierCode", code),
                    ),
                )
            )
    if not out:
        # The schema wants an ItemId or a BibliographicId; the request's own id serves.
        out.append(
            el(
                "BibliographicId",
                el(
                    "BibliographicRecordId",
                    el("BibliographicRecordIdentifier", env.message.request_id),
                    el("BibliographicRecordIdentifierCode", "LocalID"),
                ),
            )
        )
    return out


def _request_type(env: Envelope) -> etree._Element:
    """NCIP's RequestType is all it says of the service: a copy without a stated format is
    never written as a loan (Physical)."""
    message = env.message
    copy = message.service_type is ServiceType.COPY
    default = RequestFormat.NON_RETURNABLE if copy else RequestFormat.PHYSICAL
    return el("RequestType", t.REQUEST_TYPE_OUT[message.request_format or default])


def _item_optional(env: Envelope) -> etree._Element | None:
    message, children = env.message, []
    bib = message.bibliographic
    if message.event is Event.REQUEST and bib is not None:
        description = el("BibliographicDescription")
        # The P2P profile requires a level; protocols without one (ISO 18626) get it derived.
        level = bib.bibliographic_level or (
            "Journal" if bib.issn or bib.title_of_component else "Book"
        )
        for element, field in t.BIB_FIELDS.items():
            value = level if field == "bibliographic_level" else getattr(bib, field)
            if value:
                description.append(el(element, value))
        children.append(description)
    if message.event is Event.COPY_COMPLETED:
        children.append(el("ItemUseRestrictionType", t.WITHOUT_RETURN))
    if message.event is Event.REQUEST and bib is not None and bib.call_number:
        children.append(el("ItemDescription", el("CallNumber", bib.call_number)))
    return el("ItemOptionalFields", *children) if children else None


def _electronic(address: str) -> etree._Element:
    return el(
        "ElectronicAddress",
        el("ElectronicAddressType", "Email Address"),
        el("ElectronicAddressData", address),
    )


def _physical(address: str) -> etree._Element:
    return el(
        "PhysicalAddress",
        el(
            "UnstructuredAddress",
            el("UnstructuredAddressType", "Newline-Delimited Text"),
            el("UnstructuredAddressData", address),
        ),
        el("PhysicalAddressType", "Postal Address"),
    )


def _shipping(env: Envelope) -> etree._Element | None:
    """ShippingInformation holds one address (a schema choice): the one the format needs
    (a loan goes to the postal address, a copy to the e-mail address); the other, when a
    request has both, in its Ext, so the lender has both."""
    message = env.message
    email, postal = message.delivery_email, message.delivery_address
    if not postal and message.event in (Event.LOANED, Event.COPY_COMPLETED, Event.SHIPPED_RETURN):
        postal = None if email else "as agreed"  # ItemShipped requires an address
    if not (email or postal):
        return None
    electronic_first = bool(email) and (
        not postal or message.request_format not in (None, RequestFormat.PHYSICAL)
    )
    main, other = (
        (_electronic(email), _physical(postal) if postal else None)
        if electronic_first and email
        else (_physical(postal or ""), _electronic(email) if email else None)
    )
    return el("ShippingInformation", main, el("Ext", other) if other is not None else None)


def _date_element(name: str, field: str) -> Callable[[Envelope], etree._Element | None]:
    def build(env: Envelope) -> etree._Element | None:
        value = getattr(env.message, field)
        if value is None and name == "DateShipped":
            value = env.message.timestamp
        if value is None and name == "DateReceived":
            value = env.message.timestamp
        return el(name, _date(value)) if value else None

    return build


def _amount(name: str, fee: Money) -> etree._Element | None:
    """NCIP MonetaryValue is an integer of minor units: a finer amount is rounded to them.
    NCIP requires a CurrencyCode: an amount without one is not guessed into a currency; it
    goes into the note instead (`_carried`)."""
    currency = fee.currency
    if not currency:
        return None
    minor = fee.amount.scaleb(t.minor_units(currency)).to_integral_value(ROUND_HALF_UP)
    return el(name, el("CurrencyCode", currency), el("MonetaryValue", f"{minor:f}"))


def _fee(env: Envelope) -> etree._Element | None:
    fee = env.message.max_cost
    return _amount("AcknowledgedFeeAmount", fee) if fee is not None else None


def _ext(env: Envelope) -> etree._Element | None:
    message, children = env.message, []
    if env.notice:
        children.append(el("NoticeContent", env.notice))
    if message.event in (Event.UNFILLED, Event.EXPIRED) and message.reason:
        children.append(el("ItemNote", str(message.reason.code or 27)))
    else:
        note = fidelity.note_for(message, _carried(message))
        if note:
            children.append(el("ItemNote", note))
    if message.event is Event.REQUEST and message.bibliographic is not None:
        for name, field in t.EXT_BIB.items():
            value = getattr(message.bibliographic, field)
            if value:
                children.append(el(name, value))
    if message.answer is not None:
        children.append(el("Answer", "True" if message.answer else "False"))
    if message.event is Event.RENEW and message.desired_due_date:
        children.append(el("DesiredDateDue", _date(message.desired_due_date)))
    if message.event in (Event.LOANED, Event.COPY_COMPLETED) and message.due_date:
        children.append(el("DateDue", _date(message.due_date)))
    fee = _amount("RequiredFeeAmount", message.cost) if message.cost is not None else None
    if fee is not None:
        children.append(fee)
    if message.event in (Event.RENEW, Event.RENEW_ANSWER, Event.RECALLED) and message.request_id:
        # The schema gives these no RequestId; carrying it in Ext lets peers correlate.
        children.append(el("RequestId", el("RequestIdentifierValue", message.request_id)))
    return el("Ext", *children) if children else None


def _carried(message: Message) -> frozenset[str]:
    """What this message's own elements carry (the rest goes into Ext/ItemNote)."""
    carried = t.CARRIES | {"cost"}
    for field in ("cost", "max_cost"):
        money = getattr(message, field)
        if money is not None and not money.currency:
            carried -= {field}
    return carried


BUILDERS: dict[str, Callable[[Envelope], etree._Element | list[etree._Element] | None]] = {
    "InitiationHeader": _header,
    "UserId": _user,
    "BibliographicId": _bibliographic_ids,
    "RequestId": _request_id,
    "ItemId": _item_id,
    "RequestType": _request_type,
    "RequestScopeType": lambda env: el("RequestScopeType", "Item"),
    "ItemOptionalFields": _item_optional,
    "ShippingInformation": _shipping,
    "NeedBeforeDate": _date_element("NeedBeforeDate", "need_before"),
    "PickupLocation": lambda env: (
        el("PickupLocation", env.message.pickup_location) if env.message.pickup_location else None
    ),
    "PickupExpiryDate": _date_element("PickupExpiryDate", "pickup_expiry"),
    "AcknowledgedFeeAmount": _fee,
    "DesiredDateDue": _date_element("DesiredDateDue", "desired_due_date"),
    "DateDue": _date_element("DateDue", "due_date"),
    "DateShipped": _date_element("DateShipped", "date_shipped"),
    "DateReceived": _date_element("DateReceived", "date_received"),
    "Ext": _ext,
}


def _document(body: etree._Element) -> bytes:
    root = el("NCIPMessage", body)
    root.set(_q("version"), t.VERSION_URL)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _has(message: Message, field: str) -> bool:
    value: object = message
    for part in field.split("."):
        value = getattr(value, part, None)
    return value not in (None, "")


def encode(
    message: Message, *, from_agency: str, to_agency: str, system_id: str = "RSHUB"
) -> bytes:
    """The NCIP initiation message for a canonical message; NotApplicable if NCIP has none."""
    if message.event not in t.ENCODE:
        raise NotApplicable(f"NCIP P2P has no message for {message.event.value}")
    missing = [
        path for field, path in t.WRITE_REQUIRED.get(message.event, []) if not _has(message, field)
    ]
    if missing:
        raise RenderError(
            f"NCIP {t.ENCODE[message.event][0]} needs {', '.join(missing)}; "
            f"the {message.event.value} has none"
        )
    name, notice = t.ENCODE[message.event]
    env = Envelope(message, from_agency, to_agency, system_id, notice)
    body = el(name)
    for element in t.ORDER[name]:
        built = BUILDERS[element](env)
        for child in built if isinstance(built, list) else [built]:
            if child is not None:
                body.append(child)
    return _document(body)


def _response_header(from_agency: str | None, to_agency: str | None) -> etree._Element | None:
    if not (from_agency and to_agency):
        return None
    return el(
        "ResponseHeader",
        el("FromAgencyId", el("AgencyId", from_agency)),
        el("ToAgencyId", el("AgencyId", to_agency)),
    )


def _problem(problem: Problem) -> etree._Element:
    kind = el("ProblemType", problem.type)
    if problem.scheme:
        kind.set(_q("Scheme"), problem.scheme)
    return el(
        "Problem",
        kind,
        el("ProblemDetail", problem.detail) if problem.detail else None,
        el("ProblemElement", problem.element) if problem.element else None,
        el("ProblemValue", problem.value) if problem.value else None,
    )


def encode_response(parsed: Parsed, problems: list[Problem] | None = None) -> bytes:
    """The response to an initiation message: echo of its ids, or its Problems."""
    request_header = parsed.child(None, "InitiationHeader")
    from_agency = to_agency = None
    if request_header is not None:
        to_agency = parsed.agency("InitiationHeader", "FromAgencyId")
        from_agency = parsed.agency("InitiationHeader", "ToAgencyId")
    body = el(f"{parsed.name}Response", _response_header(from_agency, to_agency))
    if problems:
        for problem in problems:
            body.append(_problem(problem))
    else:
        for name in t.RESPONSE_ECHO.get(parsed.name, []):
            source = parsed.child(None, name)
            if source is not None:
                body.append(_requalify(source))
    return _document(body)


def encode_problem(problem: Problem, response_name: str | None = None) -> bytes:
    """A Problem for a message that could not be read: inside a response when we know its
    name, else directly under NCIPMessage (as the XC toolkit and Alma do)."""
    if response_name:
        return _document(el(response_name, _problem(problem)))
    return _document(_problem(problem))


def _requalify(source: etree._Element) -> etree._Element:
    """Copy a partner's element into the NCIP namespace, whatever namespace it came in."""
    name = etree.QName(source).localname
    copy = el(name, (source.text or "").strip() or None if len(source) == 0 else None)
    for child in source:
        if isinstance(child.tag, str):
            copy.append(_requalify(child))
    return copy
