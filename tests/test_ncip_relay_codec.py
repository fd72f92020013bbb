"""The NCIP relay codec: every service both ways, NCIP 1.0 <-> 2.0, the codes a member needs,
who may drive whom, every NCIP sample in standards, hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from pydantic import ValidationError

from connectors.core.directory import Partner
from connectors.ncip import codec as ncip
from connectors.ncip.schema import diagnose
from connectors.ncip_relay import codec as c
from connectors.ncip_relay import tables as t
from connectors.ncip_relay import versions as v
from connectors.ncip_relay.options import RelayOptions
from connectors.ncip_relay.simulator import Broker, MemberResponder
from tests.relay_fixtures import NORTH_INST, SOUTH_INST, relay_directory

STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards" / "ncip"
SAMPLES = sorted((STANDARDS / "samples").glob("*.xml"))
DTD = etree.DTD(str(STANDARDS / "ncip_v1_0.dtd"))

DIRECTORY = relay_directory()


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


def parsed(body: bytes) -> ncip.Parsed:
    return ncip.parse(body)


def route(broker_body: bytes, broker: Partner = RELAIS) -> tuple[c.Call, Partner, bytes]:
    call = c.read_call(broker_body)
    member, options = c.member_for(call, broker, DIRECTORY)
    return call, member, c.to_member(call, broker, member, options)


# -- every service, both directions --------------------------------------------------------

SERVICES_V1 = [s for s, svc in t.SERVICES.items() if svc.in_v1]


@pytest.mark.parametrize("service", list(t.SERVICES))
def test_v2_broker_to_v2_member_and_back(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSHUB_NORTH_NCIP_AUTH", "north-agency-secret")
    call, member, outgoing = route(relais.call(service, f"{NORTH_INST}||MAIN"))
    assert member.symbol == "NORTH-CIRC"
    got = parsed(outgoing)
    # ItemRequested reaches a 2.0 member as NCIP 2's RequestItem (Alma's v2 profile)
    assert (got.name, got.ncip1) == (c.member_service(service, "2.0"), False)
    # addressed with the member's institution code, its agency authentication added
    assert got.agency("InitiationHeader", "ToAgencyId") == NORTH_INST
    assert got.at("InitiationHeader", "FromAgencyAuthentication") == "north-agency-secret"
    assert got.agency("InitiationHeader", "FromAgencyId") == "Relais"
    assert diagnose(got.root) == [] or service == "LookupRequest"
    answer = c.to_broker(alma.answer(got), call, RELAIS, 1 << 20)
    back = parsed(answer)
    assert (back.name, back.ncip1) == (f"{service}Response", False)
    assert ncip.read_response(answer).ok
    # the answer comes from the agency the broker called
    assert back.agency("ResponseHeader", "FromAgencyId") == f"{NORTH_INST}||MAIN"
    assert back.agency("ResponseHeader", "ToAgencyId") == "Relais"
    assert diagnose(back.root) == []


@pytest.mark.parametrize("service", SERVICES_V1)
def test_v1_broker_to_v2_member_and_back(service: str) -> None:
    """INN-Reach: its agency code becomes the member's institution code, Alma's partner code
    is added as ApplicationProfileType, and the 2.0 answer goes back in 1.0."""
    call, member, outgoing = route(innreach.call(service, "nrth"), INNREACH)
    assert (member.symbol, call.version) == ("NORTH-CIRC", "1.0")
    got = parsed(outgoing)
    assert (got.name, got.ncip1) == (c.member_service(service, "2.0"), False)
    assert got.agency("InitiationHeader", "ToAgencyId") == NORTH_INST
    assert got.at("InitiationHeader", "ApplicationProfileType") == "INNREACH_PARTNER"
    assert got.agency("InitiationHeader", "FromAgencyId") == "innr1"
    assert b"UniqueUserId" not in outgoing and b"<Scheme>" not in outgoing
    assert diagnose(got.root) == []
    answer = c.to_broker(alma.answer(got), call, INNREACH, 1 << 20)
    back = parsed(answer)
    assert (back.name, back.ncip1) == (f"{service}Response", True)
    assert dtd_valid(answer), DTD.error_log
    assert back.agency("ResponseHeader", "FromAgencyId") == "nrth"
    assert back.agency("ResponseHeader", "ToAgencyId") == "innr1"
    ids = {
        "UniqueItemId": ("ItemIdentifierValue", "I200"),
        "UniqueUserId": ("UserIdentifierValue", "P100"),
    }
    for wrapper, (leaf, value) in ids.items():
        if back.child(None, wrapper) is not None:
            assert back.ident((wrapper,), leaf) == value


@pytest.mark.parametrize("service", [s for s in SERVICES_V1 if s != "RecallItem"])
def test_v2_broker_to_v1_member_and_back(service: str) -> None:
    call, member, outgoing = route(relais.call(service, SOUTH_INST))
    assert member.symbol == "SOUTH-CIRC"
    got = parsed(outgoing)
    assert (got.name, got.ncip1) == (service, True)
    assert dtd_valid(outgoing), DTD.error_log
    assert got.agency("InitiationHeader", "ToAgencyId") == SOUTH_INST
    if got.child(None, "UniqueUserId") is not None:
        assert got.ident(("UniqueUserId",), "UserIdentifierValue") == "P100"
    answer = c.to_broker(ils1.answer(got), call, RELAIS, 1 << 20)
    back = parsed(answer)
    assert (back.name, back.ncip1) == (f"{service}Response", False)
    assert ncip.read_response(answer).ok
    assert diagnose(back.root) == []


def test_identifiers_and_coded_values_change_form_between_versions() -> None:
    _, _, outgoing = route(
        innreach.call("CheckOutItem", "nrth", user="p999", item="3068"), INNREACH
    )
    root = etree.fromstring(outgoing)
    ns = {"n": t.NS}
    assert root.xpath("string(//n:UserId/n:UserIdentifierValue)", namespaces=ns) == "p999"
    assert root.xpath("string(//n:UserId/n:AgencyId)", namespaces=ns) == "innr1"
    assert root.xpath("string(//n:ItemId/n:ItemIdentifierValue)", namespaces=ns) == "3068"
    scheme = root.xpath("string(//n:ApplicationProfileType/@n:Scheme)", namespaces=ns)
    assert scheme == ""  # written by the relay, not INN-Reach: no scheme to carry
    assert root.get(f"{{{t.NS}}}version") == t.VERSION_2


def test_a_member_problem_goes_back_unchanged_in_the_broker_version() -> None:
    member = MemberResponder("NORTH-CIRC", NORTH_INST, problems={"CheckOutItem": "User Blocked"})
    call, _, outgoing = route(innreach.call("CheckOutItem", "nrth"), INNREACH)
    answer = c.to_broker(member.answer(parsed(outgoing)), call, INNREACH, 1 << 20)
    assert dtd_valid(answer), DTD.error_log
    response = ncip.read_response(answer)
    assert [(p.type, p.scheme) for p in response.problems] == [("User Blocked", t.SCHEME_GENERAL)]
    call, _, outgoing = route(relais.call("CheckOutItem", SOUTH_INST))
    old = MemberResponder(
        "SOUTH-CIRC", SOUTH_INST, version="1.0", problems={"CheckOutItem": "Unknown Item"}
    )
    answer = c.to_broker(old.answer(parsed(outgoing)), call, RELAIS, 1 << 20)
    problems = ncip.read_response(answer).problems
    assert [(p.type, p.element) for p in problems] == [("Unknown Item", "UserId")]
    assert diagnose(parsed(answer).root) == []


def test_v1_processing_error_becomes_a_v2_problem_naming_the_element() -> None:
    sample = (
        STANDARDS / "samples" / "ncip1-ils__CheckInItemResponse__v1_0-problem.xml"
    ).read_bytes()
    tree = v.to_v2(ncip.parse(sample).root)
    [problem] = tree.iter(f"{{{t.NS}}}Problem")
    assert v._text(v.child(problem, "ProblemType")) == "Item Not Checked Out"
    kind = v.child(problem, "ProblemType")
    assert kind is not None
    assert str(kind.get(f"{{{t.NS}}}Scheme")).endswith("checkinitemprocessingerror.scm")
    assert v._text(v.child(problem, "ProblemElement")) == "ItemId/ItemIdentifierValue"
    assert v._text(v.child(problem, "ProblemValue")) == "Item not on loan."
    again = v.to_v1(tree, v.V1Context("TNS"))
    assert dtd_valid(v.write_v1(again))
    assert again.xpath("string(//ProcessingErrorType/Value)") == "Item Not Checked Out"
    assert again.xpath("//ProcessingErrorElement/ElementName/text()") == [
        "UniqueItemId",
        "ItemIdentifierValue",
    ]


def test_title_is_not_required_outside_the_peer_to_peer_profile() -> None:
    """The peer NCIP endpoint refuses a RequestItem without a Title (the P2P profile's rule);
    a broker's RequestItem is relayed without one."""
    body = relais.call("RequestItem", NORTH_INST, title=None)
    with pytest.raises(ncip.NcipError, match="Title"):
        ncip.decode(body)
    _, member, outgoing = route(body)
    assert parsed(outgoing).name == "RequestItem" and member.symbol == "NORTH-CIRC"


# -- every sample in standards --------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample(sample: Path) -> None:
    body = sample.read_bytes()
    message = ncip.parse(body)
    if message.is_response:
        # As a member's answer to a call of its service, back to a 2.0 and a 1.0 broker.
        service = (
            message.name.removesuffix("Response") if message.name != "Problem" else "CheckOutItem"
        )
        for broker, version in ((RELAIS, "2.0"), (INNREACH, "1.0")):
            w = relais if version == "2.0" else innreach
            call = c.read_call(w.call(service, "nrth" if version == "1.0" else NORTH_INST))
            answer = c.to_broker(body, call, broker, 1 << 20)
            back = ncip.parse(answer)
            assert back.name == f"{service}Response"
            assert back.ncip1 is (version == "1.0")
            wanted = len(ncip.read_response(body).problems)
            if version == "2.0":
                assert len(ncip.read_response(answer).problems) == wanted
            else:  # 1.0 has one Problem per response, holding each error
                errors = back.root.xpath("//ProcessingError | //MessagingError")
                assert len(errors) == wanted
            if version == "1.0":
                # whatever the member answered, the 1.0 broker gets a header and no namespace
                assert back.child(None, "ResponseHeader") is not None
                assert b"xmlns" not in answer
        return
    if message.name not in t.SERVICES:
        with pytest.raises(c.RelayProblem) as refused:
            c.read_call(body)
        assert refused.value.problem.type == "Unsupported Service"
        return
    call = c.read_call(body)
    assert call.service == message.name and call.version == ("1.0" if message.ncip1 else "2.0")
    target = v._text(v.child(call.body, "InitiationHeader", "ToAgencyId", "AgencyId"))
    assert target == call.to_agency
    for member in (NORTH, SOUTH):
        options = c.options(member)
        if call.service not in options.services:
            continue
        out = c.to_member(call, RELAIS, member, options)
        got = ncip.parse(out)
        assert got.name == c.member_service(call.service, options.ncip_version)
        assert got.ncip1 is (options.ncip_version == "1.0")
        assert got.agency("InitiationHeader", "ToAgencyId") == (
            options.institution_code or call.to_agency
        )


SAMPLES_BY_NAME = {p.name: p for p in SAMPLES}


def test_samples_inn_reach_style_1_0_calls_become_schema_valid_2_0() -> None:
    for name in (
        "shareit-autographics__CheckInItem__v1_0.xml",
        "shareit-autographics__RequestItem__v1_0.xml",
    ):
        call = c.read_call(SAMPLES_BY_NAME[name].read_bytes())
        out = c.to_member(call, RELAIS, NORTH, c.options(NORTH))
        assert diagnose(ncip.parse(out).root) == [], name


def test_samples_2_0_calls_become_dtd_valid_1_0() -> None:
    for name in (
        "relais-to-folio__LookupUser.xml",
        "relais-to-folio__AcceptItem__v2_0-default-ns.xml",
        "folio-test__CheckOutItem__prefixed-version-attr.xml",
        "koha-nncipp-to-alma__RenewItem.xml",
        "xc-toolkit__RequestItem.xml",
    ):
        call = c.read_call(SAMPLES_BY_NAME[name].read_bytes())
        out = c.to_member(call, RELAIS, SOUTH, c.options(SOUTH))
        assert dtd_valid(out), (name, DTD.error_log)


# -- who may drive whom ------------------------------------------------------------------------


def test_broker_may_not_drive_a_member_outside_its_list() -> None:
    call = c.read_call(innreach.call("LookupUser", SOUTH_INST))
    with pytest.raises(c.RelayProblem) as refused:
        c.member_for(call, INNREACH, DIRECTORY)
    assert refused.value.problem.type == "Agency Access Denied"
    assert refused.value.stage == "authorize"
    assert refused.value.problem.value == SOUTH_INST
    call = c.read_call(relais.call("LookupUser", "01OUT_INST"))
    with pytest.raises(c.RelayProblem, match="may not send calls to OUTSIDER"):
        c.member_for(call, RELAIS, DIRECTORY)


def test_unknown_member() -> None:
    call = c.read_call(relais.call("CheckInItem", "NOBODY"))
    with pytest.raises(c.RelayProblem) as refused:
        c.member_for(call, RELAIS, DIRECTORY)
    assert (refused.value.problem.type, refused.value.stage) == ("Unknown Agency", "address")
    # a broker's alias table is its own: RELAIS cannot use INN-Reach's code
    with pytest.raises(c.RelayProblem, match="Unknown Agency"):
        c.member_for(c.read_call(relais.call("CheckInItem", "nrth")), RELAIS, DIRECTORY)


def test_services_a_member_does_not_support() -> None:
    with pytest.raises(c.RelayProblem, match="does not support RecallItem"):
        c.member_for(c.read_call(relais.call("RecallItem", SOUTH_INST)), RELAIS, DIRECTORY)
    # LookupRequest is new in NCIP 2.0: a 1.0 member cannot answer it
    with pytest.raises(c.RelayProblem, match="does not support LookupRequest"):
        c.member_for(c.read_call(relais.call("LookupRequest", SOUTH_INST)), RELAIS, DIRECTORY)


def test_options_fit_the_role() -> None:
    with pytest.raises(ValidationError, match="a broker has no institution_code"):
        RelayOptions.model_validate({"role": "broker", "institution_code": "X"})
    with pytest.raises(ValidationError, match="a member has no members"):
        RelayOptions.model_validate({"role": "member", "members": ["X"]})
    with pytest.raises(ValidationError, match="not relayed"):
        RelayOptions.model_validate({"role": "member", "services": ["DeleteItem"]})
    with pytest.raises(ValidationError, match="secret_env or secret_file"):
        RelayOptions.model_validate({"role": "member", "from_agency_authentication": {}})
    assert RelayOptions.model_validate({"role": "broker", "members": ["*"]}).may_drive("ANY")


# -- hostile input -------------------------------------------------------------------------------

HOSTILE: list[tuple[str, bytes, str, int]] = [
    ("empty", b"", "Invalid Message Syntax Error", 400),
    ("not xml", b"GET / HTTP/1.1\r\n\r\n", "Invalid Message Syntax Error", 400),
    ("truncated", relais.call("LookupUser", NORTH_INST)[:-40], "Invalid Message Syntax Error", 400),
    (
        "entity expansion",
        b'<?xml version="1.0"?><!DOCTYPE NCIPMessage [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><NCIPMessage><LookupUser>&b;</LookupUser></NCIPMessage>',
        "Invalid Message Syntax Error",
        400,
    ),
    (
        "external entity",
        b'<?xml version="1.0"?><!DOCTYPE NCIPMessage [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<NCIPMessage><LookupUser>&x;</LookupUser></NCIPMessage>",
        "Invalid Message Syntax Error",
        400,
    ),
    (
        "deep",
        b"<NCIPMessage>" + b"<a>" * 200 + b"</a>" * 200 + b"</NCIPMessage>",
        "Invalid Message Syntax Error",
        400,
    ),
    (
        "wrong root",
        b"<ISO18626Message><request/></ISO18626Message>",
        "Invalid Message Syntax Error",
        400,
    ),
    ("no service", b"<NCIPMessage/>", "Invalid Message Syntax Error", 400),
    (
        "answer, not call",
        relais.call("LookupUser", NORTH_INST).replace(b"LookupUser>", b"LookupUserResponse>"),
        "Unsupported Service",
        200,
    ),
    (
        "unrelayed service",
        relais.call("LookupUser", NORTH_INST).replace(b"LookupUser>", b"DeleteItem>"),
        "Unsupported Service",
        200,
    ),
    (
        "no header",
        b'<NCIPMessage xmlns="http://www.niso.org/2008/ncip"><CheckInItem/></NCIPMessage>',
        "Needed Data Missing",
        200,
    ),
    ("no member", relais.call("CheckInItem", ""), "Needed Data Missing", 200),
]


@pytest.mark.parametrize(
    ("body", "kind", "status"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_calls_get_an_ncip_problem(body: bytes, kind: str, status: int) -> None:
    with pytest.raises(c.RelayProblem) as refused:
        c.read_call(body)
    problem = refused.value.problem
    assert (problem.type, problem.http_status) == (kind, status)
    for version in ("2.0", "1.0"):
        answer = c.problem_answer(problem, None, version, service="LookupUser")
        assert [p.type for p in ncip.read_response(answer).problems] == [kind]
    assert b"passwd" not in c.problem_answer(problem, None, "2.0")


def test_oversized_call() -> None:
    body = relais.call("LookupUser", NORTH_INST)
    with pytest.raises(c.RelayProblem) as refused:
        c.read_call(body, limit=len(body) - 1)
    assert (refused.value.problem.type, refused.value.problem.http_status) == (
        "Invalid Message Syntax Error",
        413,
    )


def test_member_answer_that_is_not_ncip_is_a_temporary_failure() -> None:
    call = c.read_call(relais.call("CheckOutItem", NORTH_INST))
    for junk in (b"<html>502 Bad Gateway</html>", b"", b"\xff\xfe"):
        with pytest.raises(c.RelayProblem) as failed:
            c.to_broker(junk, call, RELAIS, 1 << 20)
        assert failed.value.problem.type == "Temporary Processing Failure"
        assert failed.value.problem.http_status == 200  # never a 5xx to the broker


def test_replay_key_only_for_state_changing_calls() -> None:
    for service, svc in t.SERVICES.items():
        key = c.replay_key(relais.call(service, NORTH_INST))
        assert (key is not None) is svc.changes_state, service
    assert c.replay_key(b"junk") is None
    one = c.replay_key(relais.call("CheckOutItem", NORTH_INST, item="A"))
    assert one == c.replay_key(relais.call("CheckOutItem", NORTH_INST, item="A"))
    assert one != c.replay_key(relais.call("CheckOutItem", NORTH_INST, item="B"))


def test_contract_codec_never_takes_a_loan_step() -> None:
    from connectors.core.contract import Codec, Refusal

    assert isinstance(c.CODEC, Codec)
    with pytest.raises(Refusal) as refused:
        c.CODEC.decode(relais.call("LookupUser", NORTH_INST), "RELAIS", None)
    assert b"Unsupported Service" in refused.value.answer.body
    attempt = c.CODEC.judge(alma.answer(parsed(relais.call("LookupUser", NORTH_INST))), 200)
    assert attempt.ok and attempt.answer
    assert not c.CODEC.judge(b"<html/>", 502).ok


@pytest.mark.parametrize(
    "name",
    [
        "relais-to-folio__LookupUser.xml",
        "relais-to-folio__AcceptItem__v2_0-default-ns.xml",
        "relais-to-folio__RequestItem__no-namespace.xml",
        "folio-test__CheckOutItem__prefixed-version-attr.xml",
        "illiad-to-alma__CheckInItem__latin1-decl__reconstructed.xml",
        "shareit-autographics__CheckInItem__v1_0.xml",
    ],
)
def test_describe_every_broker_sample(name: str) -> None:
    """What `rshub decode` shows for the broker calls the peer NCIP codec refuses."""
    described = c.describe(SAMPLES_BY_NAME[name].read_bytes())
    assert described["service"] in t.SERVICES and described["to_agency"]
    assert described["user_id"] or described["item_id"] or described["request_id"]


def test_a_broker_cannot_choose_the_profile_a_member_sees_it_under() -> None:
    """Issue 22.8: Alma reads ApplicationProfileType as the partner code; a broker writing
    another partner's code would be treated as that partner. The directory decides."""
    _, _, outgoing = route(
        relais.call("CheckOutItem", f"{NORTH_INST}||MAIN", profile="INNREACH_PARTNER")
    )
    assert parsed(outgoing).at("InitiationHeader", "ApplicationProfileType") is None
    _, _, outgoing = route(innreach.call("CheckOutItem", "nrth", profile="OTHER"), INNREACH)
    assert parsed(outgoing).at("InitiationHeader", "ApplicationProfileType") == "INNREACH_PARTNER"
