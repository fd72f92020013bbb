"""ISO 10161 APDUs <-> canonical messages, as tables. Sans-IO.

Which APDU is which event, where each canonical field stands in each APDU, and the
ILL-Answer results. The whole decoded APDU is kept in `extensions["iso10161"]`, so nothing a
partner sent is lost; the borrower's own transaction-id travels with its transaction so every
APDU rshub sends back carries it unchanged.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from pydantic import ValidationError

from connectors.core import fidelity
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
from connectors.iso10161.asn1 import Deviation, compiled
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

# Item-Id field -> canonical bibliographic field. ISO 10161's `pagination` is the pages of the
# item wanted (an ILL request names what to copy), so it is the canonical pages requested; the
# item's extent as catalogued has no Item-Id field.
ITEM_FIELDS: dict[str, str] = {
    "title": "title",
    "author": "author",
    "sub-title": "subtitle",
    "place-of-publication": "place_of_publication",
    "publisher": "publisher",
    "series-title-number": "series_title_number",
    "edition": "edition",
    "publication-date": "publication_date",
    "publication-date-of-component": "publication_date_of_component",
    "author-of-article": "author_of_component",
    "title-of-article": "title_of_component",
    "pagination": "pages_requested",
    "iSBN": "isbn",
    "iSSN": "issn",
    "call-number": "call_number",
}
# Item-Id volume-issue is one text: the parts of the citation are written in it labelled
# ("Vol. 84, no. 3, pt. B, ch. 2") and read back by these labels; a text without them (a
# partner's "84(3)") is the volume as given.
VOLUME_ISSUE: dict[str, str] = {
    "volume": "Vol. ",
    "issue": "no. ",
    "part": "pt. ",
    "chapter": "ch. ",
}
# Item-Id additional-no-letters ("additional numbers and letters"): the identifiers Item-Id has
# no field for, labelled, as a person reads them ("OCLC 123456; DOI 10.1000/xyz").
ADDITIONAL_NUMBERS: dict[str, str] = {
    "oclc_number": "OCLC ",
    "lccn": "LCCN ",
    "doi": "DOI ",
    "pmid": "PMID ",
    "eissn": "eISSN ",
    "ean": "EAN ",
    "local_id": "Supplier record id ",
}
NUMBER_SEPARATOR = "; "
# Item-Id held-medium-type (Medium-Type ENUMERATED): the names are written and read as they are.
MEDIUM_TYPES = frozenset(
    {
        "printed",
        "microform",
        "film-or-video-recording",
        "audio-recording",
        "machine-readable",
        "other",
    }
)
ITEM_TYPES: dict[str, str] = {"monograph": "Book", "serial": "Journal", "other": "Other"}
ITEM_TYPES_OUT: dict[str, str] = {level: kind for kind, level in ITEM_TYPES.items()}
# Postal-Address fields, in the order an address is written; rshub's free-text address goes
# first line to street-and-number, last line to city, the lines between to
# extended-postal-delivery-address.
POSTAL_FIELDS: tuple[str, ...] = (
    "street-and-number",
    "extended-postal-delivery-address",
    "post-office-box",
    "postal-code",
    "city",
    "region",
    "country",
)
# System-Address telecom-service-identifier rshub writes for an e-mail address.
EMAIL_SERVICE = "EMAIL"

# Canonical fields of a request ISO 10161 carries in its own elements (the rest goes into
# requester-note, readably: connectors.core.fidelity).
CARRIES: frozenset[str] = frozenset(
    {
        *(f"bibliographic.{field}" for field in ITEM_FIELDS.values()),
        *(f"bibliographic.{field}" for field in VOLUME_ISSUE),
        *(f"bibliographic.{field}" for field in ADDITIONAL_NUMBERS),
        "bibliographic.medium_type",
        "bibliographic.bibliographic_level",
        "patron_id",
        "patron_name",
        "delivery_address",
        "delivery_email",
        "service_type",
        "request_format",
        "need_before",
        "max_cost",
        "note",
    }
)

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
    """The text of an ILL-String (a CHOICE of GeneralString and EDIFACTString). GeneralString
    bytes are read as UTF-8 when they are UTF-8 (what yaz and rshub write), else as Latin-1
    (older peers): asn1tools hands them over as Latin-1, so valid UTF-8 is recovered from it.
    Latin-1 text that happens to be valid UTF-8 is rare (it takes "Ã" before a symbol)."""
    if isinstance(value, tuple) and len(value) == 2:
        return _text(value[1])
    if not isinstance(value, str):
        return None
    if not value.isascii():
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            value = value.encode("latin-1").decode("utf-8")
    return value.strip() or None


def _ill_string(text: str, field: str) -> tuple[str, str]:
    """An ILL-String as rshub writes it: a GeneralString holding UTF-8 (docs/translation.md:
    why). asn1tools writes a GeneralString's characters as Latin-1 bytes, so the UTF-8 bytes
    are handed to it as the Latin-1 characters they read as; any text can be sent."""
    del field  # every text fits: the field name no longer names a failure
    return ("generalstring", text.encode("utf-8").decode("latin-1"))


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


# A monetary-value as real systems write it: a symbol or code before or after the number
# ("$35", "$40.00", "35 EUR"), thousands separators. Costs are informative: a value read this
# way, or not at all, never refuses the APDU (it is kept whole in extensions, with a diagnostic).
_LOOSE_AMOUNT = re.compile(
    r"\s*(?P<before>[^\d\s.,]*)\s*(?P<number>[\d.,]+)\s*(?P<after>[^\d\s.,]*)\s*"
)


def _loose_money(amount: dict[str, Any] | None, where: str, diagnostics: list[str]) -> Money | None:
    try:
        return _money(amount, where)
    except Iso10161Error as error:
        raw = str((amount or {}).get("monetary-value", ""))
        found = _LOOSE_AMOUNT.fullmatch(raw)
        if found is not None:
            number = found["number"]
            number = number.replace(",", "") if "." in number else number.replace(",", ".")
            label = found["before"] or found["after"]
            code = amount.get("currency-code") if amount else None
            if not code and len(label) == CURRENCY_LENGTH and label.isalpha():
                code = label.upper()
            with contextlib.suppress(ValueError, ValidationError):
                money = Money(amount=parse_amount(number), currency=code)
                diagnostics.append(f"{where}/monetary-value {shown(raw)!r} read as {money.amount}")
                return money
        diagnostics.append(f"{error} (ignored: the cost is informative)")
        return None


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


def to_canonical(
    name: str, value: dict[str, Any], sender: str = "", left_out: Sequence[Deviation] = ()
) -> Message:
    """The canonical message of an APDU; Iso10161Error naming the element of a value out of
    the canonical model's bounds. `left_out`: what `codec.read` left out, kept for staff."""
    fields, elements = _fields(name, value, sender)
    _keep_left_out(fields["extensions"], left_out)
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
    diagnostics: list[str] = []
    if name == "Shipped":
        fields["cost"] = _loose_money(
            _dig(value, ("supply-details", "cost")), ELEMENTS["cost"], diagnostics
        )
    if name == "ILL-Request":
        _request_fields(value, fields)
        fields["max_cost"] = _loose_money(
            _dig(value, ("cost-info-type", "maximum-cost")), ELEMENTS["max_cost"], diagnostics
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
    if diagnostics:
        fields["extensions"]["diagnostics"] = diagnostics
    return fields, elements


def _keep_left_out(extensions: dict[str, Any], left_out: Sequence[Deviation]) -> None:
    """Each element left out as a diagnostic, and as received (hex) beside the APDU."""
    if not left_out:
        return
    extensions.setdefault("diagnostics", []).extend(
        f"{deviation.element}: left out, it deviates from ISO 10161 ({deviation.reason})"
        for deviation in left_out
    )
    extensions["iso10161"]["left-out"] = [
        {"element": deviation.element, "reason": deviation.reason, "ber": deviation.raw.hex()}
        for deviation in left_out
    ]


def _request_fields(value: dict[str, Any], fields: dict[str, Any]) -> None:
    item = value.get("item-id") or {}
    bib = {field: _text(item.get(key)) for key, field in ITEM_FIELDS.items()}
    bib.update(_volume_issue(_text(item.get("volume-issue"))))
    bib.update(_additional_numbers(_text(item.get("additional-no-letters"))))
    bib["bibliographic_level"] = ITEM_TYPES.get(str(item.get("item-type")))
    medium = item.get("held-medium-type")
    bib["medium_type"] = medium if isinstance(medium, str) else None
    fields["bibliographic"] = {k: v for k, v in bib.items() if v}
    services = value.get("iLL-service-type") or []
    loan = "copy-non-returnable" not in services or "loan" in services
    fields["service_type"] = ServiceType.LOAN if loan else ServiceType.COPY
    fields["request_format"] = RequestFormat.PHYSICAL if loan else RequestFormat.NON_RETURNABLE
    client = value.get("client-id") or {}
    fields["patron_name"] = _text(client.get("client-name"))
    # A client-name alone also serves as the patron id (as before the name had a field).
    fields["patron_id"] = _text(client.get("client-identifier")) or fields["patron_name"]
    address = value.get("delivery-address") or {}
    postal = address.get("postal-address") or {}
    lines = [_text(postal.get(key)) for key in POSTAL_FIELDS]
    fields["delivery_address"] = "\n".join(line for line in lines if line) or None
    electronic = _text((address.get("electronic-address") or {}).get("telecom-service-address"))
    fields["delivery_email"] = electronic


def _volume_issue(text: str | None) -> dict[str, str]:
    """The labelled parts of a volume-issue text; a text without labels is the volume."""
    if not text:
        return {}
    found: dict[str, str] = {}
    for piece in text.split(", "):
        field = next((f for f, label in VOLUME_ISSUE.items() if piece.startswith(label)), None)
        if field is None or field in found:
            return {"volume": text}
        found[field] = piece.removeprefix(VOLUME_ISSUE[field])
    return found


def _additional_numbers(text: str | None) -> dict[str, str]:
    """Identifiers labelled in additional-no-letters; unlabelled text stays in extensions."""
    found: dict[str, str] = {}
    for piece in (text or "").split(NUMBER_SEPARATOR):
        for field, label in ADDITIONAL_NUMBERS.items():
            if piece.startswith(label) and field not in found:
                found[field] = piece.removeprefix(label)
                break
    return found


def _item_id(message: Message) -> dict[str, Any]:
    bib = message.bibliographic or Bibliographic()
    item: dict[str, Any] = {
        key: _ill_string(getattr(bib, field), f"item-id/{key}")
        for key, field in ITEM_FIELDS.items()
        if getattr(bib, field)
    }
    volume = ", ".join(
        f"{label}{getattr(bib, field)}"
        for field, label in VOLUME_ISSUE.items()
        if getattr(bib, field)
    )
    if volume:
        item["volume-issue"] = _ill_string(volume, "item-id/volume-issue")
    numbers = NUMBER_SEPARATOR.join(
        f"{label}{getattr(bib, field)}"
        for field, label in ADDITIONAL_NUMBERS.items()
        if getattr(bib, field)
    )
    if numbers:
        item["additional-no-letters"] = _ill_string(numbers, "item-id/additional-no-letters")
    if bib.bibliographic_level in ITEM_TYPES_OUT:
        item["item-type"] = ITEM_TYPES_OUT[bib.bibliographic_level]
    if bib.medium_type in MEDIUM_TYPES:
        item["held-medium-type"] = bib.medium_type
    return item


def _carried(message: Message) -> frozenset[str]:
    bib = message.bibliographic
    carried = CARRIES
    if bib is not None and bib.medium_type and bib.medium_type not in MEDIUM_TYPES:
        carried -= {"bibliographic.medium_type"}  # an enumeration: another medium is noted
    if message.max_cost is not None and not _fits(message.max_cost):
        carried -= {"max_cost"}
    return carried


def _cost_fits(message: Message) -> bool:
    return message.cost is None or _fits(message.cost)


def _fits(money: Money) -> bool:
    currency = money.currency
    currency_ok = currency is None or (len(currency) == CURRENCY_LENGTH and currency.isascii())
    return len(f"{money.amount:f}") <= AMOUNT_DIGITS and currency_ok


def _delivery_address(message: Message) -> dict[str, Any] | None:
    address: dict[str, Any] = {}
    if message.delivery_address:
        lines = [line.strip() for line in message.delivery_address.splitlines() if line.strip()]
        postal = {"street-and-number": _ill_string(lines[0], "delivery-address")}
        if len(lines) > 2:
            middle = "\n".join(lines[1:-1])
            postal["extended-postal-delivery-address"] = _ill_string(middle, "delivery-address")
        if len(lines) > 1:
            postal["city"] = _ill_string(lines[-1], "delivery-address")
        address["postal-address"] = postal
    if message.delivery_email:
        address["electronic-address"] = {
            "telecom-service-identifier": _ill_string(EMAIL_SERVICE, "delivery-address"),
            "telecom-service-address": _ill_string(message.delivery_email, "delivery-address"),
        }
    return address or None


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


def _shipped_type(message: Message) -> str:
    return "copy-non-returnable" if message.event is Event.COPY_COMPLETED else "loan"


def _due(message: Message) -> dict[str, Any] | None:
    return {"date-due-field": iso_date(message.due_date)} if message.due_date else None


def _request(message: Message, now: datetime) -> dict[str, Any]:
    service = "copy-non-returnable" if message.service_type is ServiceType.COPY else "loan"
    value: dict[str, Any] = {
        "iLL-service-type": [service],
        "requester-optional-messages": {
            "can-send-RECEIVED": True,
            "can-send-RETURNED": True,
            "requester-SHIPPED": "requires",
            "requester-CHECKED-IN": "requires",
        },
        "item-id": _item_id(message),
        "retry-flag": False,
        "forward-flag": False,
    }
    client = {
        key: _ill_string(text, key)
        for key, text in (
            ("client-name", message.patron_full_name),
            ("client-identifier", message.patron_id),
        )
        if text
    }
    optional = {
        "client-id": client or None,
        "delivery-address": _delivery_address(message),
        "search-type": (
            {"need-before-date": iso_date(message.need_before)} if message.need_before else None
        ),
        "cost-info-type": (
            {"maximum-cost": _amount(message.max_cost, ELEMENTS["max_cost"])}
            if message.max_cost and _fits(message.max_cost)
            else None
        ),
    }
    value.update({key: element for key, element in optional.items() if element})
    return value


def _answer(message: Message, now: datetime) -> dict[str, Any]:
    if message.event is Event.WILL_SUPPLY:
        return {"transaction-results": "will-supply"}
    reasons = compiled().types["Reason-Unfilled"].type.value_to_data
    code = message.reason.code if message.reason and message.reason.code in reasons else 27
    return {
        "transaction-results": "unfilled",
        "results-explanation": ("unfilled-results", {"reason-unfilled": reasons[code]}),
    }


def _shipped(message: Message, now: datetime) -> dict[str, Any]:
    details: dict[str, Any] = {"date-shipped": iso_date(message.date_shipped or now)}
    if due := _due(message):
        details["date-due"] = due
    if message.cost and _cost_fits(message):
        details["cost"] = _amount(message.cost, ELEMENTS["cost"])
    return {"shipped-service-type": _shipped_type(message), "supply-details": details}


def _renew_answer(message: Message, now: datetime) -> dict[str, Any]:
    due = _due(message)
    return {"answer": bool(message.answer), **({"date-due": due} if due else {})}


def _renew(message: Message, now: datetime) -> dict[str, Any]:
    wanted = message.desired_due_date
    return {"desired-due-date": iso_date(wanted)} if wanted else {}


# APDU -> the elements of its own, beyond the header every APDU has (`from_canonical`); an
# APDU not here has none (Cancel, Recall, Lost, Damaged, Message but for its note).
BUILDERS: dict[str, Callable[[Message, datetime], dict[str, Any]]] = {
    "ILL-Request": _request,
    "ILL-Answer": _answer,
    "Shipped": _shipped,
    "Received": lambda m, now: {
        "date-received": iso_date(m.date_received or now),
        "shipped-service-type": _shipped_type(m),
    },
    "Returned": lambda m, now: {"date-returned": iso_date(m.date_shipped or now)},
    "Checked-In": lambda m, now: {"date-checked-in": iso_date(m.date_received or now)},
    "Cancel-Reply": lambda m, now: {"answer": bool(m.answer)},
    "Renew-Answer": _renew_answer,
    "Renew": _renew,
    "Overdue": lambda m, now: {"date-due": _due(m) or {"date-due-field": iso_date(now)}},
}
# APDU -> the element its note goes in (what the APDU has no element for is noted there); an
# APDU not here carries no note. A Message is its note, so it has one even when empty.
NOTE_ELEMENTS: dict[str, str] = {
    "ILL-Request": "requester-note",
    "Received": "requester-note",
    "Returned": "requester-note",
    "Cancel": "requester-note",
    "Renew": "requester-note",
    "ILL-Answer": "responder-note",
    "Shipped": "responder-note",
    "Checked-In": "responder-note",
    "Cancel-Reply": "responder-note",
    "Renew-Answer": "responder-note",
    "Recall": "responder-note",
    "Overdue": "responder-note",
    "Message": "note",
}
ALWAYS_NOTED = frozenset({"Message"})


def _noted(name: str, message: Message) -> frozenset[str] | set[str]:
    """The canonical fields the APDU carries in elements, so its note leaves them out: a
    request's are `_carried`; a step's, its cost when the Amount can hold it."""
    if name == "ILL-Request":
        return _carried(message)
    return {"cost"} if _cost_fits(message) else set()


def _lender_side(message: Message, lender_side: bool | None) -> bool:
    """Whether the sender is the lender: as given; else from the event; for an event either
    side may say (Lost, Damaged), from the request id as `to_canonical` reads it."""
    if lender_side is not None:
        return lender_side
    if message.event in EITHER_SIDE:
        return parse_lender_request_id(message.request_id) is not None
    return SENDER[message.event] is Role.LENDER


def from_canonical(
    message: Message,
    from_agency: str,
    to_agency: str,
    lender_side: bool | None = None,
    correlation: Correlation | None = None,
) -> tuple[str, dict[str, Any]]:
    """The APDU name and value for a canonical message: the header every APDU has, the
    APDU's own elements (`BUILDERS`) and its note (`NOTE_ELEMENTS`). `lender_side`: whether
    the sender is the lender (responder); None derives it (`_lender_side`)."""
    name = EVENT_APDUS.get(message.event)
    if name is None:
        raise NotApplicable(f"ISO 10161 has no APDU for {message.event.value}")
    lender = _lender_side(message, lender_side)
    requester, responder = (to_agency, from_agency) if lender else (from_agency, to_agency)
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
    if builder := BUILDERS.get(name):
        value.update(builder(message, now))
    note = fidelity.note_for(message, _noted(name, message))
    element = NOTE_ELEMENTS.get(name)
    if element and (note or name in ALWAYS_NOTED):
        value[element] = _ill_string(note or "", element)
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
