"""ISO 18626 over HTTP (ReShare, crosslink), as a connector.

Every message is answered with its Confirmation: OK, or ERROR with the errorType its defect
deserves. Outbound, a Confirmation with messageStatus ERROR is a refusal (not retried).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.contract import (
    Answer,
    Attempt,
    Connector,
    Decoded,
    Fault,
    HttpInbound,
    Limits,
    Outgoing,
    Refusal,
)
from connectors.core.model import Event
from connectors.http import http_sender
from connectors.iso18626 import codec, tables, writer
from connectors.xsd_sampling import SchemaSampler

CONTENT_TYPE = "application/xml; charset=utf-8"


_xsd = SchemaSampler()


# Gateway faults in ISO 18626 terms: (errorType, HTTP status).
FAULTS: dict[Fault, tuple[str, int]] = {
    Fault.SYNTAX: ("BadlyFormedMessage", 400),
    Fault.TOO_LARGE: ("BadlyFormedMessage", 413),
    Fault.UNKNOWN_PARTNER: ("UnrecognisedDataValue", 404),
    Fault.UNAUTHENTICATED: ("UnrecognisedDataValue", 401),
    Fault.UNKNOWN_REQUEST: ("UnrecognisedDataValue", 200),
    # ISO 18626 has no error type for "try again later": HTTP 503 says it, errorValue explains.
    Fault.UNAVAILABLE: ("UnrecognisedDataValue", 503),
}
# A step the transaction's state does not allow, by message kind.
STATE_FAULTS: dict[str, str] = {
    "request": "UnrecognisedDataValue",  # a request id already used for another request
    "supplyingAgencyMessage": "UnsupportedReasonForMessageType",
    "requestingAgencyMessage": "UnsupportedActionType",
}


class Iso18626Options(BaseModel):
    """An ISO 18626 partner's settings in the directory (`options:`)."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(
        "1.2", pattern=r"^(1\.2|2021-2)$", description="ISO 18626 version rshub writes to it"
    )
    # agencyIdType is a scheme value (ISIL, OCLC symbol, a consortium's own): an agency id
    # is labelled with what it is, never ISIL by default for ids that are none. An agency id
    # written `TYPE:value` in the directory names its type itself.
    agency_id_type: str = Field(
        "ISIL", min_length=1, description="agencyIdType of the partner's agency id"
    )
    own_agency_id_type: str = Field(
        "ISIL", min_length=1, description="agencyIdType of the id rshub uses towards it"
    )


Context = codec.Parsed


class Iso18626Codec:
    protocol = "iso18626"
    content_type = CONTENT_TYPE
    events_in = (
        frozenset(e for _r, _s, e in tables.SUPPLIER)
        | frozenset(tables.ACTIONS.values())
        | frozenset(tables.REQUEST_TYPE_EVENTS.values())
        | {Event.REQUEST}
    )
    events_out = (
        frozenset(tables.SUPPLIER_OUT)
        | frozenset(tables.ACTION_OUT)
        | frozenset(tables.NOTIFIED)
        | {Event.REQUEST}
    )
    not_applicable = frozenset(Event) - events_out

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Context]:
        parsed = None
        try:
            parsed = codec.parse(body, limits.max_body_bytes)
            message = codec.to_canonical(parsed, sender=sender)
        except codec.Iso18626Error as error:
            answer = Answer(
                writer.confirm(parsed, error.error_type, error.value, kind=error.kind),
                CONTENT_TYPE,
                error.http_status,
            )
            raise Refusal(f"{error.error_type}: {error.value}", answer) from None
        if limits.validate_xsd:
            from connectors.iso18626.schema import diagnose

            errors = _xsd.errors(sender, parsed.kind, lambda: diagnose(parsed.root, parsed.version))
            if errors:
                message.extensions["iso18626"]["schema_errors"] = errors[:5]
        return Decoded(message, parsed)

    def accept(self, decoded: Decoded[Context], state: str | None = None) -> Answer:
        return Answer(writer.confirm(decoded.context), CONTENT_TYPE)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Context] | None = None,
        state: str | None = None,
    ) -> Answer:
        parsed = decoded.context if decoded else None
        if fault is Fault.STATE:
            kind = parsed.kind if parsed else "request"
            error_type = STATE_FAULTS.get(kind, "UnrecognisedDataValue")
            return Answer(writer.confirm(parsed, error_type, detail), CONTENT_TYPE)
        error_type, status = FAULTS[fault]
        return Answer(writer.confirm(parsed, error_type, detail), CONTENT_TYPE, status)

    def render(self, outgoing: Outgoing) -> bytes:
        options = Iso18626Options.model_validate(outgoing.recipient.options)
        return writer.encode(
            outgoing.message,
            from_agency=outgoing.sender_agency,
            to_agency=outgoing.recipient.agency_id,
            version=options.version,
            agency_types=(options.own_agency_id_type, options.agency_id_type),
            state=outgoing.state,
            to_borrower=outgoing.to_borrower,
        )

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        try:
            confirmation = codec.read_confirmation(body, len(body) + 1)
        except codec.Iso18626Error as error:
            return Attempt(False, False, f"HTTP {status}, unreadable confirmation: {error}")
        if not confirmation.ok:
            return Attempt(
                False,
                False,
                f"ISO 18626 ERROR {confirmation.error_type}: "
                f"{confirmation.error_value or ''}".rstrip(": "),
            )
        if status is not None and status >= 400:
            return Attempt(False, False, f"HTTP {status}")
        return Attempt(True, False, f"HTTP {status} {confirmation.kind} OK", answer=body)

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        try:
            return codec.read_confirmation(body).model_dump()
        except codec.Iso18626Error:
            return None


CONNECTOR: Connector[Iso18626Options, BaseModel] = Connector(
    name="iso18626",
    codec=Iso18626Codec(),
    http=HttpInbound(),
    sender=http_sender,
    options=Iso18626Options,
    describe="ISO 18626 over HTTP (ReShare, crosslink)",
)
