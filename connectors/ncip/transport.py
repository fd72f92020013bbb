"""NCIP over HTTP: the protocol's part of the inbound gateway and of outbound delivery.

Inbound: POST /ncip/{symbol}; the hub's gateway does authentication, audit and Kafka, this
module decodes and answers in NCIP (responses, Problems). Outbound: renders NCIP and reads the
partner's answer (a Problem in a 200 answer is a refusal, as Alma answers).
"""

from __future__ import annotations

from connectors.core.directory import Partner
from connectors.core.model import Message
from connectors.ncip import codec, tables, writer
from hub.gateway import Decoded, Endpoint, Fault, Refusal, Reply
from hub.outbound import Attempted, Outbound

STATE_PROBLEM = "State Transition Prohibited"

# Gateway faults in NCIP terms: (Problem type, scheme, HTTP status).
FAULTS: dict[Fault, tuple[str, str, int]] = {
    Fault.SYNTAX: ("Invalid Message Syntax Error", tables.SCHEME_MESSAGING, 400),
    Fault.TOO_LARGE: ("Invalid Message Syntax Error", tables.SCHEME_MESSAGING, 413),
    Fault.UNKNOWN_PARTNER: ("Unknown Agency", tables.SCHEME_GENERAL, 404),
    Fault.UNAUTHENTICATED: ("Agency Authentication Failed", tables.SCHEME_GENERAL, 401),
    Fault.UNKNOWN_REQUEST: ("Unknown Request", tables.SCHEME_GENERAL, 200),
    Fault.STATE: (STATE_PROBLEM, tables.SCHEME_RSHUB, 200),
    Fault.UNAVAILABLE: ("Temporary Processing Failure", tables.SCHEME_GENERAL, 503),
}


def _reply(problem: codec.Problem, response_name: str | None) -> Reply:
    return Reply(problem.http_status, writer.encode_problem(problem, response_name))


class NcipEndpoint(Endpoint):
    protocol = "ncip"

    def __init__(self, validate_xsd: bool = True) -> None:
        self.validate_xsd = validate_xsd

    def decode(self, body: bytes, sender: str, limit: int) -> Decoded:
        try:
            parsed = codec.parse(body, limit)
        except codec.NcipError as error:
            raise Refusal(
                f"{error.problem.type}: {error.problem.detail}", _reply(error.problem, None)
            ) from None
        try:
            message = codec.to_canonical(parsed, sender=sender)
        except codec.NcipError as error:
            raise Refusal(
                f"{error.problem.type}: {error.problem.detail}",
                _reply(error.problem, f"{parsed.name}Response"),
            ) from None
        if self.validate_xsd:
            from connectors.ncip.schema import diagnose

            errors = diagnose(parsed.root)
            if errors:
                message.extensions["ncip"]["schema_errors"] = errors[:5]
        return Decoded(message, parsed)

    def accept(self, decoded: Decoded, state: str | None = None) -> Reply:
        return Reply(200, writer.encode_response(decoded.context))

    def fault(
        self, fault: Fault, detail: str, decoded: Decoded | None = None, state: str | None = None
    ) -> Reply:
        kind, scheme, status = FAULTS[fault]
        element = "RequestId" if fault is Fault.UNKNOWN_REQUEST else None
        problem = codec.Problem(
            type=kind, scheme=scheme, detail=detail, element=element, http_status=status
        )
        return _reply(problem, f"{decoded.context.name}Response" if decoded else None)


class NcipOutbound(Outbound):
    protocol = "ncip"

    def render(self, message: Message, sender_agency: str, recipient: Partner) -> bytes:
        return writer.encode(
            message,
            from_agency=sender_agency,
            to_agency=recipient.agency_id,
            system_id=recipient.system_id,
        )

    def judge(self, status: int, body: bytes, limit: int) -> Attempted:
        try:
            response = codec.read_response(body, limit)
        except codec.NcipError as error:
            return Attempted(False, False, f"HTTP {status}, unreadable answer: {error}")
        if response.problems:
            text = "; ".join(f"{p.type}: {p.detail}".rstrip(": ") for p in response.problems)
            return Attempted(False, False, f"NCIP Problem: {text}")
        if status >= 400:
            return Attempted(False, False, f"HTTP {status}")
        due = f", due {response.due_date.isoformat()}" if response.due_date else ""
        return Attempted(True, False, f"HTTP {status} {response.name}{due}")
