"""Simulated parties of the broker relay, for the tests, the demo and the benchmark:

- `Broker` writes the calls a broker sends (NCIP 2.0 as Relais/ILLiad write it, or NCIP 1.0
  as INN-Reach writes it: no namespace, DOCTYPE, Scheme/Value pairs, Unique*Id wrappers, the
  INN-Reach agency codes and no institution or partner code) and posts them to the hub;
- `MemberResponder` is a member library's NCIP responder (a real aiohttp server): Alma-like
  NCIP 2.0 answers (ns1 prefix, ResponseHeader), or NCIP 1.0 answers as a 1.0 ILS writes them.
  It records every call it gets, can answer a service with a Problem, hold its answers (a
  hung responder), answer late (`delay_s`) or demand credentials.

`broker_for` and `member_for` build them from directory entries (`rshub peer`).

The simulator writes both versions by hand, not through the relay's translation, so a test
that passes checks the relay against an independent idea of each version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from lxml import etree

from connectors import xmlsafe
from connectors.core.connections import free_port
from connectors.core.directory import Partner
from connectors.ncip import codec as ncip
from connectors.ncip_relay import tables as t
from connectors.ncip_relay.options import RelayOptions

INNREACH_SCHEME = "http://innreach.example.org:6601/IRCIRCD?target=get_scheme_values&scheme="
DUE = "2031-06-30T23:59:00Z"

# The parts of each call, in schema order (both versions have the same order).
CALL_PARTS: dict[str, list[str]] = {
    "LookupUser": ["user", "UserElementType"],
    "AcceptItem": ["request", "RequestedActionType", "user", "item", "title", "PickupLocation"],
    "RequestItem": ["user", "item", "request", "RequestType", "RequestScopeType"],
    "CheckOutItem": ["user", "item", "request"],
    "CheckInItem": ["item"],
    "CancelRequestItem": ["user", "request", "RequestType"],
    "RecallItem": ["item"],
    "RenewItem": ["user", "item"],
    "LookupItem": ["item", "ItemElementType"],
    "LookupRequest": ["request"],
    # INN-Reach's lending request to the item's owner (the sample in shared/standards)
    "ItemRequested": [
        "user",
        "item",
        "RequestType",
        "RequestScopeType",
        "requested_on",
        "title",
        "patron_type",
    ],
    "CreateUserFiscalTransaction": ["user", "fiscal"],
}
CODED = {
    "UserElementType": "User Privilege",
    "RequestedActionType": "Hold For Pickup",
    "RequestType": "Loan",
    "RequestScopeType": "Item",
    "ItemElementType": "Circulation Status",
}
# What each answer echoes of the call, and what it adds (in schema order).
ANSWER_PARTS: dict[str, list[str]] = {
    "LookupUser": ["user", "privilege"],
    "AcceptItem": ["request", "item"],
    "RequestItem": ["request", "item", "user", "RequestType", "RequestScopeType"],
    "CheckOutItem": ["item", "user", "due"],
    "CheckInItem": ["item"],
    "CancelRequestItem": ["request", "user"],
    "RecallItem": ["item", "due"],
    "RenewItem": ["item", "user", "due"],
    "LookupItem": ["item", "status"],
    "LookupRequest": ["request"],
    "ItemRequested": [],  # an acknowledgement: the header only
    "CreateUserFiscalTransaction": ["user", "fiscal_ref"],
}
IDS = {
    "user": "UserIdentifierValue",
    "item": "ItemIdentifierValue",
    "request": "RequestIdentifierValue",
}
V2_IDS = {"user": "UserId", "item": "ItemId", "request": "RequestId"}
V1_IDS = {"user": "UniqueUserId", "item": "UniqueItemId", "request": "UniqueRequestId"}


class _V2:
    """NCIP 2.0 as Relais and Alma write it."""

    def __init__(self, prefix: bool) -> None:
        self.nsmap = {"ns1": t.NS} if prefix else {None: t.NS}

    def el(self, name: str, *children: etree._Element | str | None) -> etree._Element:
        node = etree.Element(f"{{{t.NS}}}{name}", nsmap=self.nsmap)
        for part in children:
            if isinstance(part, str):
                node.text = part
            elif part is not None:
                node.append(part)
        return node

    def agency(self, holder: str, value: str) -> etree._Element:
        return self.el(holder, self.el("AgencyId", value))

    def ident(self, kind: str, value: str, agency: str) -> etree._Element:
        return self.el(V2_IDS[kind], self.el("AgencyId", agency), self.el(IDS[kind], value))

    def coded(self, name: str, value: str) -> etree._Element:
        return self.el(name, value)

    def agency_id(self, value: str) -> etree._Element:
        return self.el("AgencyId", value)

    def visible_user(self, barcode: str, agency: str) -> etree._Element:
        return self.el(
            "UserId",
            self.el("AgencyId", agency),
            self.el("UserIdentifierType", "Barcode"),
            self.el("UserIdentifierValue", barcode),
        )

    def document(self, body: etree._Element) -> bytes:
        root = self.el("NCIPMessage", body)
        root.set(f"{{{t.NS}}}version", t.VERSION_2)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class _V1:
    """NCIP 1.0 as INN-Reach writes it (datatype attributes, its own scheme URLs)."""

    def __init__(self, scheme_base: str = INNREACH_SCHEME) -> None:
        self.scheme_base = scheme_base

    def el(self, name: str, *children: etree._Element | str | None) -> etree._Element:
        node = etree.Element(name)
        for part in children:
            if isinstance(part, str):
                node.text = part
                node.set("datatype", "string")
            elif part is not None:
                node.append(part)
        return node

    def coded(self, name: str, value: str) -> etree._Element:
        return self.el(name, self.el("Scheme", self.scheme_base + name), self.el("Value", value))

    def agency(self, holder: str, value: str) -> etree._Element:
        return self.el(holder, self.coded("UniqueAgencyId", value))

    def ident(self, kind: str, value: str, agency: str) -> etree._Element:
        return self.el(
            V1_IDS[kind], self.coded("UniqueAgencyId", agency), self.el(IDS[kind], value)
        )

    def agency_id(self, value: str) -> etree._Element:
        return self.coded("UniqueAgencyId", value)

    def visible_user(self, barcode: str, agency: str) -> etree._Element:
        return self.el(
            "VisibleUserId",
            self.coded("UniqueAgencyId", agency),
            self.coded("VisibleUserIdentifierType", "Barcode"),
            self.el("VisibleUserIdentifier", barcode),
        )

    def document(self, body: etree._Element) -> bytes:
        root = self.el("NCIPMessage", body)
        root.set("version", t.VERSION_1)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", doctype=t.DOCTYPE_1)


@dataclass
class Broker:
    """A broker posting circulation calls to the hub."""

    symbol: str
    agency: str
    token: str
    version: str = "2.0"
    hub_url: str = ""

    def call(
        self,
        service: str,
        to_agency: str,
        user: str = "P100",
        item: str = "I200",
        request: str = "R300",
        title: str | None = "Idle hours",
        profile: str | None = None,
        visible: bool = False,
    ) -> bytes:
        """`visible`: the user given by the barcode on the card (1.0: VisibleUserId; 2.0: a
        UserId with its UserIdentifierType), as INN-Reach looks patrons up."""
        w: _V2 | _V1 = _V1() if self.version == "1.0" else _V2(prefix=False)
        values = {"user": user, "item": item, "request": request}
        header = w.el(
            "InitiationHeader",
            w.agency("FromAgencyId", self.agency),
            w.agency("ToAgencyId", to_agency),
            w.coded("ApplicationProfileType", profile) if profile else None,
        )
        body = w.el(service, header)
        for part in CALL_PARTS[service]:
            if part == "user" and visible:
                body.append(w.visible_user(user, self.agency))
            elif part in values:
                body.append(w.ident(part, values[part], self.agency))
            elif part == "requested_on":
                body.append(w.el("DateOfUserRequest", "2031-05-02T15:17:00Z"))
            elif part == "patron_type":
                body.append(
                    w.el(
                        "UserOptionalFields",
                        w.el(
                            "UserPrivilege",
                            w.agency_id(self.agency),
                            w.coded("AgencyUserPrivilegeType", "CIRCUIT UNDERGRAD"),
                        ),
                    )
                )
            elif part == "fiscal":
                body.append(
                    w.el(
                        "FiscalTransactionInformation",
                        w.coded("FiscalActionType", "Assess"),
                        w.coded("FiscalTransactionType", "Service Charge"),
                        w.el(
                            "Amount",
                            w.coded("CurrencyCode", "USD"),
                            w.el("MonetaryValue", "1500"),
                        ),
                    )
                )
            elif part == "title":
                if title is not None:
                    body.append(
                        w.el(
                            "ItemOptionalFields",
                            w.el("BibliographicDescription", w.el("Title", title)),
                        )
                    )
            elif part == "PickupLocation":
                if self.version != "1.0":
                    body.append(w.el("PickupLocation", "CIRC-DESK"))
            else:
                body.append(w.coded(part, CODED[part]))
        return w.document(body)

    async def post(
        self, body: bytes, token: str | None = None, path: str = "ncip", symbol: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/xml"}
        secret = self.token if token is None else token
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        url = f"{self.hub_url}/{path}/{symbol or self.symbol}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as reply,
        ):
            return reply.status, await reply.read()


@dataclass
class Received:
    """A call as the member got it."""

    service: str
    version: str
    to_agency: str | None
    from_agency: str | None
    profile: str | None
    agency_authentication: str | None
    authorization: str | None
    body: bytes


@dataclass
class MemberResponder:
    """A member library's NCIP responder."""

    symbol: str
    agency: str
    version: str = "2.0"
    token: str | None = None  # bearer token it demands (None: anyone)
    port: int = field(default_factory=free_port)
    received: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    problems: dict[str, str] = field(default_factory=dict)  # service -> ProblemType to answer
    hold: asyncio.Event | None = None  # answers wait for it (a hung responder)
    runner: web.AppRunner | None = None
    host: str = "127.0.0.1"
    path: str = "/view/NCIPServlet"
    delay_s: float = 0.0  # seconds before each answer (a slow responder)
    # Called with each call as it arrives, and with the answer once answered (`rshub peer`
    # prints them).
    heard: Callable[[Received], None] | None = None
    answered: Callable[[Received, bytes], None] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.runner:
            await self.runner.cleanup()

    async def next(self, timeout: float = 60.0) -> Received:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="unauthorized")
        parsed = ncip.parse(body)
        call = Received(
            service=parsed.name,
            version="1.0" if parsed.ncip1 else "2.0",
            to_agency=parsed.agency("InitiationHeader", "ToAgencyId"),
            from_agency=parsed.agency("InitiationHeader", "FromAgencyId"),
            profile=parsed.at("InitiationHeader", "ApplicationProfileType"),
            agency_authentication=parsed.at("InitiationHeader", "FromAgencyAuthentication"),
            authorization=request.headers.get("Authorization"),
            body=body,
        )
        self.received.put_nowait(call)
        if self.heard is not None:
            self.heard(call)
        if self.hold is not None:
            await self.hold.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the behaviour itself: an answer this late
        answer = self.answer(parsed)
        if self.answered is not None:
            self.answered(call, answer)
        return web.Response(body=answer, content_type="application/xml")

    def answer(self, parsed: ncip.Parsed) -> bytes:
        w: _V2 | _V1 = (
            _V1("http://www.niso.org/ncip/v1_0/schemes/")
            if self.version == "1.0"
            else _V2(prefix=True)
        )
        caller = parsed.agency("InitiationHeader", "FromAgencyId") or "broker"
        header = w.el(
            "ResponseHeader", w.agency("FromAgencyId", self.agency), w.agency("ToAgencyId", caller)
        )
        body = w.el(f"{parsed.name}Response", header)
        problem = self.problems.get(parsed.name)
        if problem is not None:
            body.append(self._problem(w, problem))
            return w.document(body)
        values = {
            "user": parsed.ident(("UserId", "UniqueUserId"), "UserIdentifierValue")
            or parsed.ident(("VisibleUserId",), "VisibleUserIdentifier"),
            "item": parsed.ident(("ItemId", "UniqueItemId"), "ItemIdentifierValue"),
            "request": parsed.ident(("RequestId", "UniqueRequestId"), "RequestIdentifierValue"),
        }
        for part in ANSWER_PARTS[parsed.name]:
            if part in values:
                if values[part]:
                    body.append(w.ident(part, values[part] or "", self.agency))
            elif part == "due":
                body.append(w.el("DateDue", DUE))
            elif part == "privilege":
                # the card's barcode with the privileges: 1.0 writes it first, 2.0 last
                barcode = w.visible_user(f"B-{values['user']}", self.agency)
                privilege = w.el(
                    "UserPrivilege",
                    w.agency_id(self.agency),
                    w.coded("AgencyUserPrivilegeType", "Faculty"),
                )
                fields = [barcode, privilege] if isinstance(w, _V1) else [privilege, barcode]
                body.append(w.el("UserOptionalFields", *fields))
            elif part == "fiscal_ref":
                body.append(
                    w.el(
                        "FiscalTransactionReferenceId",
                        w.agency_id(self.agency),
                        w.el("FiscalTransactionIdentifierValue", "FT-1"),
                    )
                )
            elif part == "status":
                body.append(
                    w.el("ItemOptionalFields", w.coded("CirculationStatus", "Available On Shelf"))
                )
            else:
                body.append(w.coded(part, parsed.at(part) or CODED[part]))
        return w.document(body)

    @staticmethod
    def _problem(w: _V2 | _V1, kind: str) -> etree._Element:
        if isinstance(w, _V1):
            return w.el(
                "Problem",
                w.el(
                    "ProcessingError",
                    w.coded("ProcessingErrorType", kind),
                    w.el("ProcessingErrorElement", w.el("ElementName", "UniqueUserId")),
                ),
            )
        problem_type = w.el("ProblemType", kind)
        problem_type.set(f"{{{t.NS}}}Scheme", t.SCHEME_GENERAL)
        return w.el("Problem", problem_type, w.el("ProblemDetail", f"simulated: {kind}"))


def service_of(body: bytes) -> str:
    return xmlsafe.local(next(c for c in xmlsafe.parse(body) if isinstance(c.tag, str)))


def _options(partner: Partner) -> RelayOptions:
    return RelayOptions.model_validate(partner.options)


def member_for(partner: Partner) -> MemberResponder:
    """The member's NCIP responder as the directory describes it: listening at its endpoint,
    answering in its NCIP version as its first agency id, demanding the bearer token the hub
    sends it (outbound_auth), if any."""
    options = _options(partner)
    endpoint = urlsplit(partner.endpoint or "")
    if not endpoint.port:
        raise ValueError(f"{partner.symbol}: endpoint {partner.endpoint!r} names no port")
    outbound = partner.outbound_auth
    return MemberResponder(
        partner.symbol,
        (options.agency_ids or [options.institution_code or partner.symbol])[0],
        version=options.ncip_version,
        token=(outbound.secret() if outbound else None) or None,
        port=endpoint.port,
        host=endpoint.hostname or "127.0.0.1",
        path=endpoint.path or "/",
    )


def broker_for(partner: Partner, hub_url: str) -> Broker:
    """The broker as the directory describes it: calling in its NCIP version, from its agency
    id (options.agency_id, else its first agency id or its symbol), with its inbound secret."""
    options = _options(partner)
    credential = partner.inbound_auth
    return Broker(
        partner.symbol,
        options.agency_id or partner.agency_id,
        (credential.secret() if credential else None) or "",
        version=options.ncip_version,
        hub_url=hub_url,
    )


def member_agency(partner: Partner) -> str:
    """The ToAgencyId a broker writes to reach a member (its first agency id)."""
    options = _options(partner)
    return (options.agency_ids or [options.institution_code or partner.symbol])[0]
