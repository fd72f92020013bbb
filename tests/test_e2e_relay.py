"""The NCIP broker relay end to end: the real hub process on the embedded broker, simulated
brokers posting every service, simulated member responders (Alma-like NCIP 2.0, a 1.0 ILS)
answering; what the broker gets, what the member got, and what is on ill.audit, ill.events,
ill.relay.results and ill.deadletter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from connectors.ncip import codec as ncip
from connectors.ncip_relay.simulator import Broker, MemberResponder
from hub.cli.process import HubProcess
from hub.kafka import topics
from hub.runtime import relay as hr
from tests.kafka_reader import wait_for_record
from tests.relay_fixtures import NORTH_INST, SOUTH_INST, SUPPORTED, relay_partners

pytestmark = [pytest.mark.kafka]
STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards" / "ncip"
PATH = "ncip"  # brokers share /ncip/<symbol> with NCIP peers: the partner's protocol chooses
RELAY_TOPICS = [
    {"name": name, "partitions": 4, "cleanup": "delete", "retention_hours": 24, "purpose": "relay"}
    for name in (hr.RELAY_TOPIC, hr.RESULTS_TOPIC)
]


@dataclass
class Relay:
    hub: HubProcess
    bootstrap: str
    relais: Broker
    innreach: Broker
    north: MemberResponder
    south: MemberResponder


def _topics_file(tmp_path: Path) -> Path:
    """The hub's topics plus the relay's (until topics.yaml carries them)."""
    declared = yaml.safe_load(topics.DEFAULT.read_text())
    names = {t["name"] for t in declared["topics"]}
    declared["topics"] += [t for t in RELAY_TOPICS if t["name"] not in names]
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(declared))
    return path


@pytest.fixture
async def relay(bootstrap: str, tmp_path: Path) -> AsyncIterator[Relay]:
    north = MemberResponder("NORTH-CIRC", NORTH_INST, token="north-token")
    south = MemberResponder("SOUTH-CIRC", SOUTH_INST, version="1.0")
    for member in (north, south):
        await member.start()
    directory = tmp_path / "consortium.yaml"
    directory.write_text(
        yaml.safe_dump(
            {
                "consortium": "Relay consortium",
                "supported_protocols": sorted(SUPPORTED),
                "partners": relay_partners(north.endpoint, south.endpoint),
            }
        )
    )
    env = {
        "RSHUB_SECRET_RELAIS": "relais-token",
        "RSHUB_SECRET_INNREACH": "innreach-token",
        "RSHUB_SECRET_NORTH_CIRC": "north-token",
        "RSHUB_NORTH_NCIP_AUTH": "north-agency-auth",
        "RSHUB_NCIP_RELAY_ANSWER_TIMEOUT_S": "3",
        "RSHUB_MAX_BODY_BYTES": "65536",
    }
    hub = HubProcess(bootstrap, directory, tmp_path, env, topics_file=_topics_file(tmp_path))
    await hub.start()
    relais = Broker("RELAIS", "Relais", "relais-token", hub_url=hub.url)
    innreach = Broker("INNREACH", "innr1", "innreach-token", version="1.0", hub_url=hub.url)
    yield Relay(hub, bootstrap, relais, innreach, north, south)
    hub.stop()
    for member in (north, south):
        await member.stop()


async def test_broker_based_loan_across_two_members(relay: Relay) -> None:
    """LookupUser and AcceptItem at the borrowing member, RequestItem and CheckOutItem at the
    lending member, CheckInItem at both ends: each answered with the member's own answer."""
    loan = [
        ("LookupUser", NORTH_INST, relay.north),
        ("AcceptItem", NORTH_INST, relay.north),
        ("RequestItem", SOUTH_INST, relay.south),
        ("CheckOutItem", SOUTH_INST, relay.south),
        ("CheckInItem", NORTH_INST, relay.north),
        ("CheckInItem", SOUTH_INST, relay.south),
    ]
    for service, agency, member in loan:
        body = relay.relais.call(service, agency, item="LOAN-1", request="REQ-1")
        status, answer = await relay.relais.post(body, path=PATH)
        got = await member.next(30)
        assert (got.service, got.version, status) == (service, member.version, 200)
        response = ncip.read_response(answer)
        assert (response.name, response.ok) == (f"{service}Response", True)
        if service in ("CheckOutItem", "CheckInItem"):
            assert response.item_id == "LOAN-1"
    assert relay.north.received.empty() and relay.south.received.empty()
    # every call is durable with its outcome, audited both ways, and an event
    result = await wait_for_record(
        relay.bootstrap, hr.RESULTS_TOPIC, lambda r: r["target"] == "SOUTH-CIRC"
    )
    assert result["outcome"] == "answered" and result["caller"] == "RELAIS"
    await wait_for_record(
        relay.bootstrap,
        "ill.audit",
        lambda r: r["direction"] == "in" and r["partner"] == "RELAIS" and "AcceptItem" in r["body"],
    )
    await wait_for_record(
        relay.bootstrap,
        "ill.audit",
        lambda r: r["transaction_id"] == result["call_id"] and r["direction"] == "out",
    )
    event = await wait_for_record(relay.bootstrap, "ill.events", lambda r: r["kind"] == "relay")
    assert event["sender"] == "RELAIS"


async def test_inn_reach_1_0_calls_relayed_to_a_2_0_member_with_its_codes(relay: Relay) -> None:
    for service in ("LookupUser", "CheckOutItem"):
        status, answer = await relay.innreach.post(relay.innreach.call(service, "nrth"), path=PATH)
        got = await relay.north.next(30)
        assert (got.service, got.version) == (service, "2.0")
        assert (got.to_agency, got.profile) == (NORTH_INST, "INNREACH_PARTNER")
        assert got.agency_authentication == "north-agency-auth"
        assert got.authorization == "Bearer north-token"
        parsed = ncip.parse(answer)
        assert status == 200 and parsed.ncip1 and parsed.name == f"{service}Response"
        assert b"<!DOCTYPE NCIPMessage" in answer
        assert parsed.agency("ResponseHeader", "FromAgencyId") == "nrth"
    assert ncip.read_response(answer).due_date is not None


async def test_member_problem_time_out_and_broker_retry(relay: Relay) -> None:
    relay.north.problems["RenewItem"] = "Item Not Renewable"
    status, answer = await relay.relais.post(relay.relais.call("RenewItem", NORTH_INST), path=PATH)
    assert status == 200
    assert [p.type for p in ncip.read_response(answer).problems] == ["Item Not Renewable"]
    await relay.north.next(30)

    # a broker's retry of a state-changing call: the first answer again, one member call
    body = relay.relais.call("CheckOutItem", NORTH_INST, item="RETRY-1")
    answers = [await relay.relais.post(body, path=PATH) for _ in range(2)]
    assert answers[0] == answers[1] and ncip.read_response(answers[0][1]).ok
    assert (await relay.north.next(30)).service == "CheckOutItem"
    assert relay.north.received.empty()

    # a hung member: Temporary Processing Failure within the time-out, the late answer recorded
    relay.north.hold = asyncio.Event()
    status, answer = await relay.relais.post(
        relay.relais.call("CheckInItem", NORTH_INST, item="LATE-1"), path=PATH
    )
    assert status == 200
    assert [p.type for p in ncip.read_response(answer).problems] == ["Temporary Processing Failure"]
    relay.north.hold.set()
    late = await wait_for_record(
        relay.bootstrap, hr.RESULTS_TOPIC, lambda r: r["answer"] and "LATE-1" in r["answer"]
    )
    assert late["outcome"] == "answered"

    # a member that is down
    await relay.south.stop()
    status, answer = await relay.relais.post(
        relay.relais.call("CheckInItem", SOUTH_INST), path=PATH
    )
    assert status == 200
    assert [p.type for p in ncip.read_response(answer).problems] == ["Temporary Processing Failure"]


async def test_refused_calls_get_a_problem_and_a_dead_letter(relay: Relay) -> None:
    cases = [
        # (broker, body, token, HTTP status, Problem type, dead letter stage)
        (
            relay.relais,
            relay.relais.call("LookupUser", NORTH_INST),
            "",
            401,
            "Agency Authentication Failed",
            "authenticate",
        ),
        (
            relay.innreach,
            relay.innreach.call("CheckOutItem", SOUTH_INST),
            None,
            200,
            "Agency Access Denied",
            "authorize",
        ),
        (
            relay.relais,
            relay.relais.call("CheckInItem", "01NOBODY"),
            None,
            200,
            "Unknown Agency",
            "address",
        ),
        (
            relay.relais,
            b"<NCIPMessage><LookupUser>",
            None,
            400,
            "Invalid Message Syntax Error",
            "parse",
        ),
        (
            relay.relais,
            b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
            None,
            400,
            "Invalid Message Syntax Error",
            "parse",
        ),
        (
            relay.relais,
            b"<NCIPMessage>" + b" " * 70_000 + b"</NCIPMessage>",
            None,
            413,
            "Invalid Message Syntax Error",
            "parse",
        ),
    ]
    for broker, body, token, status, kind, stage in cases:
        got_status, answer = await broker.post(body, token=token, path=PATH)
        assert got_status == status, (kind, answer[:300])
        assert [p.type for p in ncip.read_response(answer).problems] == [kind]
        letter = await wait_for_record(
            relay.bootstrap,
            "ill.deadletter",
            lambda r, s=stage, b=broker.symbol: r["stage"] == s and r["partner"] == b,
        )
        assert letter["protocol"] in ("ncip-relay", "ncip")
    assert relay.north.received.empty() and relay.south.received.empty()
    # the hub is still serving
    status, answer = await relay.relais.post(relay.relais.call("LookupUser", NORTH_INST), path=PATH)
    assert status == 200 and ncip.read_response(answer).ok


async def test_inn_reach_loan_through_the_relay_against_a_simulated_alma(relay: Relay) -> None:
    """INN-Reach (NCIP 1.0) lends from North's Alma (NCIP 2): the patron looked up by barcode,
    the lending request (ItemRequested, which Alma's NCIP 2 profile takes as RequestItem),
    shipping (CheckOutItem) and return (CheckInItem); every answer a DTD-valid 1.0 response."""
    dtd = etree.DTD(str(STANDARDS / "ncip_v1_0.dtd"))
    loan = [
        ("LookupUser", "LookupUser", {"user": "21234", "visible": True}),
        ("ItemRequested", "RequestItem", {"item": "3068-LOAN"}),
        ("CheckOutItem", "CheckOutItem", {"item": "3068-LOAN"}),
        ("CheckInItem", "CheckInItem", {"item": "3068-LOAN"}),
    ]
    for service, alma_gets, values in loan:
        body = relay.innreach.call(service, "nrth", **values)  # type: ignore[arg-type]
        status, answer = await relay.innreach.post(body, path=PATH)
        got = await relay.north.next(30)
        assert (got.service, got.version, got.to_agency) == (alma_gets, "2.0", NORTH_INST)
        assert got.profile == "INNREACH_PARTNER"
        visible = "//*[starts-with(local-name(), 'Visible')]"  # NCIP 2 has no Visible ids
        assert etree.fromstring(got.body).xpath(visible) == []
        assert status == 200
        assert dtd.validate(etree.fromstring(answer)), (service, dtd.error_log, answer[:400])
        back = ncip.parse(answer)
        assert (back.name, back.ncip1) == (f"{service}Response", True)
        assert back.agency("ResponseHeader", "FromAgencyId") == "nrth"
        assert ncip.read_response(answer).ok, answer[:400]
    assert b"<VisibleUserIdentifier" in (await _audited_answer(relay, "LookupUserResponse"))
    assert relay.north.received.empty()


async def _audited_answer(relay: Relay, name: str) -> bytes:
    def answer_to_inn_reach(record: dict[str, Any]) -> bool:
        return (
            record["direction"] == "out"
            and record["partner"] == "INNREACH"
            and name in record["body"]
        )

    record = await wait_for_record(relay.bootstrap, "ill.audit", answer_to_inn_reach)
    return str(record["body"]).encode("latin-1")


async def test_broker_retry_after_a_temporary_failure_reaches_the_member(relay: Relay) -> None:
    relay.north.problems["CheckOutItem"] = "Temporary Processing Failure"
    body = relay.innreach.call("CheckOutItem", "nrth", item="FLAKY-1")
    status, answer = await relay.innreach.post(body, path=PATH)
    assert status == 200
    assert [p.type for p in ncip.read_response(answer).problems] == ["Temporary Processing Failure"]
    assert (await relay.north.next(30)).service == "CheckOutItem"
    del relay.north.problems["CheckOutItem"]
    status, answer = await relay.innreach.post(body, path=PATH)  # INN-Reach retries
    assert (await relay.north.next(30)).service == "CheckOutItem"  # Alma gets the retry
    assert status == 200 and ncip.read_response(answer).ok
    again = await relay.innreach.post(body, path=PATH)  # a retry of the success: replayed
    assert again == (status, answer) and relay.north.received.empty()
