"""NCIP codec, reading side: bytes -> canonical `Message`, or the `Problem` to answer.

Sans-IO: no sockets, no Kafka. Tolerant of what real systems send (namespace present, absent
or prefixed; unqualified version/Scheme attributes; NCIP 1.0 Scheme/Value children and
Unique*Id wrappers; ISO-8859-1; date-only dates) and strict about the P2P field table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from lxml import etree
from pydantic import BaseModel, ValidationError, field_validator

from connectors import xmlsafe
from connectors.core.model import (
    Event,
    Message,
    Money,
    Reason,
    RequestFormat,
    ServiceType,
    parse_amount,
    shown,
    violation,
)
from connectors.ncip import tables as t


class Problem(BaseModel):
    """An NCIP Problem, plus the HTTP status the transport answers it with."""

    type: str
    scheme: str = t.SCHEME_GENERAL
    detail: str = ""
    element: str | None = None
    value: str | None = None
    http_status: int = 200  # Alma and most responders answer Problems with HTTP 200

    # A Problem quotes the partner's input; bounded, so that it stays small when the input
    # was huge (it is sent back, and written to ill.deadletter).
    @field_validator("detail")
    @classmethod
    def _short_detail(cls, detail: str) -> str:
        return shown(detail, 500)

    @field_validator("value")
    @classmethod
    def _short_value(cls, value: str | None) -> str | None:
        return shown(value) if value is not None else None


class NcipError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(f"{problem.type}: {problem.detail}")


def syntax_problem(detail: str, http_status: int = 400) -> Problem:
    return Problem(
        type="Invalid Message Syntax Error",
        scheme=t.SCHEME_MESSAGING,
        detail=detail,
        http_status=http_status,
    )


class Parsed:
    """A well-formed NCIPMessage: its version, message name and element."""

    def __init__(self, root: etree._Element) -> None:
        if xmlsafe.local(root) != "NCIPMessage":
            raise NcipError(
                syntax_problem(f"root element is {xmlsafe.local(root)}, not NCIPMessage")
            )
        children = [c for c in root if isinstance(c.tag, str)]
        if not children:
            raise NcipError(syntax_problem("NCIPMessage holds no message"))
        self.root = root
        self.element = children[0]
        self.name = xmlsafe.local(self.element)
        self.version = next(
            (v for k, v in root.attrib.items() if etree.QName(k).localname == "version"), ""
        )
        self.namespace = etree.QName(root).namespace
        self.ncip1 = "v1_0" in self.version or (self.namespace is None and "v2" not in self.version)
        self.is_response = self.name.endswith("Response") or self.name == "Problem"
        self.used: set[etree._Element] = set()
        # element -> its element children by local name (the first of each): a message is
        # read by some 60 lookups by name, and scanning the children for each was most of
        # the codec's time. The tree is only read, never changed, while a Parsed holds it.
        self._by_name: dict[etree._Element, dict[str, etree._Element]] = {}

    # -- element access by local name, tolerant of NCIP 1.0 wrappers ----------------------

    def child(self, base: etree._Element | None, *path: str) -> etree._Element | None:
        node = self.element if base is None else base
        for name in path:
            found = self._children(node).get(name)
            if found is None:
                return None
            node = found
        return node

    def _children(self, node: etree._Element) -> dict[str, etree._Element]:
        named = self._by_name.get(node)
        if named is None:
            named = {}
            for c in node:
                if isinstance(c.tag, str):
                    named.setdefault(xmlsafe.local(c), c)
            self._by_name[node] = named
        return named

    def descendant(self, base: etree._Element | None, name: str) -> etree._Element | None:
        node = self.element if base is None else base
        return next(
            (e for e in node.iter() if isinstance(e.tag, str) and xmlsafe.local(e) == name), None
        )

    def value(self, node: etree._Element | None) -> str | None:
        """Text of a leaf; for NCIP 1.0's Scheme/Value pairs, the Value."""
        if node is None:
            return None
        for element in node.iter():
            self.used.add(element)
        inner = self.child(node, "Value")
        text = (inner.text if inner is not None else node.text) or ""
        return text.strip() or None

    def at(self, *path: str) -> str | None:
        return self.value(self.child(None, *path))

    def ident(self, wrappers: tuple[str, ...], leaf: str) -> str | None:
        """RequestId/ItemId/UserId values, also under 1.0's Unique*Id and inside Ext."""
        ext = self.child(None, "Ext")
        for wrapper in wrappers:
            holders = [self.child(None, wrapper)]
            if ext is not None:
                holders.append(self.child(ext, wrapper))
            for holder in holders:
                found = self.value(self.descendant(holder, leaf)) if holder is not None else None
                if found:
                    return found
        return None

    def agency(self, *path: str) -> str | None:
        holder = self.child(None, *path)
        if holder is None:
            return None
        found = self.descendant(holder, "AgencyId")
        if found is not None:
            return self.value(found)
        return self.value(self.child(holder, "UniqueAgencyId"))

    def ext(self) -> dict[str, str]:
        holder = self.child(None, "Ext")
        if holder is None:
            return {}
        out: dict[str, str] = {}
        for child in holder:
            if isinstance(child.tag, str) and len(child) == 0:
                out.setdefault(xmlsafe.local(child), (child.text or "").strip())
        return out

    def unmapped(self) -> dict[str, str]:
        """Leaves nothing else read: kept in extensions so nothing a partner sent is lost."""
        out: dict[str, str] = {}
        for element in self.element.iter():
            if not isinstance(element.tag, str) or element in self.used or len(element):
                continue
            text = (element.text or "").strip()
            if not text:
                continue
            path = []
            node: etree._Element | None = element
            while node is not None and node is not self.element:
                path.append(xmlsafe.local(node))
                node = node.getparent()
            out.setdefault("/".join(reversed(path)), text)
        return out


def parse(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> Parsed:
    try:
        root = xmlsafe.parse(body, limit)
    except xmlsafe.UnsafeXml as exc:
        status = 413 if "exceeds the limit" in str(exc) else 400
        raise NcipError(syntax_problem(str(exc), status)) from None
    return Parsed(root)


def parse_date(text: str, element: str) -> datetime:
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise NcipError(
            Problem(
                type="Invalid Date",
                element=element,
                value=raw,
                detail=f"{element}: {shown(raw)!r} is not an ISO 8601 date",
            )
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rule_violated(element: str, reason: str, problem: str = "Element Rule Violated") -> NcipError:
    """A value outside the canonical model's bounds (core model LIMITS), named by element."""
    return NcipError(Problem(type=problem, element=element, detail=f"{element}: {reason}"))


@contextmanager
def element(name: str, problem: str = "Element Rule Violated") -> Iterator[None]:
    """Part of a message built from one NCIP element: a bound it breaks is named by it."""
    try:
        yield
    except ValidationError as error:
        raise rule_violated(name, violation(error).reason, problem) from None


def _extension_element(reason: str, parsed: Parsed) -> tuple[str, str]:
    """The NCIP element of a bound broken in extensions, whose reason starts with its path
    there: ncip/unmapped/<path of an unread element> or ncip/ext/<Ext child>."""
    path, _, why = reason.partition(": ")
    parts = path.split("/")[1:]
    if parts[:1] == ["ext"]:
        return ".".join(["Ext", *parts[1:]]), why
    if parts[:1] == ["unmapped"] and len(parts) > 1:
        return ".".join(parts[1:]), why
    return parsed.name, why


def _element_of(field: str, parsed: Parsed) -> str:
    """The NCIP element of a canonical field (tables.ELEMENTS); extensions name their path."""
    if field in t.ELEMENTS:
        return t.ELEMENTS[field]
    if field.startswith("bibliographic."):
        name = t.BIB_ELEMENTS.get(field.removeprefix("bibliographic."))
        if name:
            return name
    if field in t.DATE_FIELDS:
        return ".".join(t.DATE_FIELDS[field][0])
    return parsed.name


def event_of(parsed: Parsed, notice: str | None) -> Event:
    name = parsed.name
    key = (notice or "").replace(".", "").replace(" ", "")
    if (name, key) in t.BY_NOTICE:
        return t.BY_NOTICE[(name, key)]
    if name in t.PLAIN:
        return t.PLAIN[name]
    if any(n == name for n, _ in t.BY_NOTICE):
        raise NcipError(
            Problem(
                type="Needed Data Missing",
                element="Ext.NoticeContent",
                value=notice,
                detail=f"{name} needs Ext/NoticeContent to say who sent it "
                f"(e.g. {', '.join(k for n, k in t.BY_NOTICE if n == name)})",
            )
        )
    raise NcipError(
        Problem(
            type="Unsupported Service",
            scheme=t.SCHEME_MESSAGING,
            detail=f"{name} is not part of the NCIP peer-to-peer profile",
        )
    )


def to_canonical(parsed: Parsed, sender: str = "") -> Message:
    """The canonical form of a P2P initiation message; raises NcipError with its Problem."""
    if parsed.is_response:
        raise NcipError(
            Problem(
                type="Unsupported Service",
                scheme=t.SCHEME_MESSAGING,
                detail=f"{parsed.name} is a response, not an initiation message",
            )
        )
    ext = parsed.ext()
    notice = ext.get("NoticeContent")
    parsed.value(parsed.child(None, "Ext", "NoticeContent"))
    event = event_of(parsed, notice)
    fields: dict[str, Any] = {
        "event": event,
        "sender": sender,
        "source_protocol": "ncip",
        "request_id": parsed.ident(("RequestId", "UniqueRequestId"), "RequestIdentifierValue")
        or "",
        "item_id": parsed.ident(("ItemId", "UniqueItemId"), "ItemIdentifierValue"),
        "patron_id": parsed.ident(("UserId", "UniqueUserId"), "UserIdentifierValue"),
        "from_agency": parsed.agency("InitiationHeader", "FromAgencyId"),
        "to_agency": parsed.agency("InitiationHeader", "ToAgencyId"),
        "on_behalf_of_agency": parsed.agency("InitiationHeader", "OnBehalfOfAgency"),
        "pickup_location": parsed.at("PickupLocation"),
    }
    for name, places in t.DATE_FIELDS.items():
        for place in places:
            text = parsed.at(*place)
            if text:
                fields[name] = parse_date(text, ".".join(place))
                break
    fields["to_agency"] = _receiving(fields["to_agency"], fields["on_behalf_of_agency"])
    _request_fields(parsed, fields)
    _answer_fields(parsed, event, ext, fields)
    fields["extensions"] = _extensions(parsed, notice, ext)
    try:
        message = Message.model_validate(fields)
    except ValidationError as error:
        found = violation(error)
        where, reason = _element_of(found.field, parsed), found.reason
        if found.field == "extensions":
            where, reason = _extension_element(found.reason, parsed)
        problem = "Invalid Amount" if found.field.endswith("amount") else "Element Rule Violated"
        raise rule_violated(where, reason, problem) from None
    _check_required(message, parsed)
    return message


def _receiving(institution: str | None, library: str | None) -> str | None:
    """The receiving agency as the directory lists Alma's: `institution||library` when the
    header names the library apart (seed 004), else the institution as given."""
    if institution and library and library != institution and t.AGENCY_SEPARATOR not in institution:
        return f"{institution}{t.AGENCY_SEPARATOR}{library}"
    return institution


def _request_fields(parsed: Parsed, fields: dict[str, Any]) -> None:
    kind = parsed.at("RequestType")
    if kind:
        fmt = t.REQUEST_TYPES.get(kind.lower())
        if fmt is None and fields["event"] is Event.REQUEST:
            raise NcipError(
                Problem(
                    type="Unknown Value From Known Scheme",
                    element="RequestType",
                    value=kind,
                    detail=f"RequestType {kind!r} is not known",
                )
            )
        fields["request_format"] = fmt
    restrictions = [
        parsed.value(e)
        for e in parsed.element.iter()
        if isinstance(e.tag, str) and xmlsafe.local(e) == "ItemUseRestrictionType"
    ]
    electronic = parsed.child(None, "ItemOptionalFields", "ElectronicResource")
    if t.WITHOUT_RETURN in restrictions or electronic is not None:
        fields["request_format"] = (
            RequestFormat.DIGITAL if electronic is not None else RequestFormat.NON_RETURNABLE
        )
        if fields["event"] is Event.LOANED:
            fields["event"] = Event.COPY_COMPLETED
    if fields.get("request_format"):
        fields["service_type"] = (
            ServiceType.LOAN
            if fields["request_format"] is RequestFormat.PHYSICAL
            else ServiceType.COPY
        )
    description = parsed.child(None, "ItemOptionalFields", "BibliographicDescription")
    bib: dict[str, str | None] = {}
    if description is not None:
        for element, field in t.BIB_FIELDS.items():
            bib[field] = parsed.value(parsed.child(description, element))
    for holder in (parsed.child(None, "ItemOptionalFields", "BibliographicDescription"), None):
        for record in (holder if holder is not None else parsed.element).iter():
            if not isinstance(record.tag, str):
                continue
            if xmlsafe.local(record) in ("BibliographicRecordId", "BibliographicItemId"):
                ident = parsed.value(
                    parsed.descendant(record, "BibliographicRecordIdentifier")
                ) or parsed.value(parsed.descendant(record, "BibliographicItemIdentifier"))
                code = (
                    parsed.value(parsed.descendant(record, "BibliographicRecordIdentifierCode"))
                    or parsed.value(parsed.descendant(record, "BibliographicItemIdentifierCode"))
                    or ""
                )
                field = t.RECORD_ID_CODES.get(code.lower().replace(" ", ""), "local_id")
                if ident and not bib.get(field):
                    bib[field] = ident
    bib["call_number"] = parsed.at("ItemOptionalFields", "ItemDescription", "CallNumber")
    for name, field in t.EXT_BIB.items():
        bib[field] = parsed.at("Ext", name)
    if any(bib.values()):
        fields["bibliographic"] = {k: v for k, v in bib.items() if v}
    address = parsed.child(None, "ShippingInformation")
    if address is not None:
        # One address stands in the schema's choice; rshub writes the other (a request may
        # have both) in ShippingInformation/Ext, so both are looked for anywhere inside.
        fields["delivery_email"] = parsed.value(parsed.descendant(address, "ElectronicAddressData"))
        physical = parsed.descendant(address, "PhysicalAddress")
        if physical is not None:
            # The address lines, not their labels (UnstructuredAddressType, PhysicalAddressType).
            parts = [
                parsed.value(e)
                for e in physical.iter()
                if isinstance(e.tag, str) and len(e) == 0 and not xmlsafe.local(e).endswith("Type")
            ]
            fields["delivery_address"] = ", ".join(p for p in parts if p) or None
    fee = parsed.child(None, "AcknowledgedFeeAmount")
    if fee is not None:
        fields["max_cost"] = money(parsed, fee, "AcknowledgedFeeAmount")


def money(parsed: Parsed, holder: etree._Element, where: str) -> Money:
    """An NCIP amount (integer minor units) as a decimal canonical amount, in range."""
    currency = parsed.value(parsed.child(holder, "CurrencyCode"))
    raw = parsed.value(parsed.child(holder, "MonetaryValue")) or "0"
    try:
        amount = parse_amount(raw).scaleb(-t.minor_units(currency))
    except ValueError:
        raise NcipError(
            Problem(
                type="Invalid Amount",
                element=f"{where}.MonetaryValue",
                value=raw,
                detail=f"{where}.MonetaryValue {shown(raw)!r} is not a number",
            )
        ) from None
    with element(f"{where}.MonetaryValue", "Invalid Amount"):
        return Money(amount=amount, currency=currency)


def _answer_fields(
    parsed: Parsed, event: Event, ext: dict[str, str], fields: dict[str, Any]
) -> None:
    answer = ext.get("Answer")
    if answer is not None:
        parsed.value(parsed.child(None, "Ext", "Answer"))
        if answer.lower() not in t.ANSWERS:
            raise NcipError(
                Problem(
                    type="Unknown Value From Known Scheme",
                    element="Ext.Answer",
                    value=answer,
                    detail="Ext/Answer must be True or False",
                )
            )
        fields["answer"] = t.ANSWERS[answer.lower()]
    note = ext.get("ItemNote")
    if note is not None:
        parsed.value(parsed.child(None, "Ext", "ItemNote"))
        if event in (Event.UNFILLED, Event.EXPIRED):
            # A reason number (ASCII digits: str.isdigit() also takes "²"), else free text.
            numbered = REASON_NUMBER.fullmatch(note)
            with element("Ext.ItemNote"):
                fields["reason"] = (
                    Reason.from_code(int(note)) if numbered else Reason.from_code(27, note)
                )
        else:
            fields["note"] = note
    fee = parsed.child(None, "Ext", "RequiredFeeAmount")
    if fee is not None:
        fields["cost"] = money(parsed, fee, "Ext.RequiredFeeAmount")


REASON_NUMBER = re.compile(r"[0-9]{1,3}")


def _extensions(parsed: Parsed, notice: str | None, ext: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"message": parsed.name, "version": parsed.version}
    for key, path in (
        ("from_system_id", ("InitiationHeader", "FromSystemId")),
        ("application_profile", ("InitiationHeader", "ApplicationProfileType")),
        ("request_scope", ("RequestScopeType",)),
    ):
        value = parsed.at(*path)
        if value:
            out[key] = value
    if notice:
        out["notice_content"] = notice
    if ext:
        out["ext"] = ext
    unmapped = parsed.unmapped()
    if unmapped:
        out["unmapped"] = unmapped
    return {"ncip": out}


def _check_required(message: Message, parsed: Parsed) -> None:
    for field, ncip_path in [*t.COMMON_REQUIRED, *t.REQUIRED.get(message.event, [])]:
        value: Any = message
        for part in field.split("."):
            value = getattr(value, part, None) if value is not None else None
        if value in (None, ""):
            raise NcipError(
                Problem(
                    type="Needed Data Missing",
                    element=ncip_path,
                    detail=f"{parsed.name} ({message.event.value}) needs {ncip_path}",
                )
            )


def decode(body: bytes, sender: str = "", limit: int = xmlsafe.DEFAULT_LIMIT) -> Message:
    return to_canonical(parse(body, limit), sender)


class Response(BaseModel):
    """What a partner answered to one of our messages: its Problems, and what a successful
    answer tells (a RenewItemResponse's new due date)."""

    name: str
    problems: list[Problem]
    item_id: str | None = None
    due_date: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def read_response(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> Response:
    parsed = parse(body, limit)
    problems = []
    for element in parsed.root.iter():
        if not isinstance(element.tag, str):
            continue
        name = xmlsafe.local(element)
        if name not in ("Problem", "ProcessingError", "MessagingError"):
            continue
        if name != "Problem" and any(
            xmlsafe.local(a) == "Problem" for a in element.iterancestors()
        ):
            continue  # NCIP 1.0 wraps ProcessingError in Problem: one problem, not two
        kind = next(
            (
                found
                for tag in ("ProblemType", "ProcessingErrorType", "MessagingErrorType")
                if (found := parsed.descendant(element, tag)) is not None
            ),
            None,
        )
        scheme = None
        if kind is not None:
            scheme = next(
                (v for k, v in kind.attrib.items() if etree.QName(k).localname == "Scheme"),
                parsed.value(parsed.child(kind, "Scheme")),
            )
        problems.append(
            Problem(
                type=parsed.value(kind) or name,
                scheme=scheme or "",
                detail=parsed.value(parsed.descendant(element, "ProblemDetail"))
                or parsed.value(parsed.descendant(element, "ProcessingErrorValue"))
                or "",
                element=parsed.value(parsed.descendant(element, "ProblemElement")),
                value=parsed.value(parsed.descendant(element, "ProblemValue")),
            )
        )
    due = next((found for place in t.DATE_FIELDS["due_date"] if (found := parsed.at(*place))), None)
    return Response(
        name=parsed.name,
        problems=problems,
        item_id=parsed.ident(("ItemId", "UniqueItemId"), "ItemIdentifierValue"),
        due_date=parse_date(due, "DateDue") if due and not problems else None,
    )
