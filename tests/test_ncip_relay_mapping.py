"""Issue 26's relay mappings, sans IO: INN-Reach's ItemRequested relayed (as NCIP 2's
RequestItem to a 2.0 member, as itself to a 1.0 one), VisibleUserId <-> 2.0 typed UserId both
ways in calls and answers, CreateUserFiscalTransaction relayed, and every 1.0 answer the relay
writes itself (refusals included) valid against the NCIP 1.0 DTD with a ResponseHeader."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from connectors.core.directory import Partner
from connectors.ncip import codec as ncip
from connectors.ncip.schema import diagnose
from connectors.ncip_relay import codec as c
from connectors.ncip_relay import front
from connectors.ncip_relay import tables as t
from connectors.ncip_relay.options import RelaySettings
from connectors.ncip_relay.simulator import Broker, MemberResponder
from tests.relay_fixtures import NORTH_INST, SOUTH_INST, relay_directory

STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards" / "ncip"
DTD = etree.DTD(str(STANDARDS / "ncip_v1_0.dtd"))
INN_REACH_ITEM_REQUESTED = (
    STANDARDS / "samples" / "innreach__ItemRequested__v1_0__placeholders-renamed.xml"
)
DIRECTORY = relay_directory()
NS = {"n": t.NS}
VISIBLE = "//*[starts-with(local-name(), 'Visible')]"


@pytest.fixture(autouse=True)
def _member_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """NORTH-CIRC's FromAgencyAuthentication (an unset one is refused, never sent empty)."""
    monkeypatch.setenv("RSHUB_NORTH_NCIP_AUTH", "north-agency-auth")


def _partner(symbol: str) -> Partner:
    found = DIRECTORY.partner(symbol)
    assert found is not None
    return found


RELAIS, INNREACH = _partner("RELAIS"), _partner("INNREACH")
NORTH, SOUTH = _partner("NORTH-CIRC"), _partner("SOUTH-CIRC")
relais = Broker("RELAIS", "Relais", "relais-token")
innreach = Broker("INNREACH", "innr1", "innreach-token", version="1.0")
alma = MemberResponder("NORTH-CIRC", NORTH_INST)
ils1 = MemberResponder("SOUTH-CIRC", SOUTH_INST, version="1.0")


def dtd_valid(body: bytes) -> bool:
    assert b"<!DOCTYPE NCIPMessage" in body
    return DTD.validate(etree.fromstring(body))


def route(body: bytes, broker: Partner) -> tuple[c.Call, bytes]:
    call = c.read_call(body)
    member, options = c.member_for(call, broker, DIRECTORY)
    return call, c.to_member(call, broker, member, options)


# -- ItemRequested ---------------------------------------------------------------------------


def test_inn_reach_item_requested_reaches_a_2_0_member_as_request_item() -> None:
    """Alma's NCIP 2 broker profile creates the lending request on RequestItem (its 1.0
    profile on ItemRequested): the INN-Reach call is relayed as a schema-valid RequestItem."""
    sample = INN_REACH_ITEM_REQUESTED.read_bytes().replace(b"INNREACH-SITE-CODE<", b"nrth<")
    # the sample's placeholder host is no URI; a real INN-Reach server's is
    sample = sample.replace(b"INNREACH-SERVER-IP:PORT:6601", b"innreach.example.org:6601")
    call, outgoing = route(sample, INNREACH)
    got = ncip.parse(outgoing)
    assert (got.name, got.ncip1) == ("RequestItem", False)
    assert diagnose(got.root) == []
    assert got.agency("InitiationHeader", "ToAgencyId") == NORTH_INST
    assert got.at("InitiationHeader", "ApplicationProfileType") == "INNREACH_PARTNER"
    assert got.ident(("UserId",), "UserIdentifierValue") == "p999999"
    assert got.ident(("ItemId",), "ItemIdentifierValue") == "30680002139924"
    assert got.at("RequestType") == "hold" and got.at("RequestScopeType") == "item"
    assert got.at("ItemOptionalFields", "BibliographicDescription", "Title") == "Idle hours [slide]"
    # what RequestItem has no place for is left out (the broker's call is on ill.audit)
    assert b"DateOfUserRequest" not in outgoing and b"UserOptionalFields" not in outgoing
    # the member's RequestItemResponse goes back as the ItemRequestedResponse INN-Reach awaits
    answer = c.to_broker(alma.answer(got), call, INNREACH, 1 << 20)
    back = ncip.parse(answer)
    assert (back.name, back.ncip1) == ("ItemRequestedResponse", True)
    assert dtd_valid(answer), DTD.error_log
    assert back.agency("ResponseHeader", "FromAgencyId") == "nrth"
    assert ncip.read_response(answer).ok


def test_item_requested_refused_by_the_member_goes_back_dtd_valid() -> None:
    """1.0's ItemRequestedResponse holds bare MessagingErrors: the member's Problem is one."""
    member = MemberResponder("NORTH-CIRC", NORTH_INST, problems={"RequestItem": "Unknown Item"})
    call, outgoing = route(innreach.call("ItemRequested", "nrth"), INNREACH)
    answer = c.to_broker(member.answer(ncip.parse(outgoing)), call, INNREACH, 1 << 20)
    assert dtd_valid(answer), DTD.error_log
    assert ncip.parse(answer).name == "ItemRequestedResponse"
    assert [p.type for p in ncip.read_response(answer).problems] == ["Unknown Item"]
    assert b"<Problem>" not in answer


def test_item_requested_reaches_a_1_0_member_as_itself() -> None:
    call, outgoing = route(relais.call("ItemRequested", SOUTH_INST), RELAIS)
    got = ncip.parse(outgoing)
    assert (got.name, got.ncip1) == ("ItemRequested", True)
    assert dtd_valid(outgoing), DTD.error_log
    answer = c.to_broker(ils1.answer(got), call, RELAIS, 1 << 20)
    back = ncip.parse(answer)
    assert back.name == "ItemRequestedResponse" and ncip.read_response(answer).ok
    assert diagnose(back.root) == []


def test_item_requested_is_a_state_changing_call() -> None:
    assert c.replay_key(innreach.call("ItemRequested", "nrth")) is not None


# -- VisibleUserId ---------------------------------------------------------------------------


def test_inn_reach_lookup_user_by_barcode_reaches_a_2_0_member_as_a_typed_user_id() -> None:
    call, outgoing = route(
        innreach.call("LookupUser", "nrth", user="21234", visible=True), INNREACH
    )
    got = ncip.parse(outgoing)
    assert diagnose(got.root) == []
    root = etree.fromstring(outgoing)
    assert root.xpath(VISIBLE) == []  # NCIP 2 has no VisibleUserId
    assert root.xpath("string(//n:LookupUser/n:UserId/n:UserIdentifierValue)", namespaces=NS) == (
        "21234"
    )
    assert root.xpath("string(//n:LookupUser/n:UserId/n:UserIdentifierType)", namespaces=NS) == (
        "Barcode"
    )
    # the 2.0 answer's typed UserId in UserOptionalFields goes back as 1.0's VisibleUserId
    answer = c.to_broker(alma.answer(got), call, INNREACH, 1 << 20)
    assert dtd_valid(answer), DTD.error_log
    back = etree.fromstring(answer)
    assert back.xpath("string(//UserOptionalFields/VisibleUserId/VisibleUserIdentifier)") == (
        "B-21234"
    )
    assert back.xpath("string(//VisibleUserId/VisibleUserIdentifierType/Value)") == "Barcode"
    assert back.xpath("string(//LookupUserResponse/UniqueUserId/UserIdentifierValue)") == "21234"


def test_2_0_lookup_user_by_barcode_reaches_a_1_0_member_as_visible_user_id() -> None:
    call, outgoing = route(
        relais.call("LookupUser", SOUTH_INST, user="21234", visible=True), RELAIS
    )
    assert dtd_valid(outgoing), DTD.error_log
    sent = etree.fromstring(outgoing)
    assert sent.xpath("string(//LookupUser/VisibleUserId/VisibleUserIdentifier)") == "21234"
    assert sent.xpath("//LookupUser/UniqueUserId") == []
    answer = c.to_broker(ils1.answer(ncip.parse(outgoing)), call, RELAIS, 1 << 20)
    back = ncip.parse(answer)
    assert diagnose(back.root) == []
    root = etree.fromstring(answer)
    assert root.xpath(VISIBLE) == []
    fields = root.xpath("//n:UserOptionalFields/*", namespaces=NS)
    assert [etree.QName(f).localname for f in fields] == ["UserPrivilege", "UserId"]
    assert (
        root.xpath("string(//n:UserOptionalFields/n:UserId/n:UserIdentifierValue)", namespaces=NS)
        == "B-21234"
    )


def test_an_untyped_user_id_stays_the_record_id() -> None:
    _, outgoing = route(relais.call("LookupUser", SOUTH_INST, user="P1"), RELAIS)
    sent = etree.fromstring(outgoing)
    assert sent.xpath("string(//LookupUser/UniqueUserId/UserIdentifierValue)") == "P1"


def test_lookup_item_by_visible_item_id_both_ways() -> None:
    body = innreach.call("LookupItem", "nrth").replace(b"UniqueItemId", b"VisibleItemId")
    body = body.replace(b"ItemIdentifierValue", b"VisibleItemIdentifier")
    body = body.replace(
        b"<VisibleItemId>",
        b"<VisibleItemId><VisibleItemIdentifierType><Scheme>s</Scheme><Value>Barcode</Value>"
        b"</VisibleItemIdentifierType>",
    )
    # a VisibleItemId has no agency in 1.0
    start, end = body.index(b"<VisibleItemId>"), body.index(b"<VisibleItemIdentifier ")
    agency = body.index(b"<UniqueAgencyId>", start)
    body = body[:agency] + body[body.index(b"</UniqueAgencyId>", agency) + 17 : end] + body[end:]
    assert dtd_valid(body), DTD.error_log
    _, outgoing = route(body, INNREACH)
    root = etree.fromstring(outgoing)
    assert (
        root.xpath("string(//n:LookupItem/n:ItemId/n:ItemIdentifierType)", namespaces=NS)
        == "Barcode"
    )
    assert (
        root.xpath("string(//n:LookupItem/n:ItemId/n:ItemIdentifierValue)", namespaces=NS) == "I200"
    )
    assert diagnose(ncip.parse(outgoing).root) == []


# -- CreateUserFiscalTransaction ------------------------------------------------------------


def test_fiscal_transaction_relayed_both_ways() -> None:
    call, outgoing = route(relais.call("CreateUserFiscalTransaction", SOUTH_INST), RELAIS)
    assert dtd_valid(outgoing), DTD.error_log
    sent = etree.fromstring(outgoing)
    assert sent.xpath("string(//Amount/MonetaryValue)") == "1500"
    assert sent.xpath("string(//Amount/CurrencyCode/Value)") == "USD"
    answer = c.to_broker(ils1.answer(ncip.parse(outgoing)), call, RELAIS, 1 << 20)
    back = ncip.parse(answer)
    assert back.name == "CreateUserFiscalTransactionResponse" and diagnose(back.root) == []
    call, outgoing = route(innreach.call("CreateUserFiscalTransaction", "nrth"), INNREACH)
    assert diagnose(ncip.parse(outgoing).root) == []
    answer = c.to_broker(alma.answer(ncip.parse(outgoing)), call, INNREACH, 1 << 20)
    assert dtd_valid(answer), DTD.error_log
    assert (
        etree.fromstring(answer).xpath(
            "string(//FiscalTransactionReferenceId/FiscalTransactionIdentifierValue)"
        )
        == "FT-1"
    )


# -- 1.0 answers the relay writes itself ----------------------------------------------------


UPDATE_USER_V1 = innreach.call("LookupUser", "nrth").replace(b"LookupUser>", b"UpdateUser>")


@pytest.mark.parametrize(
    ("body", "service"),
    [
        (UPDATE_USER_V1, "UpdateUser"),  # in the 1.0 DTD, not relayed
        (innreach.call("LookupUser", "nrth").replace(b"LookupUser>", b"Frobnicate>"), None),
        (b"<NCIPMessage><LookupUser>", None),  # unreadable
        (innreach.call("LookupUser", "nobody"), "LookupUser"),  # no such member
        (innreach.call("LookupUser", SOUTH_INST), "LookupUser"),  # not its member
    ],
)
async def test_every_refusal_of_a_1_0_broker_is_a_dtd_valid_response(
    body: bytes, service: str | None
) -> None:
    """NCIP 1.0 has no message-level Problem: a bare <Problem> is not a 1.0 message."""

    class Refusing:
        directory, dead = DIRECTORY, []
        limits = type("L", (), {"max_body_bytes": 64_000})()
        broker_up = True

        def authenticated(self, partner: str, header: str | None) -> bool:
            return True

        async def audit(self, *args: object) -> str:
            return "ill.audit/0/1"

        async def refuse(self, refusal: object, partner: object, protocol: object) -> None:
            self.dead.append(refusal)

    intake = Refusing()
    answer = await front.handle(
        intake,  # type: ignore[arg-type]  # what the front door uses of an Intake
        RelaySettings(),
        "INNREACH",
        body,
        "text/xml",
        "Bearer x",
    )
    assert dtd_valid(answer.body), (answer.body, DTD.error_log)
    parsed = ncip.parse(answer.body)
    assert parsed.name == f"{service or t.V1_FALLBACK_SERVICE}Response"
    assert parsed.child(None, "ResponseHeader") is not None
    assert len(ncip.read_response(answer.body).problems) == 1
    assert len(intake.dead) == 1


def test_unsupported_service_answer_is_addressed_back() -> None:
    with pytest.raises(c.RelayProblem) as refused:
        c.read_call(UPDATE_USER_V1)
    answer = c.problem_answer(refused.value.problem, refused.value.about, "1.0")
    assert dtd_valid(answer)
    parsed = ncip.parse(answer)
    assert parsed.agency("ResponseHeader", "FromAgencyId") == "nrth"
    assert parsed.agency("ResponseHeader", "ToAgencyId") == "innr1"
    assert [p.type for p in ncip.read_response(answer).problems] == ["Unsupported Service"]


# -- the members' own secrets ----------------------------------------------------------------


def test_an_unset_member_secret_is_never_sent_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSHUB_NORTH_NCIP_AUTH")
    call = c.read_call(relais.call("CheckOutItem", NORTH_INST))
    member, options = c.member_for(call, RELAIS, DIRECTORY)
    with pytest.raises(c.RelayProblem) as refused:
        c.to_member(call, RELAIS, member, options)
    assert refused.value.problem.type == "Temporary Processing Failure"
    assert "$RSHUB_NORTH_NCIP_AUTH" in str(refused.value)
    assert [
        (p.symbol, name, source, is_set) for p, name, source, is_set in c.member_secrets(DIRECTORY)
    ] == [("NORTH-CIRC", "from_agency_authentication", "$RSHUB_NORTH_NCIP_AUTH", False)]
