"""ISO 10161 APDUs <-> canonical messages, as tables. Sans-IO.

Which APDU is which event, where each canonical field stands in each APDU, and the
ILL-Answer results. The whole decoded APDU is kept in `extensions["iso10161"]`, so nothing a
partner sent is lost; the borrower's own transaction-id travels with its transaction so every
APDU rshub sends back carries it unchanged.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from pydantic import ValidationError

from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Bibliographic,
    Correlation,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RenderError,
    RequestFormat,
    Role,
    ServiceType,
    parse_amount,
    parse_lender_request_id,
    shown,
    violation,
)
from connectors.iso10161 import codec
from connectors.iso10161.asn1 import compiled
from connectors.iso10161.codec import Iso10161Error

# APDU -> event, for the APDUs whose meaning needs nothing else.
APDU_EVENTS: dict[str, Event] = {
    "ILL-Request": Event.REQUEST,
    "Shipped": Event.LOANED,
    "Received": Event.RECEIVED,
    "Returned": Event.SHIPPED_RETURN,
    "Checked-In": Event.LOAN_COMPLETED,
    "Cancel": Event.CANCEL,
    "Cancel-Reply": Event.CANCEL_REPLY,
    "Renew": Event.RENEW,
    "Renew-Answer": Event.RENEW_ANSWER,
    "Recall": Event.RECALLED,
    "Overdue": Event.OVERDUE,
    "Expired": Event.EXPIRED,
    "Lost": Event.LOST,
    "Damaged": Event.DAMAGED,
    "Status-Query": Event.STATUS_QUERY,
}
# ILL-Answer transaction-results -> event. Retry and locations-provided move on to the next
# lender; the other conditional answers reach the borrower as information.
ANSWER_EVENTS: dict[str, Event] = {
    "will-supply": Event.WILL_SUPPLY,
    "unfilled": Event.UNFILLED,
    "retry": Event.RETRY_POSSIBLE,
    "locations-provided": Event.UNFILLED,
    "conditional": Event.CONDITIONAL,
    "hold-placed": Event.LENDER_NOTE,
    "estimate": Event.LENDER_NOTE,
}
# APDUs that carry information for the other party and change no state, by who sends them
# (None: either side, told apart by whose request id the APDU carries).
NOTE_APDUS: dict[str, Event | None] = {
    "Message": None,
    "Status-Or-Error-Report": None,
    "Forward-Notification": Event.LENDER_NOTE,
    "Conditional-Reply": Event.BORROWER_NOTE,
}

# event -> APDU rshub writes. WILL_SUPPLY and UNFILLED are ILL-Answers; notes are Messages.
EVENT_APDUS: dict[Event, str] = {
    **{event: apdu for apdu, event in APDU_EVENTS.items()},
    Event.COPY_COMPLETED: "Shipped",
    Event.WILL_SUPPLY: "ILL-Answer",
    Event.UNFILLED: "ILL-Answer",
    Event.LENDER_NOTE: "Message",
    Event.BORROWER_NOTE: "Message",
}

# Item-Id field -> canonical bibliographic field.
ITEM_FIELDS: dict[str, str] = {
    "title": "title",
    "author": "author",
    "sub-title": "title_of_component",
    "place-of-publication": "place_of_publication",
    "publisher": "publisher",
    "series-title-number": "series_title_number",
    "edition": "edition",
    "publication-date": "publication_date",
    "publication-date-of-component": "publication_date_of_component",
    "author-of-article": "author_of_component",
    "title-of-article": "title_of_component",
    "pagination": "pagination",
    "iSBN": "isbn",
    "iSSN": "issn",
    "call-number": "call_number",
}
# Canonical date field -> (APDU, path to the ISO-Date) where it stands.
DATES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "date_received": [("Received", ("date-received",))],
    "date_shipped": [
        ("Shipped", ("supply-details", "date-shipped")),
        ("Returned", ("date-returned",)),
    ],
    "due_date": [
        ("Shipped", ("supply-details", "date-due", "date-due-field")),
        ("Renew-Answer", ("date-due", "date-due-field")),
        ("Overdue", ("date-due", "date-due-field")),
    ],
    "desired_due_date": [("Renew", ("desired-due-date",))],
    "need_before": [("ILL-Request", ("search-type", "need-before-date"))],
}
NOTES = ("requester-note", "responder-note", "note")
# Canonical field -> the APDU element it comes from, to name it in an error report (the
# agencies depend on who sent the APDU; bibliographic fields and dates: ITEM_FIELDS, DATES).
ELEMENTS: dict[str, str] = {
    "request_id": "transaction-id/transaction-qualifier",
    "patron_id": "client-id/client-identifier",
    "cost": "supply-details/cost",
    "max_cost": "cost-info-type/maximum-cost",
}
# Amount ::= SEQUENCE { currency-code PrintableString (SIZE (3)), monetary-value AmountString
# (SIZE (1..10)) }: what rshub can write.
AMOUNT_DIGITS = 10
CURRENCY_LENGTH = 3

# Extensions (EXTERNAL, X.208 form) decoded by their OID into canonical `extensions`.
EXTENSION_TYPES: dict[str, str] = {
    "1.0.10161.13.2": "OCLCILLRequestExtension",
    "1.0.10161.13.3": "APDU-Delivery-Info",
}
# Extensions that carry credentials: recorded by OID only, never stored or put on Kafka.
CREDENTIAL_OIDS: dict[str, str] = {"1.2.840.10003.8.1": "Z39.50 prompt (user id and password)"}


def decode_extensions(value: dict[str, Any]) -> list[dict[str, Any]]:
    """Every extension of an APDU (its `*-extensions` field), decoded where the OID is known."""
    out: list[dict[str, Any]] = []
    for field, items in value.items():
        if not field.endswith("-extensions") or not isinstance(items, list):
            continue
        for item in items:
            entry: dict[str, Any] = {
                "field": field,
                "identifier": item.get("identifier"),
                "critical": bool(item.get("critical", False)),
            }
            try:
                external = compiled().decode("External-X208", bytes(item["item"]))
            except Exception:  # an extension we cannot read is kept, not fatal
                entry["raw"] = bytes(item["item"]).hex()
                out.append(entry)
                continue
            oid = external.get("direct-reference")
            kind, data = external["encoding"]
            entry["oid"] = oid
            if oid in CREDENTIAL_OIDS:
                entry["redacted"] = CREDENTIAL_OIDS[oid]
            elif oid in EXTENSION_TYPES and kind == "single-ASN1-type":
                entry["type"] = EXTENSION_TYPES[oid]
                try:
                    decoded = compiled().decode(EXTENSION_TYPES[oid], bytes(data))
                except Exception:  # a known extension written wrongly is kept as it came
                    entry["raw"] = bytes(data).hex()
                else:
                    entry["value"] = _jsonable(decoded)
            else:
                entry["raw"] = (
                    bytes(data).hex() if isinstance(data, (bytes, bytearray)) else str(data)
                )
            out.append(entry)
    return out


def _text(value: Any) -> str | None:
    """The text of an ILL-String (a CHOICE of GeneralString and EDIFACTString)."""
    if isinstance(value, tuple) and len(value) == 2:
        return _text(value[1])
    return value.strip() or None if isinstance(value, str) else None


def _ill_string(text: str, field: str) -> tuple[str, str]:
    """An ILL-String as rshub writes it: GeneralString, which asn1tools writes as Latin-1."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as error:
        raise RenderError(
            f"ISO 10161 {field}: {text[error.start]!r} cannot be written as a GeneralString"
        ) from None
    return ("generalstring", text)


def iso_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def _money(amount: dict[str, Any] | None, where: str) -> Money | None:
    """An ISO 10161 Amount (a decimal string, optional ISO 4217 code) as canonical money."""
    if not amount or not amount.get("monetary-value"):
        return None
    raw = amount["monetary-value"]
    try:
        return Money(
            amount=parse_amount(raw.replace(",", ".")), currency=amount.get("currency-code")
        )
    except ValidationError as error:
        raise Iso10161Error(f"{where}: {violation(error).reason}") from None
    except ValueError:
        raise Iso10161Error(f"{where}/monetary-value: {shown(raw)!r} is not an amount") from None


def _amount(money: Money, field: str) -> dict[str, Any]:
    """Money as an ISO 10161 Amount; RenderError where it does not fit the Amount's sizes."""
    digits = f"{money.amount:f}"
    if len(digits) > AMOUNT_DIGITS:
        raise RenderError(f"ISO 10161 {field}: {digits} is longer than {AMOUNT_DIGITS} characters")
    amount: dict[str, Any] = {"monetary-value": digits}
    if money.currency:
        if len(money.currency) != CURRENCY_LENGTH or not money.currency.isascii():
            raise RenderError(f"ISO 10161 {field}: currency {money.currency!r} is not 3 letters")
        amount["currency-code"] = money.currency
    return amount


def _parse_date(text: str | None, where: str) -> datetime | None:
    if not text:
        return None
    try:
        day = date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        raise Iso10161Error(f"{where}: {text!r} is not an ISO-Date (YYYYMMDD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def system_symbol(system_id: dict[str, Any] | None) -> str | None:
    """The institution or person symbol of a System-Id, else its name."""
    if not system_id:
        return None
    for key in ("person-or-institution-symbol", "name-of-person-or-institution"):
        choice = system_id.get(key)
        if choice and _text(choice[1]):
            return _text(choice[1])
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    """The transaction-id as asn1tools wants it back (CHOICEs are 2-item tuples)."""
    if isinstance(value, dict):
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return (value[0], _from_jsonable(value[1]))
    return value


def event_of(name: str, value: dict[str, Any]) -> Event:
    if name in APDU_EVENTS:
        if name == "Shipped" and value.get("shipped-service-type") == "copy-non-returnable":
            return Event.COPY_COMPLETED
        return APDU_EVENTS[name]
    if name == "ILL-Answer":
        results = value.get("transaction-results")
        if results not in ANSWER_EVENTS:
            raise Iso10161Error(f"ILL-Answer with transaction-results {results!r}")
        return ANSWER_EVENTS[results]
    if name in NOTE_APDUS:
        fixed = NOTE_APDUS[name]
        if fixed is not None:
            return fixed
        qualifier = _text(value["transaction-id"].get("transaction-qualifier")) or ""
        return Event.LENDER_NOTE if parse_lender_request_id(qualifier) else Event.BORROWER_NOTE
    raise NotApplicable(f"{name} is not an ILL APDU rshub knows")


def to_canonical(name: str, value: dict[str, Any], sender: str = "") -> Message:
    """The canonical message of an APDU; Iso10161Error naming the element of a value out of
    the canonical model's bounds."""
    fields, elements = _fields(name, value, sender)
    try:
        return Message.model_validate(fields)
    except ValidationError as error:
        found = violation(error)
        if found.field == "extensions":  # the reason starts with the path in the APDU
            raise Iso10161Error(found.reason.removeprefix("iso10161/")) from None
        where = elements.get(found.field) or elements.get(found.field.split(".")[0], found.field)
        raise Iso10161Error(f"{where}: {found.reason}") from None


def _fields(name: str, value: dict[str, Any], sender: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The canonical fields of an APDU, and the APDU element each came from."""
    event = event_of(name, value)
    transaction_id = value["transaction-id"]
    fields: dict[str, Any] = {
        "event": event,
        "sender": sender,
        "source_protocol": "iso10161",
        "request_id": _text(transaction_id.get("transaction-qualifier")) or "",
        "from_agency": system_symbol(value.get("requester-id")),
        "to_agency": system_symbol(value.get("responder-id")),
    }
    elements = {
        **ELEMENTS,
        "from_agency": "requester-id",
        "to_agency": "responder-id",
        **{f"bibliographic.{field}": f"item-id/{key}" for key, field in ITEM_FIELDS.items()},
    }
    qualifier = fields["request_id"]
    lender_sent = (
        parse_lender_request_id(qualifier) is not None
        if event in EITHER_SIDE
        else SENDER[event] is Role.LENDER
    )
    if lender_sent:
        fields["from_agency"], fields["to_agency"] = fields["to_agency"], fields["from_agency"]
        elements.update(from_agency="responder-id", to_agency="requester-id")
    for field, places in DATES.items():
        for apdu, path in places:
            if apdu == name and _dig(value, path):
                fields[field] = _parse_date(_dig(value, path), "/".join(path))
                elements[field] = "/".join(path)
    if "answer" in value:
        fields["answer"] = bool(value["answer"])
    source = next((n for n in NOTES if value.get(n)), None)
    fields["note"] = _text(value[source]) if source else None
    elements["note"] = source or "note"
    if name in NOTE_APDUS and name != "Message":
        # Say what the APDU was: the other party may speak a protocol without it.
        fields["note"] = f"{name}: {fields['note']}" if fields["note"] else name
    if name == "ILL-Answer" and event is Event.UNFILLED:
        explanation = value.get("results-explanation")
        reason = (
            explanation[1].get("reason-unfilled")
            if explanation and explanation[0] == "unfilled-results"
            else None
        )
        numbers = compiled().types["Reason-Unfilled"].type.data_to_value
        fields["reason"] = (
            Reason.from_code(numbers[reason])
            if reason in numbers
            else Reason(name=value["transaction-results"])
        )
    if name == "Shipped":
        fields["cost"] = _money(_dig(value, ("supply-details", "cost")), ELEMENTS["cost"])
    if name == "ILL-Request":
        _request_fields(value, fields)
        fields["max_cost"] = _money(
            _dig(value, ("cost-info-type", "maximum-cost")), ELEMENTS["max_cost"]
        )
    if event in (Event.LOANED, Event.COPY_COMPLETED):
        # ISO 10161 Shipped names no item; the lender's transaction qualifier is what
        # identifies this loan in every later APDU, so it serves as the item id.
        fields["item_id"] = fields["request_id"] or None
    # Validated with the message (a bound broken names the element).
    fields["correlation"] = {
        "protocol": "iso10161",
        "request_id": fields["request_id"],
        "transaction_id": _jsonable(transaction_id),
    }
    elements["correlation"] = "transaction-id"
    plain = {k: v for k, v in value.items() if not k.endswith("-extensions")}
    fields["extensions"] = {
        "iso10161": {"apdu": name, **_jsonable(plain), "extensions": decode_extensions(value)}
    }
    return fields, elements


def _request_fields(value: dict[str, Any], fields: dict[str, Any]) -> None:
    item = value.get("item-id") or {}
    bib = {field: _text(item.get(key)) for key, field in ITEM_FIELDS.items()}
    bib["bibliographic_level"] = {"monograph": "Book", "serial": "Journal"}.get(
        str(item.get("item-type"))
    )
    fields["bibliographic"] = {k: v for k, v in bib.items() if v}
    services = value.get("iLL-service-type") or []
    loan = "copy-non-returnable" not in services or "loan" in services
    fields["service_type"] = ServiceType.LOAN if loan else ServiceType.COPY
    fields["request_format"] = RequestFormat.PHYSICAL if loan else RequestFormat.NON_RETURNABLE
    client = value.get("client-id") or {}
    fields["patron_id"] = _text(client.get("client-identifier")) or _text(client.get("client-name"))


class Iso10161Correlation(Correlation):
    """What an ISO 10161 party needs to recognise its transaction: the whole Transaction-Id
    it gave (initial requester, group qualifier, qualifier, sub-transaction qualifier), echoed
    in every APDU rshub sends it."""

    protocol: str = "iso10161"
    transaction_id: dict[str, Any]


def _transaction_id(
    message: Message, from_agency: str, correlation: Correlation | None = None
) -> dict[str, Any]:
    """The party's own transaction-id when it gave one; a new one otherwise (a new request
    to a lender)."""
    if correlation is not None and correlation.protocol == "iso10161":
        given = Iso10161Correlation.model_validate(correlation.model_dump())
        return cast(dict[str, Any], _from_jsonable(given.transaction_id))
    return {
        "initial-requester-id": _system(from_agency),
        "transaction-group-qualifier": _ill_string(
            message.transaction_id or message.request_id, "transaction-group-qualifier"
        ),
        "transaction-qualifier": _ill_string(message.request_id, "transaction-qualifier"),
    }


def _system(agency: str) -> dict[str, Any]:
    return {
        "person-or-institution-symbol": ("institution-symbol", _ill_string(agency, "System-Id"))
    }


def from_canonical(
    message: Message,
    from_agency: str,
    to_agency: str,
    lender_side: bool | None = None,
    correlation: Correlation | None = None,
) -> tuple[str, dict[str, Any]]:
    """The APDU name and value for a canonical message. `lender_side`: whether the sender
    is the lender (responder); None derives it from the event, and for an event either side
    may say (Lost, Damaged) from the request id as `to_canonical` reads it."""
    name = EVENT_APDUS.get(message.event)
    if name is None:
        raise NotApplicable(f"ISO 10161 has no APDU for {message.event.value}")
    if lender_side is None:
        if message.event in EITHER_SIDE:
            lender_side = parse_lender_request_id(message.request_id) is not None
        else:
            lender_side = SENDER[message.event] is Role.LENDER
    borrower_side = not lender_side
    requester, responder = (from_agency, to_agency) if borrower_side else (to_agency, from_agency)
    now = message.timestamp
    value: dict[str, Any] = {
        "protocol-version-num": 2,
        "transaction-id": _transaction_id(message, requester, correlation),
        "service-date-time": {
            "date-time-of-this-service": {"date": iso_date(now), "time": now.strftime("%H%M%S")}
        },
        "requester-id": _system(requester),
        "responder-id": _system(responder),
    }
    note = message.note
    shipped_type = "copy-non-returnable" if message.event is Event.COPY_COMPLETED else "loan"
    due = {"date-due-field": iso_date(message.due_date)} if message.due_date else None
    if name == "ILL-Request":
        bib = message.bibliographic or Bibliographic()
        item = {
            key: _ill_string(getattr(bib, field), f"item-id/{key}")
            for key, field in ITEM_FIELDS.items()
            if getattr(bib, field)
        }
        value.update(
            {
                "iLL-service-type": [
                    "copy-non-returnable" if message.service_type is ServiceType.COPY else "loan"
                ],
                "requester-optional-messages": {
                    "can-send-RECEIVED": True,
                    "can-send-RETURNED": True,
                    "requester-SHIPPED": "requires",
                    "requester-CHECKED-IN": "requires",
                },
                "item-id": item,
                "retry-flag": False,
                "forward-flag": False,
            }
        )
        if message.patron_id:
            value["client-id"] = {
                "client-identifier": _ill_string(message.patron_id, ELEMENTS["patron_id"])
            }
        if message.need_before:
            value["search-type"] = {"need-before-date": iso_date(message.need_before)}
        if message.max_cost:
            value["cost-info-type"] = {
                "maximum-cost": _amount(message.max_cost, ELEMENTS["max_cost"])
            }
        if note:
            value["requester-note"] = _ill_string(note, "requester-note")
    elif name == "ILL-Answer":
        if message.event is Event.WILL_SUPPLY:
            value["transaction-results"] = "will-supply"
        else:
            value["transaction-results"] = "unfilled"
            reasons = compiled().types["Reason-Unfilled"].type.value_to_data
            code = message.reason.code if message.reason and message.reason.code in reasons else 27
            value["results-explanation"] = ("unfilled-results", {"reason-unfilled": reasons[code]})
        if note:
            value["responder-note"] = _ill_string(note, "responder-note")
    elif name == "Shipped":
        value["shipped-service-type"] = shipped_type
        details: dict[str, Any] = {"date-shipped": iso_date(message.date_shipped or now)}
        if due:
            details["date-due"] = due
        if message.cost:
            details["cost"] = _amount(message.cost, ELEMENTS["cost"])
        value["supply-details"] = details
    elif name == "Received":
        value.update(
            {
                "date-received": iso_date(message.date_received or now),
                "shipped-service-type": shipped_type,
            }
        )
    elif name == "Returned":
        value["date-returned"] = iso_date(message.date_shipped or now)
    elif name == "Checked-In":
        value["date-checked-in"] = iso_date(message.date_received or now)
    elif name in ("Cancel-Reply", "Renew-Answer"):
        value["answer"] = bool(message.answer)
        if name == "Renew-Answer" and due:
            value["date-due"] = due
    elif name == "Renew" and message.desired_due_date:
        value["desired-due-date"] = iso_date(message.desired_due_date)
    elif name == "Overdue":
        value["date-due"] = due or {"date-due-field": iso_date(now)}
    if name == "Message":
        value["note"] = _ill_string(note or "", "note")
    elif note and name in ("Received", "Returned", "Cancel", "Renew"):
        value["requester-note"] = _ill_string(note, "requester-note")
    elif note and name in (
        "Shipped",
        "Checked-In",
        "Cancel-Reply",
        "Renew-Answer",
        "Recall",
        "Overdue",
    ):
        value["responder-note"] = _ill_string(note, "responder-note")
    return name, value


def render(
    message: Message,
    from_agency: str,
    to_agency: str,
    lender_side: bool | None = None,
    correlation: Correlation | None = None,
) -> bytes:
    """The APDU's BER for a canonical message: NotApplicable where ISO 10161 has no APDU,
    RenderError where a value does not fit it; nothing else (what the outbound side uses)."""
    name, value = from_canonical(message, from_agency, to_agency, lender_side, correlation)
    try:
        return codec.encode(name, value)
    except Iso10161Error as error:
        raise RenderError(f"ISO 10161 {name}: {error}") from None
