"""The brokers' front door over real HTTP to real simulated member responders, with an
Intake that relays directly (no Kafka: the hub's side is tested end to end in
test_e2e_relay.py). What a broker gets back, and what is dead-lettered, for each case."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.core.contract import Answer, Attempt, Codec, Limits, Refusal
from connectors.core.directory import Directory
from connectors.ncip import codec as ncip
from connectors.ncip_relay import codec as c
from connectors.ncip_relay import front
from connectors.ncip_relay.options import RelaySettings
from connectors.ncip_relay.sender import MemberSender, authorization
from connectors.ncip_relay.simulator import Broker, MemberResponder
from tests.relay_fixtures import NORTH_INST, SOUTH_INST, relay_directory


class DirectIntake:
    """The hub's Intake reduced to what the front door uses; `relay` calls the member with
    the relay's own sender, as the relay agent does."""

    def __init__(self, directory: Directory, limits: Limits, sender: MemberSender) -> None:
        self.directory, self.limits, self.sender = directory, limits, sender
        self.audited: list[tuple[str, str | None, bytes]] = []
        self.dead: list[Refusal] = []
        self.calls = 0
        self.broker_up = True

    async def take(self, *args: Any, **kwargs: Any) -> Answer:
        raise AssertionError("a broker call must never reach the engine")

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        self.dead.append(refusal)

    def unavailable(self, codec: Codec[Any]) -> Refusal:
        from connectors.core.contract import Fault

        return Refusal("broker down", codec.fault(Fault.UNAVAILABLE, "try again"), "unavailable")

    def authenticated(self, partner: str, header: str | None) -> bool:
        found = self.directory.partner(partner)
        expected = authorization(found.inbound_auth if found else None).get("Authorization")
        return bool(expected and header == expected and not expected.endswith(" "))

    async def audit(
        self, direction: str, protocol: str, partner: str | None, body: bytes, ct: str | None
    ) -> str:
        self.audited.append((direction, partner, body))
        return f"ill.audit/0/{len(self.audited)}"

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        self.calls += 1
        member = self.directory.partner(target)
        assert member is not None
        return await self.sender.send(member, body)

    async def load_checkpoint(self, key: str) -> str | None:
        return None

    async def save_checkpoint(self, key: str, value: str) -> None:
        return None


@pytest.fixture
async def members() -> AsyncIterator[dict[str, MemberResponder]]:
    north = MemberResponder("NORTH-CIRC", NORTH_INST, token="north-token")
    south = MemberResponder("SOUTH-CIRC", SOUTH_INST, version="1.0")
    for member in (north, south):
        await member.start()
    yield {"NORTH-CIRC": north, "SOUTH-CIRC": south}
    for member in (north, south):
        await member.stop()


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSHUB_SECRET_RELAIS", "relais-token")
    monkeypatch.setenv("RSHUB_SECRET_INNREACH", "innreach-token")
    monkeypatch.setenv("RSHUB_SECRET_NORTH_CIRC", "north-token")
    monkeypatch.setenv("RSHUB_NORTH_NCIP_AUTH", "north-agency-auth")


@pytest.fixture
async def intake(members: dict[str, MemberResponder], secrets: None) -> AsyncIterator[DirectIntake]:
    directory = relay_directory(
        north_endpoint=members["NORTH-CIRC"].endpoint,
        south_endpoint=members["SOUTH-CIRC"].endpoint,
    )
    limits = Limits(max_body_bytes=64_000)
    sender = MemberSender(limits, RelaySettings(member_timeout_s=5), c.CODEC)
    await sender.start()
    yield DirectIntake(directory, limits, sender)
    await sender.stop()


SETTINGS = RelaySettings(answer_timeout_s=2)
relais = Broker("RELAIS", "Relais", "relais-token")
innreach = Broker("INNREACH", "innr1", "innreach-token", version="1.0")


async def post(
    intake: DirectIntake, broker: Broker, body: bytes, token: str | None = None
) -> Answer:
    secret = broker.token if token is None else token
    return await front.handle(
        intake, SETTINGS, broker.symbol, body, "application/xml", f"Bearer {secret}"
    )


async def test_broker_based_loan_every_call_answered_by_the_member(
    intake: DirectIntake, members: dict[str, MemberResponder]
) -> None:
    north, south = members["NORTH-CIRC"], members["SOUTH-CIRC"]
    loan = [
        ("LookupUser", NORTH_INST, north),
        ("AcceptItem", NORTH_INST, north),
        ("RequestItem", SOUTH_INST, south),
        ("CheckOutItem", SOUTH_INST, south),
        ("CheckInItem", NORTH_INST, north),
        ("CheckInItem", SOUTH_INST, south),
    ]
    for service, agency, member in loan:
        answer = await post(intake, relais, relais.call(service, agency))
        got = await member.next(5)
        assert (got.service, answer.status) == (service, 200)
        assert got.version == member.version
        back = ncip.parse(answer.body)
        assert (back.name, back.ncip1) == (f"{service}Response", False)
        assert ncip.read_response(answer.body).ok
    # the Alma-like member got its bearer token and its FromAgencyAuthentication
    assert intake.dead == []
    assert [d for d, _, _ in intake.audited] == ["in", "out"] * len(loan)


async def test_inn_reach_1_0_lookup_and_checkout_relayed_to_a_2_0_member(
    intake: DirectIntake, members: dict[str, MemberResponder]
) -> None:
    north = members["NORTH-CIRC"]
    for service in ("LookupUser", "CheckOutItem"):
        answer = await post(intake, innreach, innreach.call(service, "nrth"))
        got = await north.next(5)
        assert (got.service, got.version) == (service, "2.0")
        assert (got.to_agency, got.profile) == (NORTH_INST, "INNREACH_PARTNER")
        assert got.agency_authentication == "north-agency-auth"
        assert got.authorization == "Bearer north-token"
        back = ncip.parse(answer.body)
        assert (back.name, back.ncip1) == (f"{service}Response", True)
        assert answer.body.count(b"<!DOCTYPE NCIPMessage") == 1
        assert back.agency("ResponseHeader", "FromAgencyId") == "nrth"
    due = ncip.read_response(answer.body).due_date
    assert due is not None and due.year == 2031


async def test_member_problem_passed_through(
    intake: DirectIntake, members: dict[str, MemberResponder]
) -> None:
    members["NORTH-CIRC"].problems["CheckOutItem"] = "User Blocked"
    answer = await post(intake, relais, relais.call("CheckOutItem", NORTH_INST))
    assert answer.status == 200
    assert [p.type for p in ncip.read_response(answer.body).problems] == ["User Blocked"]
    assert intake.dead == []  # the member's answer is an answer, not a fault


async def test_broker_addressing_a_member_it_may_not_drive(
    intake: DirectIntake, members: dict[str, MemberResponder]
) -> None:
    answer = await post(intake, innreach, innreach.call("CheckOutItem", SOUTH_INST))
    assert [p.type for p in ncip.read_response(answer.body).problems] == ["Agency Access Denied"]
    assert ncip.parse(answer.body).ncip1  # in the broker's own version
    assert [r.stage for r in intake.dead] == ["authorize"]
    assert intake.dead[0].audit_ref is not None
    assert intake.calls == 0 and members["SOUTH-CIRC"].received.empty()


async def test_unknown_member(intake: DirectIntake) -> None:
    answer = await post(intake, relais, relais.call("CheckInItem", "01NOBODY"))
    problems = ncip.read_response(answer.body).problems
    assert [(p.type, p.value) for p in problems] == [("Unknown Agency", "01NOBODY")]
    assert [r.stage for r in intake.dead] == ["address"] and intake.calls == 0


@pytest.mark.parametrize("token", ["", "wrong", "innreach-token"])
async def test_broker_without_its_credentials(intake: DirectIntake, token: str) -> None:
    answer = await post(intake, relais, relais.call("LookupUser", NORTH_INST), token=token)
    assert answer.status == 401
    assert [p.type for p in ncip.read_response(answer.body).problems] == [
        "Agency Authentication Failed"
    ]
    assert [r.stage for r in intake.dead] == ["authenticate"]
    assert intake.audited == [] and intake.calls == 0


async def test_not_a_broker(intake: DirectIntake) -> None:
    for symbol in ("NORTH-CIRC", "NOBODY"):
        answer = await front.handle(
            intake, SETTINGS, symbol, relais.call("LookupUser", NORTH_INST), None, None
        )
        assert answer.status == 404
    assert len(intake.dead) == 2 and intake.calls == 0


async def test_member_timeout_is_a_temporary_processing_failure(
    intake: DirectIntake, members: dict[str, MemberResponder]
) -> None:
    north = members["NORTH-CIRC"]
    north.hold = asyncio.Event()
    answer = await post(intake, relais, relais.call("CheckOutItem", NORTH_INST))
    assert answer.status == 200  # never a 5xx
    problems = ncip.read_response(answer.body).problems
    assert [p.type for p in problems] == ["Temporary Processing Failure"]
    assert "no answer within 2 s" in problems[0].detail
    assert (await north.next(1)).service == "CheckOutItem"  # the call did reach the member
    north.hold.set()


async def test_member_down(intake: DirectIntake, members: dict[str, MemberResponder]) -> None:
    await members["SOUTH-CIRC"].stop()
    answer = await post(intake, relais, relais.call("CheckInItem", SOUTH_INST))
    assert answer.status == 200
    problems = ncip.read_response(answer.body).problems
    assert [p.type for p in problems] == ["Temporary Processing Failure"]
    assert "SOUTH-CIRC did not answer" in problems[0].detail


async def test_member_refusing_our_credentials_is_a_temporary_failure(
    intake: DirectIntake, members: dict[str, MemberResponder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSHUB_SECRET_NORTH_CIRC", "rotated")
    answer = await post(intake, relais, relais.call("LookupUser", NORTH_INST))
    assert [p.type for p in ncip.read_response(answer.body).problems] == [
        "Temporary Processing Failure"
    ]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"<NCIPMessage><LookupUser>", 400, "Invalid Message Syntax Error"),
        (b"x" * 64_001, 413, "Invalid Message Syntax Error"),
        (
            b'<!DOCTYPE NCIPMessage [<!ENTITY e SYSTEM "file:///etc/passwd">]><NCIPMessage>&e;</NCIPMessage>',
            400,
            "Invalid Message Syntax Error",
        ),
        (
            relais.call("LookupUser", NORTH_INST).replace(b"LookupUser>", b"DeleteItem>"),
            200,
            "Unsupported Service",
        ),
    ],
)
async def test_hostile_input(intake: DirectIntake, body: bytes, status: int, kind: str) -> None:
    answer = await post(intake, relais, body)
    assert answer.status == status
    assert [p.type for p in ncip.read_response(answer.body).problems] == [kind]
    assert len(intake.dead) == 1 and intake.calls == 0
    assert b"root:" not in answer.body


async def test_hub_cannot_store_calls(intake: DirectIntake) -> None:
    intake.broker_up = False
    answer = await post(intake, relais, relais.call("LookupUser", NORTH_INST))
    assert [p.type for p in ncip.read_response(answer.body).problems] == [
        "Temporary Processing Failure"
    ]
    assert intake.calls == 0
