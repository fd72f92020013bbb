"""NCIP 2.0 over HTTP, peer to peer (Alma's P2P profile), as a connector.

Inbound: POST /ncip/{symbol}; the codec decodes and answers in NCIP (responses, Problems).
Outbound: renders NCIP and reads the partner's answer (a Problem in a 200 answer is a
refusal, as Alma answers).
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
from connectors.ncip import codec, tables, writer
from connectors.xsd_sampling import SAMPLE_EVERY, SchemaSampler

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
CONTENT_TYPE = "application/xml; charset=utf-8"


XSD_SAMPLE_EVERY = SAMPLE_EVERY
_xsd = SchemaSampler()


class NcipOptions(BaseModel):
    """A NCIP partner's settings in the directory (`options:`)."""

    model_config = ConfigDict(extra="forbid")
    system_id: str = Field("RSHUB", description="FromSystemId rshub uses towards this partner")


def _answer(problem: codec.Problem, response_name: str | None) -> Answer:
    return Answer(writer.encode_problem(problem, response_name), CONTENT_TYPE, problem.http_status)


class NcipCodec:
    protocol = "ncip"
    content_type = CONTENT_TYPE
    events_in = frozenset(tables.PLAIN.values()) | frozenset(tables.BY_NOTICE.values())
    events_out = frozenset(tables.ENCODE)
    # NCIP P2P has no message for these: the outbound side reports them not applicable
    # rather than invent one (WillSupply, Overdue, notes, and the evidence events).
    not_applicable = frozenset(Event) - events_out

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[codec.Parsed]:
        try:
            parsed = codec.parse(body, limits.max_body_bytes)
        except codec.NcipError as error:
            raise Refusal(
                f"{error.problem.type}: {error.problem.detail}", _answer(error.problem, None)
            ) from None
        try:
            message = codec.to_canonical(parsed, sender=sender)
        except codec.NcipError as error:
            raise Refusal(
                f"{error.problem.type}: {error.problem.detail}",
                _answer(error.problem, f"{parsed.name}Response"),
            ) from None
        if limits.validate_xsd:
            from connectors.ncip.schema import diagnose

            errors = _xsd.errors(sender, parsed.name, lambda: diagnose(parsed.root))
            if errors:
                message.extensions["ncip"]["schema_errors"] = errors[:5]
        return Decoded(message, parsed)

    def accept(self, decoded: Decoded[codec.Parsed], state: str | None = None) -> Answer:
        return Answer(writer.encode_response(decoded.context), CONTENT_TYPE)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[codec.Parsed] | None = None,
        state: str | None = None,
    ) -> Answer:
        kind, scheme, status = FAULTS[fault]
        element = "RequestId" if fault is Fault.UNKNOWN_REQUEST else None
        problem = codec.Problem(
            type=kind, scheme=scheme, detail=detail, element=element, http_status=status
        )
        return _answer(problem, f"{decoded.context.name}Response" if decoded else None)

    def render(self, outgoing: Outgoing) -> bytes:
        options = NcipOptions.model_validate(outgoing.recipient.options)
        return writer.encode(
            outgoing.message,
            from_agency=outgoing.sender_agency,
            to_agency=outgoing.recipient.agency_id,
            system_id=options.system_id,
        )

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        try:
            response = codec.read_response(body, len(body) + 1)
        except codec.NcipError as error:
            return Attempt(False, False, f"HTTP {status}, unreadable answer: {error}")
        if response.problems:
            text = "; ".join(f"{p.type}: {p.detail}".rstrip(": ") for p in response.problems)
            return Attempt(False, False, f"NCIP Problem: {text}")
        if status is not None and status >= 400:
            return Attempt(False, False, f"HTTP {status}")
        due = f", due {response.due_date.isoformat()}" if response.due_date else ""
        return Attempt(True, False, f"HTTP {status} {response.name}{due}", answer=body)

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        try:
            if not codec.parse(body).is_response:
                return None
            return codec.read_response(body).model_dump()
        except codec.NcipError:
            return None


CONNECTOR: Connector[NcipOptions, BaseModel] = Connector(
    name="ncip",
    codec=NcipCodec(),
    http=HttpInbound(),
    sender=http_sender,
    options=NcipOptions,
    describe="NCIP 2.0 over HTTP (Alma peer to peer)",
    request_needs=tuple(field for field, _path in tables.WRITE_REQUIRED[Event.REQUEST]),
)
