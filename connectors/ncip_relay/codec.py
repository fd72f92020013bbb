"""The relay's sans-IO part: a broker's NCIP call -> the member it is for and the bytes that
member gets; the member's answer -> the bytes the broker gets; the relay's own Problems.

No I/O: `front.py` does the HTTP side through the hub's Intake, the hub's relay agent calls
the member. Reading is as tolerant as the peer NCIP codec's (its `parse` is reused); nothing
here applies the peer-to-peer field table (a Relais RequestItem without a Title is a valid
broker call: the Title rule is the P2P profile's).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from connectors import xmlsafe
from connectors.core.contract import Answer, Attempt, Decoded, Fault, Outgoing, Refusal
from connectors.core.directory import Directory, Partner
from connectors.core.model import Event, NotApplicable
from connectors.ncip import codec as ncip
from connectors.ncip_relay import tables as t
from connectors.ncip_relay import versions as v
from connectors.ncip_relay.options import RelayOptions, Role, Version

PROTOCOL = "ncip-relay"
CONTENT_TYPE = "application/xml; charset=utf-8"
Kind = tuple[str, str, int]


class RelayProblem(Exception):
    """A call the relay answers itself, with the Problem and the stage it failed at
    (parse, authenticate, address, relay)."""

    def __init__(
        self,
        kind: Kind,
        detail: str,
        stage: str = "parse",
        element: str | None = None,
        value: str | None = None,
        about: Call | Heard | None = None,
    ) -> None:
        super().__init__(f"{kind[0]}: {detail}")
        self.stage = stage
        # what was read of the call before it failed: the answer names its service and is
        # addressed back (an NCIP 1.0 answer must be a response with a ResponseHeader)
        self.about = about
        self.problem = ncip.Problem(
            type=kind[0],
            scheme=kind[1],
            http_status=kind[2],
            detail=detail,
            element=element,
            value=value,
        )


@dataclass(frozen=True)
class Heard:
    """What was read of a call the relay refuses: its service and header agencies."""

    service: str | None
    version: Version
    from_agency: str = ""
    to_agency: str = ""


@dataclass(frozen=True)
class Call:
    """A broker's call, read: the service, the version it came in, the call as a 2.0 tree,
    and the header values the answer is addressed back with."""

    service: str
    version: Version
    tree: etree._Element
    from_agency: str
    to_agency: str

    @property
    def body(self) -> etree._Element:
        return v._children(self.tree)[0]


def options(partner: Partner) -> RelayOptions:
    return RelayOptions.model_validate(partner.options)


def _agency(tree: etree._Element, holder: str) -> str:
    return v._text(v.child(tree, "InitiationHeader", holder, "AgencyId"))


def read_call(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> Call:
    """A broker's bytes as a call; RelayProblem if they are not a relayable NCIP call."""
    try:
        parsed = ncip.parse(body, limit)
    except ncip.NcipError as error:
        kind = t.TOO_LARGE if error.problem.http_status == 413 else t.SYNTAX
        raise RelayProblem(kind, error.problem.detail) from None
    heard = Heard(
        None if parsed.is_response else parsed.name,
        "1.0" if parsed.ncip1 else "2.0",
        parsed.agency("InitiationHeader", "FromAgencyId") or "",
        parsed.agency("InitiationHeader", "ToAgencyId") or "",
    )
    if parsed.is_response:
        raise RelayProblem(t.UNSUPPORTED, f"{parsed.name} is an answer, not a call", about=heard)
    if parsed.name not in t.SERVICES:
        raise RelayProblem(
            t.UNSUPPORTED,
            f"{parsed.name} is not relayed to members (relayed: {', '.join(t.SERVICES)})",
            element=parsed.name,
            about=heard,
        )
    tree = v.to_v2(parsed.root)
    body_element = v._children(tree)[0]
    if v.child(body_element, "InitiationHeader") is None:
        raise RelayProblem(
            t.NEEDED_DATA,
            f"{parsed.name} has no InitiationHeader",
            element="InitiationHeader",
            about=heard,
        )
    to_agency = _agency(body_element, "ToAgencyId")
    if not to_agency:
        raise RelayProblem(
            t.NEEDED_DATA,
            f"{parsed.name} names no member (InitiationHeader/ToAgencyId)",
            element="InitiationHeader/ToAgencyId/AgencyId",
            about=heard,
        )
    return Call(
        service=parsed.name,
        version="1.0" if parsed.ncip1 else "2.0",
        tree=tree,
        from_agency=_agency(body_element, "FromAgencyId"),
        to_agency=to_agency,
    )


def member_service(service: str, member_version: Version) -> str:
    """The service a member gets for a broker's call: the call's own, or the same event's
    service in NCIP 2 (tables.Service.v2_as: INN-Reach's ItemRequested is RequestItem)."""
    stand_in = t.SERVICES[service].v2_as
    return stand_in if stand_in and member_version == "2.0" else service


def member_secrets(directory: Directory) -> list[tuple[Partner, str, str, bool]]:
    """Each relay member's own secrets, for `rshub settings` and the warning at start:
    (member, option, where it is read from, whether it is set); never a value."""
    return [
        (partner, name, secret.source(), secret.value() is not None)
        for partner, opts in members(directory)
        for name, secret in opts.secrets()
    ]


def members(directory: Directory) -> list[tuple[Partner, RelayOptions]]:
    out = []
    for partner in directory.partners:
        if partner.protocol != PROTOCOL:
            continue
        opts = options(partner)
        if opts.role is Role.MEMBER:
            out.append((partner, opts))
    return out


def member_for(call: Call, broker: Partner, directory: Directory) -> tuple[Partner, RelayOptions]:
    """The member a broker's call is for (by the broker's alias table, then the members' own
    agency ids), if the broker may drive it; RelayProblem (stage address) else."""
    broker_options = options(broker)
    wanted = broker_options.aliases.get(call.to_agency)
    found = None
    for partner, opts in members(directory):
        if partner.symbol == wanted or (
            wanted is None
            and call.to_agency in (partner.symbol, *partner.agency_ids, *opts.agency_ids)
        ):
            found = (partner, opts)
            break
    if found is None:
        raise RelayProblem(
            t.UNKNOWN_AGENCY,
            f"no member library answers to ToAgencyId {call.to_agency!r}",
            "address",
            element="InitiationHeader/ToAgencyId/AgencyId",
            value=call.to_agency,
            about=call,
        )
    partner, opts = found
    if not broker_options.may_drive(partner.symbol):
        raise RelayProblem(
            t.ACCESS_DENIED,
            f"{broker.symbol} may not send calls to {partner.symbol}",
            "authorize",
            element="InitiationHeader/ToAgencyId/AgencyId",
            value=call.to_agency,
            about=call,
        )
    wanted = member_service(call.service, opts.ncip_version)
    if wanted not in opts.services or (
        opts.ncip_version == "1.0" and not t.SERVICES[call.service].in_v1
    ):
        raise RelayProblem(
            t.UNSUPPORTED,
            f"{partner.symbol}'s responder does not support {wanted}",
            "address",
            element=call.service,
            about=call,
        )
    return found


def _set_leaf(parent: etree._Element, name: str, text: str, after: tuple[str, ...]) -> None:
    """Set parent/name to text, creating it after the last of `after` present (XSD order)."""
    node = v.child(parent, name)
    if node is None:
        node = etree.Element(v.q(name))
        kids = v._children(parent)
        position = 0
        for index, kid in enumerate(kids):
            if xmlsafe.local(kid) in after:
                position = index + 1
        parent.insert(position, node)
    for kid in list(node):
        node.remove(kid)
    for key in list(node.attrib):
        del node.attrib[key]
    node.text = text


def _set_agency(header: etree._Element, holder: str, value: str) -> None:
    node = v.child(header, holder)
    if node is None:
        return
    for kid in list(node):
        node.remove(kid)
    etree.SubElement(node, v.q("AgencyId")).text = value


HEADER_ORDER = (
    "FromSystemId",
    "FromSystemAuthentication",
    "FromAgencyId",
    "FromAgencyAuthentication",
    "OnBehalfOfAgency",
    "ToSystemId",
    "ToAgencyId",
    "ApplicationProfileType",
)


def to_member(call: Call, broker: Partner, member: Partner, member_options: RelayOptions) -> bytes:
    """The call as the member must get it: in its NCIP version, addressed with its own
    institution code, carrying the partner code it knows the broker by and the
    authentication it expects."""
    broker_options = options(broker)
    tree = copy.deepcopy(call.tree)
    wanted = member_service(call.service, member_options.ncip_version)
    if wanted != call.service:
        _as_service(v._children(tree)[0], wanted)
    header = v.child(v._children(tree)[0], "InitiationHeader")
    assert header is not None  # read_call checked it
    if member_options.institution_code:
        _set_agency(header, "ToAgencyId", member_options.institution_code)
    if not call.from_agency:
        _set_agency(header, "FromAgencyId", broker_options.agency_id or broker.agency_id)
    secret = member_options.from_agency_authentication
    if secret is not None:
        value = secret.value()
        if value is None:  # never an empty value: the member would take it for a wrong one
            raise RelayProblem(
                t.TEMPORARY,
                f"{member.symbol}'s from_agency_authentication ({secret.source()}) is not set",
                "relay",
                about=call,
            )
        _set_leaf(header, "FromAgencyAuthentication", value, HEADER_ORDER[:3])
    # The directory says which profile (Alma: which partner) a member sees a broker's calls
    # under; a broker's own choice is dropped, or it could pass as another partner.
    profile = member_options.partner_codes.get(broker.symbol) or broker_options.application_profile
    written = v.child(header, "ApplicationProfileType")
    if profile is not None:
        _set_leaf(header, "ApplicationProfileType", profile, HEADER_ORDER)
    elif written is not None:
        header.remove(written)
    if member_options.ncip_version == "1.0":
        context = v.V1Context(
            agency=member_options.institution_code or call.to_agency,
            agency_scheme=member_options.agency_scheme or t.AGENCY_SCHEME_1,
        )
        return v.write_v1(v.to_v1(tree, context))
    return v.write_v2(tree)


def _as_service(body: etree._Element, service: str) -> None:
    """The call's element as `service` (same event, the member's version's service): renamed,
    its elements in that service's schema order, those it has no place for left out."""
    order = t.ORDER_V2[service]
    kids = [k for k in v._children(body) if xmlsafe.local(k) in order]
    for kid in v._children(body):
        body.remove(kid)
    body.extend(sorted(kids, key=lambda k: order.index(xmlsafe.local(k))))  # stable
    body.tag = v.q(service)


# Where a refused call names no agency, the relay answers as itself.
HUB_AGENCY = "rshub"


def _response_header(about: Call | Heard | None) -> etree._Element:
    to_agency = (about.to_agency if about else "") or HUB_AGENCY
    header = etree.Element(v.q("ResponseHeader"))
    etree.SubElement(
        etree.SubElement(header, v.q("FromAgencyId")), v.q("AgencyId")
    ).text = to_agency
    etree.SubElement(etree.SubElement(header, v.q("ToAgencyId")), v.q("AgencyId")).text = (
        about.from_agency if about and about.from_agency else to_agency
    )
    return header


def _write_for(tree: etree._Element, call: Call, broker_options: RelayOptions) -> bytes:
    if call.version == "1.0":  # answered in the version it came in
        context = v.V1Context(
            agency=call.to_agency, agency_scheme=broker_options.agency_scheme or t.AGENCY_SCHEME_1
        )
        return v.write_v1(v.to_v1(tree, context))
    return v.write_v2(tree)


def _as_response(tree: etree._Element, service: str) -> None:
    """A member's answer to the service it got instead (RequestItemResponse for an
    ItemRequested) as the response to the broker's service, holding what that one holds."""
    stand_in = t.SERVICES[service].v2_as
    top = v._children(tree)
    if not stand_in or not top or xmlsafe.local(top[0]) != f"{stand_in}Response":
        return
    body, response = top[0], f"{service}Response"
    holds = t.RESPONSE_HOLDS.get(response)
    if holds is not None:
        for kid in v._children(body):
            if xmlsafe.local(kid) not in holds:
                body.remove(kid)
    body.tag = v.q(response)


def to_broker(answer: bytes, call: Call, broker: Partner, limit: int) -> bytes:
    """The member's answer as the broker gets it: in the broker's version, addressed back from
    the agency the broker called; a member's Problem is passed on as it is. RelayProblem
    (Temporary Processing Failure) if the answer is not NCIP."""
    try:
        parsed = ncip.parse(answer, limit)
    except ncip.NcipError as error:
        raise RelayProblem(
            t.TEMPORARY, f"the member's answer is not NCIP: {error.problem.detail}", "relay"
        ) from None
    tree = v.to_v2(parsed.root)
    response = f"{call.service}Response"
    _as_response(tree, call.service)
    top = v._children(tree)
    if top and all(xmlsafe.local(node) == "Problem" for node in top):
        # A message-level Problem (XC toolkit, Alma): inside the response the broker expects.
        wrapper = etree.SubElement(tree, v.q(response))
        for node in top:
            wrapper.append(node)
    body = v._children(tree)[0]
    header = v.child(body, "ResponseHeader")
    if header is None:
        if xmlsafe.local(body) == response:
            body.insert(0, _response_header(call))
    else:
        # The broker addressed an alias (an INN-Reach agency code): the answer comes from it.
        _set_agency(header, "FromAgencyId", call.to_agency)
        if call.from_agency:
            _set_agency(header, "ToAgencyId", call.from_agency)
    return _write_for(tree, call, options(broker))


def problem_answer(
    problem: ncip.Problem,
    call: Call | Heard | None,
    version: Version,
    service: str | None = None,
) -> bytes:
    """The relay's own Problem, in the broker's version (the call's, when it was read), inside
    the service's response when the service is known. NCIP 1.0 has no message-level Problem
    and every 1.0 response has a ResponseHeader: a 1.0 answer is always a response of the
    DTD with one (tables.V1_FALLBACK_SERVICE where the call named no 1.0 service)."""
    from connectors.ncip import writer

    name = (call.service if call else None) or service
    version = call.version if call else version
    if version == "1.0" and name not in t.SERVICES_V1_DTD:
        name = t.V1_FALLBACK_SERVICE
    tree = etree.fromstring(writer.encode_problem(problem, f"{name}Response" if name else None))
    tree = v.to_v2(tree)
    if call is not None or version == "1.0":
        v._children(tree)[0].insert(0, _response_header(call))
    if version == "1.0":
        agency = (call.to_agency if call else "") or HUB_AGENCY
        return v.write_v1(v.to_v1(tree, v.V1Context(agency=agency)))
    return v.write_v2(tree)


def service_of(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> str | None:
    """The NCIP service of a message, if it is a readable one."""
    try:
        return ncip.parse(body, limit).name
    except ncip.NcipError:
        return None


def replay_key(body: bytes) -> str | None:
    """For the hub's relay agent: a key under which the first answer to a state-changing call
    is kept, so a broker's retry of the same call is answered without a second call to the
    member; None for a look-up (always asked afresh)."""
    service = t.SERVICES.get(service_of(body) or "")
    if service is None or not service.changes_state:
        return None
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def content_type(version: Version) -> str:
    # NCIP 1.0 responders (the 2003-era toolkits INN-Reach and SHAREit talk to) expect text/xml.
    return "text/xml; charset=utf-8" if version == "1.0" else CONTENT_TYPE


# -- the contract's Codec ------------------------------------------------------------------

FAULTS: dict[Fault, Kind] = {
    Fault.SYNTAX: t.SYNTAX,
    Fault.TOO_LARGE: t.TOO_LARGE,
    Fault.UNKNOWN_PARTNER: t.NOT_BROKER,
    Fault.UNAUTHENTICATED: t.UNAUTHENTICATED,
    Fault.UNKNOWN_REQUEST: t.UNKNOWN_AGENCY,
    Fault.STATE: t.ACCESS_DENIED,
    Fault.UNAVAILABLE: ("Temporary Processing Failure", t.SCHEME_GENERAL, 503),
}


class RelayCodec:
    """The relay as the contract's `Codec`. Broker calls are circulation commands for a member,
    not loan steps: they never reach the engine (`decode` refuses them; `front.handle` relays
    them), and the hub never sends a relay partner a loan step (`render`: not applicable).
    `judge` reads a member's answer for the relay agent: any NCIP answer, a Problem included,
    is a relayed answer; it travels back to the broker as it is."""

    protocol = PROTOCOL
    content_type = CONTENT_TYPE
    events_in: frozenset[Event] = frozenset()
    events_out: frozenset[Event] = frozenset()
    not_applicable: frozenset[Event] = frozenset(Event)

    def decode(self, body: bytes, sender: str, limits: Any) -> Decoded[Call]:
        problem = RelayProblem(
            t.UNSUPPORTED, "broker calls are relayed to members, not applied to loans"
        )
        raise Refusal(str(problem), self._answer(problem.problem, None))

    def accept(self, decoded: Decoded[Call], state: str | None = None) -> Answer:
        problem = RelayProblem(t.UNSUPPORTED, "broker calls are relayed, not accepted")
        return self._answer(problem.problem, decoded.context)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Call] | None = None,
        state: str | None = None,
    ) -> Answer:
        problem = RelayProblem(FAULTS[fault], detail).problem
        return self._answer(problem, decoded.context if decoded else None)

    def render(self, outgoing: Outgoing) -> bytes:
        raise NotApplicable("the hub sends relay partners no loan steps; brokers call them")

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        """A member's answer, for `rshub decode ncip-relay`: its service and Problems."""
        try:
            response = ncip.read_response(body, max(len(body), 1))
        except ncip.NcipError:
            return None
        if not response.name.endswith("Response") and response.name != "Problem":
            return None
        return response.model_dump(mode="json", exclude_none=True)

    def describe(self, body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> dict[str, Any]:
        """A broker's call as `rshub decode ncip-relay` prints it (the calls are relayed,
        never decoded into loan messages); Refusal with the relay's NCIP answer else."""
        try:
            return describe(body, limit)
        except RelayProblem as problem:
            answer = problem_answer(problem.problem, problem.about, "2.0")
            status = problem.problem.http_status
            raise Refusal(str(problem), Answer(answer, CONTENT_TYPE, status)) from None

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        """Any NCIP answer travels back to the broker (`answer`); only one without a Problem
        is `ok`: the member did what was asked, and only that may answer a broker's retry
        (after a Problem such as Temporary Processing Failure the retry must reach it)."""
        try:
            response = ncip.read_response(body, max(len(body), 1))
        except ncip.NcipError:
            return Attempt(False, status is None or status >= 500, f"HTTP {status}, not NCIP")
        if response.problems:
            kinds = ", ".join(p.type for p in response.problems)
            temporary = any(p.type in t.TEMPORARY_PROBLEMS for p in response.problems)
            detail = f"HTTP {status} {response.name} Problem: {kinds}"
            return Attempt(False, temporary, detail, answer=body)
        return Attempt(True, False, f"HTTP {status} {response.name}", answer=body)

    def replay_key(self, body: bytes) -> str | None:
        """For the hub's relay agent (`hub.runtime.relay`): see `replay_key`."""
        return replay_key(body)

    @staticmethod
    def _answer(problem: ncip.Problem, call: Call | None) -> Answer:
        return Answer(problem_answer(problem, call, "2.0"), CONTENT_TYPE, problem.http_status)


CODEC = RelayCodec()


def describe(body: bytes, limit: int = xmlsafe.DEFAULT_LIMIT) -> dict[str, Any]:
    """A broker's call as data, for `rshub decode ncip-relay FILE` (RelayProblem if it is
    not one the relay takes)."""
    call = read_call(body, limit)
    parsed = ncip.parse(v.write_v2(call.tree), limit)
    return {
        "service": call.service,
        "ncip_version": call.version,
        "from_agency": call.from_agency,
        "to_agency": call.to_agency,
        "application_profile": parsed.at("InitiationHeader", "ApplicationProfileType"),
        "user_id": parsed.ident(("UserId",), "UserIdentifierValue"),
        "item_id": parsed.ident(("ItemId",), "ItemIdentifierValue"),
        "request_id": parsed.ident(("RequestId",), "RequestIdentifierValue"),
        "changes_state": t.SERVICES[call.service].changes_state,
    }
