"""The hub's relay (hub/runtime/relay.py) on the real embedded broker: the call durable on ill.relay,
carried out by the relay agent with the member's sender, the answer correlated back in
process or read back from ill.relay.results by another gateway, retries of state-changing
calls answered once, late answers recorded."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from connectors.core.contract import Limits
from connectors.ncip import codec as ncip
from connectors.ncip_relay import codec as c
from connectors.ncip_relay.options import RelaySettings
from connectors.ncip_relay.sender import MemberSender
from connectors.ncip_relay.simulator import Broker, MemberResponder
from hub.kafka import fetching, topics
from hub.kafka.producer import KafkaIO
from hub.kafka.topics import TopicSpec
from hub.runtime import metrics
from hub.runtime import relay as hr
from tests.kafka_reader import wait_for_record
from tests.relay_fixtures import NORTH_INST, relay_directory

pytestmark = pytest.mark.kafka
RELAY_TOPICS = [
    TopicSpec(name=name, partitions=4, purpose="relay")
    for name in (hr.RELAY_TOPIC, hr.RESULTS_TOPIC)
]
relais = Broker("RELAIS", "Relais", "relais-token")


@dataclass
class Hub:
    bootstrap: str
    desk: hr.RelayDesk
    north: MemberResponder


@pytest.fixture
async def hub(bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    """The relay agent in a faust app in this process, with the gateway's desk beside it."""
    monkeypatch.setenv("RSHUB_SECRET_NORTH_CIRC", "north-token")
    await topics.ensure(bootstrap, RELAY_TOPICS)
    north = MemberResponder("NORTH-CIRC", NORTH_INST, token="north-token")
    await north.start()
    directory = relay_directory(north_endpoint=north.endpoint)
    io = KafkaIO(bootstrap)
    await io.start()
    desk = hr.RelayDesk(io, {c.PROTOCOL: c.replay_key})
    await desk.start()
    app = fetching.App(
        "relay-agent-test",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(),
        topic_partitions=4,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        web_enabled=False,
    )
    app.fetch_wait_ms = fetching.EMBEDDED_WAIT_MS
    senders = {c.PROTOCOL: MemberSender(Limits(), RelaySettings(member_timeout_s=30), c.CODEC)}
    hr.install(app, directory, senders, io=io, answers=desk.answers)
    await app.start()
    yield Hub(bootstrap, desk, north)
    await north.stop()
    await app.stop()
    await desk.stop()
    await io.stop()


async def call(hub: Hub, body: bytes, target: str = "NORTH-CIRC") -> tuple[bool, bytes | None]:
    attempt = await hub.desk.relay(c.PROTOCOL, "RELAIS", target, body, c.CONTENT_TYPE)
    return attempt.ok, attempt.answer


async def test_call_and_answer_are_durable_audited_and_an_event(hub: Hub) -> None:
    body = relais.call("CheckOutItem", NORTH_INST)
    ok, answer = await call(hub, body)
    assert ok and answer is not None
    assert ncip.read_response(answer).name == "CheckOutItemResponse"
    got = await hub.north.next(5)
    assert got.body == body and got.authorization == "Bearer north-token"
    result = await wait_for_record(
        hub.bootstrap, hr.RESULTS_TOPIC, lambda r: r["caller"] == "RELAIS"
    )
    assert (result["outcome"], result["target"]) == ("answered", "NORTH-CIRC")
    assert result["answer"].encode("latin-1") == answer
    call_id = result["call_id"]
    for direction in ("out", "in"):
        record = await wait_for_record(
            hub.bootstrap,
            "ill.audit",
            lambda r, d=direction: r["transaction_id"] == call_id and r["direction"] == d,
        )
        assert record["partner"] == "NORTH-CIRC"
    event = await wait_for_record(hub.bootstrap, "ill.events", lambda r: r["kind"] == "relay")
    assert (event["transaction_id"], event["sender"], event["event"]) == (
        call_id,
        "RELAIS",
        "answered",
    )


async def test_retry_of_a_state_changing_call_is_answered_once(hub: Hub) -> None:
    body = relais.call("CheckInItem", NORTH_INST, item="RETRIED")
    answers = [await call(hub, body) for _ in range(3)]
    assert all(ok for ok, _ in answers) and len({a for _, a in answers}) == 1
    assert (await hub.north.next(5)).service == "CheckInItem"
    # another CheckInItem (other content) and look-ups are called every time
    await call(hub, relais.call("CheckInItem", NORTH_INST, item="OTHER"))
    await call(hub, relais.call("LookupUser", NORTH_INST))
    await call(hub, relais.call("LookupUser", NORTH_INST))
    services = [(await hub.north.next(5)).service for _ in range(3)]
    assert services == ["CheckInItem", "LookupUser", "LookupUser"]
    assert hub.north.received.empty()
    replayed = await wait_for_record(
        hub.bootstrap, hr.RESULTS_TOPIC, lambda r: r["outcome"] == "replayed"
    )
    assert replayed["replayed_from"]


async def test_same_call_twice_at_once_reaches_the_member_once(hub: Hub) -> None:
    hub.north.hold = asyncio.Event()
    body = relais.call("AcceptItem", NORTH_INST, request="TWICE")
    first = asyncio.create_task(call(hub, body))
    assert (await hub.north.next(30)).service == "AcceptItem"
    second = asyncio.create_task(call(hub, body))
    seen: list[str] = []

    def second_written(record: dict[str, object]) -> bool:
        if record["replay_key"] and "TWICE" in str(record["body"]):
            seen.append(str(record["call_id"]))
        return len(seen) == 2

    await wait_for_record(hub.bootstrap, hr.RELAY_TOPIC, second_written, 30)
    hub.north.hold.set()
    (ok1, a1), (ok2, a2) = await asyncio.gather(first, second)
    assert ok1 and ok2 and a1 == a2
    assert hub.north.received.empty()


async def test_late_answer_is_recorded(hub: Hub) -> None:
    hub.north.hold = asyncio.Event()
    body = relais.call("RenewItem", NORTH_INST, item="LATE")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):  # the broker-facing time-out of the front door
            await call(hub, body)
    assert (await hub.north.next(30)).service == "RenewItem"
    hub.north.hold.set()
    result = await wait_for_record(
        hub.bootstrap, hr.RESULTS_TOPIC, lambda r: "RenewItemResponse" in r["detail"]
    )
    assert result["outcome"] == "answered"
    assert hub.desk.answers.waiting == {}  # nothing left waiting


async def test_answer_read_back_by_a_gateway_in_another_process(hub: Hub) -> None:
    """A gateway whose calls another worker's agent carries out gets the result from
    ill.relay.results (its instance is not the agent's)."""
    other = KafkaIO(hub.bootstrap)
    await other.start()
    desk = hr.RelayDesk(other)
    await desk.start()
    try:
        attempt = await desk.relay(
            c.PROTOCOL, "RELAIS", "NORTH-CIRC", relais.call("LookupItem", NORTH_INST), "x"
        )
        assert attempt.ok and attempt.answer is not None
        assert ncip.read_response(attempt.answer).name == "LookupItemResponse"
    finally:
        await desk.stop()
        await other.stop()


async def test_unknown_target_and_member_down_fail_without_an_answer(hub: Hub) -> None:
    ok, answer = await call(hub, relais.call("LookupUser", NORTH_INST), target="NOBODY")
    assert (ok, answer) == (False, None)
    await hub.north.stop()
    ok, answer = await call(hub, relais.call("CheckOutItem", NORTH_INST, item="DOWN"))
    assert (ok, answer) == (False, None)
    failed = await wait_for_record(
        hub.bootstrap,
        hr.RESULTS_TOPIC,
        lambda r: r["outcome"] == "failed" and "NOBODY" not in r["detail"],
    )
    assert failed["retryable"] is True


async def test_retry_after_a_temporary_failure_reaches_the_member(hub: Hub) -> None:
    """Only a success is replayed: a broker retries after Temporary Processing Failure to get
    through, so the retry must reach the member (and its success is then what is replayed)."""
    before = {o: _relayed(o) for o in ("ok", "problem", "replayed")}
    hub.north.problems["CheckOutItem"] = "Temporary Processing Failure"
    body = relais.call("CheckOutItem", NORTH_INST, item="FLAKY")
    ok, answer = await call(hub, body)
    assert not ok and answer is not None
    assert [p.type for p in ncip.read_response(answer).problems] == ["Temporary Processing Failure"]
    assert (await hub.north.next(5)).service == "CheckOutItem"
    del hub.north.problems["CheckOutItem"]
    ok, answer = await call(hub, body)  # the broker's retry
    assert (await hub.north.next(5)).service == "CheckOutItem"  # reached the member
    assert ok and answer is not None and ncip.read_response(answer).ok
    again = await call(hub, body)  # a retry of the success: replayed
    assert again == (ok, answer) and hub.north.received.empty()
    first = await wait_for_record(
        hub.bootstrap, hr.RESULTS_TOPIC, lambda r: "Temporary Processing" in r["detail"]
    )
    assert (first["outcome"], first["ok"], first["retryable"]) == ("answered", False, True)
    # counted per broker and member, by outcome (the agent counts before it hands back)
    assert {o: _relayed(o) - n for o, n in before.items()} == {
        "ok": 1,
        "problem": 1,
        "replayed": 1,
    }


def _relayed(outcome: str) -> float:
    labels = {"partner": "RELAIS", "member": "NORTH-CIRC", "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("rshub_relay_calls_total", labels) or 0.0
