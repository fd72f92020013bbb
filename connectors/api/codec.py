"""The JSON API's codec (sans-IO): the body of an API call <-> canonical messages.

Inbound, the hub's API (hub.ops.api) hands `Intake.take` either the client's own body of
`POST /api/v1/requests` (a `PlaceRequest`) or, for an action, the `ActionCall` it wrote from
the URL and the client's body; so an API request is audited, addressed, made durable and
answered exactly like a partner's message. Refusals and faults are RFC 9457 problem
documents (`application/problem+json`) that name the field at fault.

Outbound, a step for an API borrower is rendered as JSON; the API's sender keeps it for the
client, who reads it back with `GET /api/v1/requests/{id}` (or is told by its webhooks).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.api import patron
from connectors.api.models import ActionCall, PlaceRequest
from connectors.core.contract import Answer, Attempt, Decoded, Fault, Limits, Outgoing, Refusal
from connectors.core.model import (
    EITHER_SIDE,
    SENDER,
    Bibliographic,
    Correlation,
    Event,
    Message,
    NotApplicable,
    RequestFormat,
    Role,
    ServiceType,
    shown,
)

PROTOCOL = "api"
# The canonical request fields a placed request carries (PlaceRequest is the canonical request:
# every bibliographic field, the patron, service, format, pickup, need-before, both delivery
# addresses, loan condition, maximum cost, note). tests/test_fidelity_matrix.py proves each
# arrives where the lender's protocol carries it.
CARRIES: frozenset[str] = frozenset(
    {f"bibliographic.{name}" for name in Bibliographic.model_fields}
    | {
        "patron_id",
        "patron_name",
        "patron_email",
        "delivery_address",
        "delivery_email",
        "pickup_location",
        "service_type",
        "request_format",
        "loan_condition",
        "need_before",
        "max_cost",
        "note",
    }
)
JSON = "application/json"
PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://rshub.invalid/problems/"  # a URI per kind of problem (RFC 9457 3.1.1)

STATUS: dict[Fault, int] = {
    Fault.SYNTAX: 422,
    Fault.TOO_LARGE: 413,
    Fault.UNKNOWN_PARTNER: 401,
    Fault.UNAUTHENTICATED: 401,
    Fault.UNKNOWN_REQUEST: 404,
    Fault.STATE: 409,
    Fault.UNAVAILABLE: 503,
}
TITLE: dict[Fault, str] = {
    Fault.SYNTAX: "the request body is not valid",
    Fault.TOO_LARGE: "the request body is too large",
    Fault.UNKNOWN_PARTNER: "the client is not known",
    Fault.UNAUTHENTICATED: "the credentials were not accepted",
    Fault.UNKNOWN_REQUEST: "no such request",
    Fault.STATE: "the request cannot take this step in its state",
    Fault.UNAVAILABLE: "the hub cannot store messages now; try again",
}
# An action's canonical event: what the borrower says (received and returned are for a
# borrower with no protocol of its own, which tells the lender through the hub).
ACTION_EVENT: dict[str, Event] = {
    "cancel": Event.CANCEL,
    "renew": Event.RENEW,
    "received": Event.RECEIVED,
    "returned": Event.SHIPPED_RETURN,
}
# What the lifecycle may tell a borrower: what lenders say, and what either side may (the
# model's SENDER table says who says what); each rendered as JSON for the client.
TO_BORROWER = frozenset(
    {e for e, role in SENDER.items() if role is Role.LENDER} | (EITHER_SIDE - {Event.STATUS_QUERY})
)


def problem(
    status: int,
    title: str,
    detail: str,
    kind: str,
    errors: list[dict[str, str]] | None = None,
    **more: Any,
) -> Answer:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in more.items() if v is not None})
    return Answer(json.dumps(body).encode(), PROBLEM, status)


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Each violation with the JSON path of its field ("bibliographic.isbn", "patron")."""
    found = []
    for item in error.errors(include_url=False, include_input=False)[:20]:
        path = ".".join(str(part) for part in item["loc"]) or "(body)"
        found.append({"field": path, "message": item["msg"].removeprefix("Value error, ")})
    return found


def invalid(errors: list[dict[str, str]]) -> Refusal:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    answer = problem(422, TITLE[Fault.SYNTAX], detail, Fault.SYNTAX.value, errors)
    return Refusal(detail, answer, "parse")


def document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (Refusal naming the body otherwise)."""
    try:
        found = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise invalid([{"field": "(body)", "message": f"not JSON: {shown(str(error))}"}]) from None
    if not isinstance(found, dict):
        raise invalid([{"field": "(body)", "message": "a JSON object is expected"}])
    return found


def parse(found: dict[str, Any], model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(found)
    except ValidationError as error:
        raise invalid(field_errors(error)) from None


def to_request(call: PlaceRequest, sender: str) -> Message:
    bib = call.bibliographic
    if not (bib.title or bib.title_of_component or bib.identified):
        raise invalid([{"field": "bibliographic", "message": "a title or an identifier is needed"}])
    copy = call.service is ServiceType.COPY
    patron = call.patron
    return Message(
        event=Event.REQUEST,
        sender=sender,
        request_id=call.request_id,
        source_protocol=PROTOCOL,
        patron_id=patron.id if patron else None,
        patron_name=patron.name if patron else None,
        patron_surname=patron.surname if patron else None,
        patron_given_name=patron.given_name if patron else None,
        patron_email=patron.email if patron else None,
        service_type=call.service,
        request_format=call.format or (RequestFormat.DIGITAL if copy else RequestFormat.PHYSICAL),
        bibliographic=Bibliographic.model_validate(bib.model_dump(exclude_unset=True)),
        need_before=call.need_before,
        pickup_location=call.pickup_location,
        delivery_email=call.delivery_email,
        delivery_address=call.delivery_address,
        loan_condition=call.loan_condition,
        max_cost=call.max_cost,
        note=call.note,
        correlation=Correlation(protocol=PROTOCOL, request_id=call.request_id),
    )


def to_action(call: ActionCall, sender: str) -> Message:
    return Message(
        event=ACTION_EVENT[call.action],
        sender=sender,
        request_id=call.request_id,
        source_protocol=PROTOCOL,
        note=call.note,
        desired_due_date=call.desired_due_date if call.action == "renew" else None,
    )


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class ApiCodec:
    protocol = PROTOCOL
    content_type = JSON
    events_in = frozenset({Event.REQUEST, *ACTION_EVENT.values()})
    events_out = TO_BORROWER
    # The API is a borrower's channel: the lender's side of a loan is not offered on it.
    not_applicable = frozenset(set(Event) - TO_BORROWER)
    # The patron's status page (the hub's API serves it behind an unguessable link).
    patron_pages = patron.PatronPages()

    # --- inbound ---
    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Any]:
        if len(body) > limits.max_body_bytes:
            detail = f"body of {len(body)} bytes exceeds the limit of {limits.max_body_bytes}"
            raise Refusal(detail, self.fault(Fault.TOO_LARGE, detail))
        found = document(body)
        # Only the hub's API writes an ActionCall; it refuses a client's request body that
        # has an `action` (hub.ops.api), so a request cannot pass for an action.
        is_action = "action" in found
        call = parse(found, ActionCall if is_action else PlaceRequest)
        try:
            message = to_action(call, sender) if is_action else to_request(call, sender)
        except ValidationError as error:
            raise invalid(field_errors(error)) from None
        return Decoded(message, call)

    def accept(self, decoded: Decoded[Any], state: str | None = None) -> Answer:
        """The hub's API adds the transaction id (derived with the deployment's secret,
        which a codec does not read)."""
        message = decoded.message
        body = {
            "request_id": message.request_id,
            "state": state,
            "accepted": message.event.value,
        }
        status = 201 if message.event is Event.REQUEST else 202
        return Answer(json.dumps(body).encode(), JSON, status)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Any] | None = None,
        state: str | None = None,
    ) -> Answer:
        return problem(STATUS[fault], TITLE[fault], detail, fault.value, state=state)

    # --- outbound ---
    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event not in TO_BORROWER:
            raise NotApplicable(f"the API tells borrowers, not lenders: {message.event.value}")
        correlation = outgoing.correlation
        step = {
            "event": message.event.value,
            "request_id": correlation.request_id if correlation else message.request_id,
            "state": outgoing.state,
            "due_date": _moment(message.due_date),
            "date_shipped": _moment(message.date_shipped),
            "answer": message.answer,
            "reason": message.reason.name if message.reason else None,
            "note": message.note,
            "at": _moment(message.timestamp),
        }
        return json.dumps({k: v for k, v in step.items() if v is not None}).encode()

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        if status is not None and 200 <= status < 300:
            return Attempt(True, False, f"HTTP {status}", body)
        retry = status is None or status in (408, 425, 429) or status >= 500
        return Attempt(False, retry, f"HTTP {status}" if status else "no answer", body)

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        try:
            found = json.loads(body)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None


CODEC = ApiCodec()
