"""ISO 18626 over HTTP: the protocol's part of the inbound gateway and of outbound delivery.

Every message is answered with its Confirmation: OK, or ERROR with the errorType its defect
deserves. Outbound, a Confirmation with messageStatus ERROR is a refusal (not retried).
"""

from __future__ import annotations

from connectors.core.directory import Partner
from connectors.core.model import Message
from connectors.iso18626 import codec, writer
from hub.gateway import Decoded, Endpoint, Fault, Refusal, Reply
from hub.outbound import Attempted, Outbound

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


class Iso18626Endpoint(Endpoint):
    protocol = "iso18626"

    def __init__(self, validate_xsd: bool = True) -> None:
        self.validate_xsd = validate_xsd

    def decode(self, body: bytes, sender: str, limit: int) -> Decoded:
        parsed = None
        try:
            parsed = codec.parse(body, limit)
            message = codec.to_canonical(parsed, sender=sender)
        except codec.Iso18626Error as error:
            reply = Reply(
                error.http_status,
                writer.confirm(parsed, error.error_type, error.value, kind=error.kind),
            )
            raise Refusal(f"{error.error_type}: {error.value}", reply) from None
        if self.validate_xsd:
            from connectors.iso18626.schema import diagnose

            errors = diagnose(parsed.root, parsed.version)
            if errors:
                message.extensions["iso18626"]["schema_errors"] = errors[:5]
        return Decoded(message, parsed)

    def accept(self, decoded: Decoded, state: str | None = None) -> Reply:
        return Reply(200, writer.confirm(decoded.context))

    def fault(
        self, fault: Fault, detail: str, decoded: Decoded | None = None, state: str | None = None
    ) -> Reply:
        parsed = decoded.context if decoded else None
        if fault is Fault.STATE:
            kind = parsed.kind if parsed else "request"
            return Reply(
                200, writer.confirm(parsed, STATE_FAULTS.get(kind, "UnrecognisedDataValue"), detail)
            )
        error_type, status = FAULTS[fault]
        return Reply(status, writer.confirm(parsed, error_type, detail))


class Iso18626Outbound(Outbound):
    protocol = "iso18626"

    def render(self, message: Message, sender_agency: str, recipient: Partner) -> bytes:
        return writer.encode(
            message,
            from_agency=sender_agency,
            to_agency=recipient.agency_id,
            version=recipient.iso18626_version,
        )

    def judge(self, status: int, body: bytes, limit: int) -> Attempted:
        try:
            confirmation = codec.read_confirmation(body, limit)
        except codec.Iso18626Error as error:
            return Attempted(False, False, f"HTTP {status}, unreadable confirmation: {error}")
        if not confirmation.ok:
            return Attempted(
                False,
                False,
                f"ISO 18626 ERROR {confirmation.error_type}: "
                f"{confirmation.error_value or ''}".rstrip(": "),
            )
        if status >= 400:
            return Attempted(False, False, f"HTTP {status}")
        return Attempted(True, False, f"HTTP {status} {confirmation.kind} OK")
