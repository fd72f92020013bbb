"""The SLNP listener on a real TCP socket against an in-test Intake, and the sender against
the simulated ZFL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.core.contract import Answer, Attempt, Codec, Fault, Limits, Refusal
from connectors.core.directory import Credential, Directory, Partner
from connectors.core.model import Bibliographic, Event, Message
from connectors.core.throttle import PER_SOURCE
from connectors.slnp import CODEC, CONNECTOR
from connectors.slnp.client import SlnpSender
from connectors.slnp.models import SlnpSettings
from connectors.slnp.server import SlnpListener
from connectors.slnp.simulator import SimulatedZfl, ZflClient
from connectors.slnp.wire import parse_command
from tests.tcp_helpers import send_then_read

SECRET_ENV = "RSHUB_TEST_SLNP_SECRET"


@dataclass
class FakeIntake:
    """The hub's side as a listener sees it: decodes, records, answers (no broker)."""

    directory: Directory
    limits: Limits
    up: bool = True
    taken: list[tuple[str, Message]] = field(default_factory=list)
    refused: list[tuple[str, str | None]] = field(default_factory=list)
    audited: list[tuple[str | None, bytes]] = field(default_factory=list)
    refused_refs: list[str | None] = field(default_factory=list)
    refuse_with: Fault | None = None

    @property
    def broker_up(self) -> bool:
        return self.up

    async def take(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> Answer:
        decoded = codec.decode(body, partner, self.limits)
        if self.refuse_with is not None:
            raise Refusal("no", codec.fault(self.refuse_with, "refused in test", decoded), "apply")
        self.taken.append((partner, decoded.message))
        return codec.accept(decoded, "Requested")

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None:
        assert protocol == "slnp"
        self.refused.append((refusal.reason, partner))
        self.refused_refs.append(refusal.audit_ref)

    def unavailable(self, codec: Codec[Any]) -> Refusal:
        return Refusal(
            "broker down", codec.fault(Fault.UNAVAILABLE, "try again later"), "unavailable"
        )

    def authenticated(self, partner: str, authorization: str | None) -> bool:
        return False

    async def audit(
        self,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
    ) -> str:
        self.audited.append((partner, body))
        return f"a{len(self.audited)}"

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        raise NotImplementedError

    async def status(self, transaction_id: str) -> str | None:
        return None

    async def load_checkpoint(self, key: str) -> str | None:
        return None

    async def save_checkpoint(self, key: str, value: str) -> None:
        return None


def partner(symbol: str, **extra: Any) -> Partner:
    return Partner.model_validate(
        {"symbol": symbol, "name": symbol, "protocol": "slnp", "lends": False, **extra}
    )


def directory(*partners: Partner) -> Directory:
    return Directory(
        consortium="t", partners=list(partners), supported_protocols=frozenset({"slnp"})
    )


LIMITS = Limits(idle_timeout_s=5.0, read_timeout_s=0.5, max_connections_per_source=3)


@pytest.fixture
def partners() -> tuple[Partner, ...]:
    """The directory's SLNP partners; a test names others with parametrize("partners", ...)."""
    return (partner("BVB", addresses=["127.0.0.1"], agency_ids=["123ABC"]),)


@pytest.fixture
async def hub_port(partners: tuple[Partner, ...]) -> AsyncIterator[tuple[int, FakeIntake]]:
    intake = FakeIntake(directory(*partners), LIMITS)
    listener = SlnpListener(
        LIMITS, SlnpSettings(port=0, max_line_bytes=1024, max_command_bytes=4096), CODEC
    )
    listener.throttle.delay_s = 0.0  # the pause after a failed login would only slow tests
    await listener.start(intake)
    try:
        yield listener.port, intake
    finally:
        await listener.stop()


async def test_a_session_of_several_commands(hub_port: tuple[int, FakeIntake]) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        assert zfl.greeting is not None and zfl.greeting.code == 220
        assert (await zfl.command("SLNPServerInit", ("Datenbank", "x"))).code == 240
        first = await zfl.order("B1")
        assert first.command == "SLNPFLBestellung" and first.get("PFLNummer")
        assert (await zfl.change("B1", "Eingang")).ok
        bad = await zfl.command("SLNPFLBestellung", ("BsTyp", "PFL"))
        assert bad.error_type == "SLNP_MAND_PARAM_LACKING"
        unknown = await zfl.command("SLNPAlleBenutzerDaten", ("BenutzerNummer", "1"))
        assert (unknown.code, unknown.error_type) == (520, "SLNP_CMD_NOT_IMPLEMENTED")
        assert (await zfl.quit()).code == 240
    assert [(p, m.event, m.request_id) for p, m in intake.taken] == [
        ("BVB", Event.REQUEST, "B1"),
        ("BVB", Event.RECEIVED, "B1"),
    ]
    assert len(intake.refused) == 2  # each error is a dead letter too


async def test_commands_pipelined_in_one_write_are_answered_in_order(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    one = "SLNPFLBestellung\nBsTyp:PFL\nSigelNB:123ABC\nBestellId:{}\nBenutzerNummer:1\nTitel:T\nSLNPEndCommand\n"
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw("".join(one.format(f"P{i}") for i in range(5)).encode() + b"SLNPQuit\n")
        replies = [await zfl.reply() for _ in range(6)]
    assert [r.code for r in replies] == [600] * 5 + [240]
    assert [m.request_id for _, m in intake.taken] == [f"P{i}" for i in range(5)]


async def test_a_format_error_keeps_the_session(hub_port: tuple[int, FakeIntake]) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw(b"SLNPFLBestellung\nBsArt=PFL\nSLNPEndCommand\n")
        reply = await zfl.reply()
        assert reply.text == 'Error in request, line no.:2 line:"BsArt=PFL"'
        assert (await zfl.order("B2")).ok
    # The one partner at this address: its malformed command is dead-lettered under its
    # name, with the bytes it sent kept on the audit topic.
    assert intake.refused[0][1] == "BVB"
    assert intake.audited[0] == ("BVB", b"SLNPFLBestellung\nBsArt=PFL\nSLNPEndCommand\n")
    assert intake.refused_refs[0] == "a1"


async def test_an_endless_line_is_refused_and_the_connection_closed(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw(b"SLNPFLBestellung\nBemerkung:" + b"x" * 5000)
        reply = await zfl.reply()
        assert reply.error_type == "SLNP_REQ_FORMAT_ERROR" and "longer than 1024" in reply.text
        with pytest.raises(ConnectionError):
            await zfl.reply()
    assert len(intake.refused) == 1


async def test_a_command_that_never_ends_is_answered_end_command_lacking(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw(b"SLNPFLBestellung\nBsTyp:PFL\n")  # and then nothing: a slow or stuck sender
        reply = await zfl.reply()
        assert reply.error_type == "SLNP_END_COMMAND_LACKING"
        with pytest.raises(ConnectionError):
            await zfl.reply()
    assert intake.taken == [] and len(intake.refused) == 1


async def test_a_slow_sender_within_the_read_timeout_is_heard(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    body = b"SLNPFLBestellung\nBsTyp:PFL\nSigelNB:123ABC\nBestellId:S1\nBenutzerNummer:1\nTitel:T\nSLNPEndCommand\n"
    async with ZflClient("127.0.0.1", port) as zfl:
        for line in body.splitlines(keepends=True):
            await zfl.raw(line)
            await asyncio.sleep(0.02)  # pacing the sender, not synchronising the test
        assert (await zfl.reply()).ok
    assert intake.taken[0][1].request_id == "S1"


async def test_binary_garbage_gets_an_slnp_error(hub_port: tuple[int, FakeIntake]) -> None:
    port, _ = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n")
        await zfl.raw(b"SLNPEndCommand\n")
        reply = await zfl.reply()
        assert reply.code == 520 and reply.error_type == "SLNP_REQ_FORMAT_ERROR"


@pytest.mark.parametrize("partners", [(partner("OTHER", addresses=["10.9.9.0/24"]),)])
async def test_an_unknown_source_is_refused(hub_port: tuple[int, FakeIntake]) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        reply = await zfl.order("B1")
    assert (reply.code, reply.error_type) == (510, "SLNP_ACCESS_DENIED")
    assert intake.taken == [] and "no SLNP partner connects from 127.0.0.1" in intake.refused[0][0]


@pytest.mark.parametrize("partners", [(partner("OTHER", addresses=["10.9.9.0/24"]),)])
async def test_a_strangers_malformed_bytes_are_refused_not_kept(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        await zfl.raw(b"SLNPFLBestellung\nBsArt=PFL\nSLNPEndCommand\n")
        assert (await zfl.reply()).error_type == "SLNP_REQ_FORMAT_ERROR"
    assert intake.refused[0][1] == "127.0.0.1" and intake.audited == []


@pytest.mark.parametrize("partners", [(partner("NOWHERE"),)])
async def test_a_partner_without_addresses_or_certificate_is_never_admitted(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        assert (await zfl.order("B1")).error_type == "SLNP_ACCESS_DENIED"
    assert intake.taken == []


@pytest.mark.parametrize(
    "partners",
    [
        (
            partner(
                "BVB",
                addresses=["127.0.0.1"],
                agency_ids=["123ABC"],
                inbound_auth=Credential(scheme="basic", username="zfl-bvb", secret_env=SECRET_ENV),
            ),
        )
    ],
)
async def test_a_partner_with_a_login_must_log_in(
    hub_port: tuple[int, FakeIntake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        assert (await zfl.order("B1")).error_type == "SLNP_ACCESS_DENIED"
        assert (await zfl.login("zfl-bvb", "wrong")).error_type == "SLNP_ACCESS_DENIED"
        assert (await zfl.login("zfl-bvb", "s3cret")).code == 240
        assert (await zfl.order("B1")).ok
    assert [p for p, _ in intake.taken] == ["BVB"]


@pytest.mark.parametrize(
    "partners",
    [
        (
            partner(
                "BVB",
                addresses=["127.0.0.1"],
                inbound_auth=Credential(scheme="basic", username="zfl-bvb", secret_env=SECRET_ENV),
            ),
        )
    ],
)
async def test_guessing_logins_ends_the_connection(
    hub_port: tuple[int, FakeIntake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    port, _ = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        for guess in ("a", "b", "c"):
            assert (await zfl.login("zfl-bvb", guess)).code == 510
        with pytest.raises(ConnectionError):
            await zfl.login("zfl-bvb", "s3cret")


@pytest.mark.parametrize(
    "partners",
    [
        (
            partner("BVB", addresses=["127.0.0.0/8"], agency_ids=["123ABC"]),
            partner("HBZ", addresses=["127.0.0.0/8"], agency_ids=["456DEF"]),
        )
    ],
)
async def test_partners_sharing_a_network_are_told_apart_by_sigel(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as zfl:
        assert (await zfl.order("B1", sigel="456DEF")).ok
        assert (await zfl.order("B2", sigel="123ABC")).ok
        assert (await zfl.order("B3", sigel="999XYZ")).error_type == "SLNP_ACCESS_DENIED"
    assert [p for p, _ in intake.taken] == ["HBZ", "BVB"]


@pytest.mark.parametrize(
    "partners",
    [
        (
            partner(
                "BVB",
                addresses=["127.0.0.1"],
                agency_ids=["123ABC"],
                options={"encoding": "latin-1"},
            ),
        )
    ],
)
async def test_a_latin1_partner_is_read_and_answered_in_latin1(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port, encoding="latin-1") as zfl:
        assert (await zfl.order("B1", Verfasser="Müller")).ok
        assert (await zfl.change("B1", "Eingang")).command == "SLNPFLDatenÄnderung"
    assert intake.taken[0][1].bibliographic == Bibliographic(title="Kater Murr", author="Müller")


async def test_connections_over_the_cap_are_refused(hub_port: tuple[int, FakeIntake]) -> None:
    port, _ = hub_port
    clients = [ZflClient("127.0.0.1", port) for _ in range(3)]
    for client in clients:
        await client.__aenter__()
    try:
        with pytest.raises((ConnectionError, OSError)):
            async with ZflClient("127.0.0.1", port):
                pass
    finally:
        for client in clients:
            await client.__aexit__()


async def test_while_the_broker_is_down_commands_are_refused_for_later(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, intake = hub_port
    intake.up = False
    async with ZflClient("127.0.0.1", port) as zfl:
        reply = await zfl.order("B1")
    assert reply.error_type == "SLNP_SERVICE_UNAVAILABLE" and intake.taken == []


async def test_the_hubs_refusal_is_the_reply(hub_port: tuple[int, FakeIntake]) -> None:
    port, intake = hub_port
    intake.refuse_with = Fault.UNKNOWN_REQUEST
    async with ZflClient("127.0.0.1", port) as zfl:
        reply = await zfl.change("NOPE", "Eingang")
    assert (reply.code, reply.error_type) == (510, "RECORD_NOT_FOUND")
    assert intake.refused == [("no", "BVB")]


# -- the sender --------------------------------------------------------------------------

SEND_LIMITS = Limits(outbound_timeout_s=5.0, outbound_retries=2, outbound_backoff_s=0.01)


def lender(zfl: SimulatedZfl, **extra: Any) -> Partner:
    return partner("ZFL", agency_ids=["456DEF"], **extra).model_copy(
        update={"endpoint": zfl.endpoint}
    )


def a_change() -> bytes:
    message = Message(event=Event.LOANED, request_id="r")
    from connectors.core.contract import Outgoing
    from connectors.slnp.models import SlnpCorrelation

    target = partner("ZFL", agency_ids=["456DEF"])
    return CODEC.render(
        Outgoing(message, "123ABC", target, SlnpCorrelation(request_id="BsNr1", order_id="BsNr1"))
    )


async def test_the_sender_delivers_and_the_partner_accepts() -> None:
    async with SimulatedZfl() as zfl:
        sender = SlnpSender(SEND_LIMITS, SlnpSettings(), CODEC)
        attempt = await sender.send(lender(zfl), a_change())
        assert attempt.ok, attempt.detail
        command = await zfl.arrived()
    assert command.name == "SLNPFLDatenÄnderung"
    assert (command.get("BestellId"), command.get("Status")) == ("BsNr1", "Geliefert")


async def test_the_sender_logs_in_where_the_partner_wants_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_ENV, "pw")
    auth = Credential(scheme="basic", username="rshub", secret_env=SECRET_ENV)
    async with SimulatedZfl(user="rshub", secret="pw") as zfl:
        sender = SlnpSender(SEND_LIMITS, SlnpSettings(), CODEC)
        assert (await sender.send(lender(zfl, outbound_auth=auth), a_change())).ok
        monkeypatch.setenv(SECRET_ENV, "wrong")
        refused = await sender.send(lender(zfl, outbound_auth=auth), a_change())
    assert not refused.ok and "login refused" in refused.detail


async def test_a_partners_refusal_is_final_and_its_server_error_is_retried() -> None:
    async with SimulatedZfl() as zfl:
        sender = SlnpSender(SEND_LIMITS, SlnpSettings(), CODEC)
        zfl.refuse_next = "SLNP_PARAM_VALUE_NOT_VALID"
        final = await sender.send(lender(zfl), a_change())
        assert (final.ok, final.retryable) == (False, False)
        assert len(zfl.received) == 1
        zfl.refuse_next = "INTERNAL_SERVER_ERROR"
        cured = await sender.send(lender(zfl), a_change())
        assert cured.ok  # the second try went through
        assert len(zfl.received) == 3


async def test_an_unreachable_partner_is_a_retryable_failure() -> None:
    zfl = SimulatedZfl()  # never started: nothing listens on its port
    sender = SlnpSender(SEND_LIMITS, SlnpSettings(), CODEC)
    attempt = await sender.send(lender(zfl), a_change())
    assert (attempt.ok, attempt.retryable) == (False, True)


async def test_a_partner_that_never_answers_is_a_retryable_failure() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = SlnpSender(
            Limits(outbound_timeout_s=5.0, outbound_retries=1),
            SlnpSettings(answer_wait_s=0.2),
            CONNECTOR.codec,  # type: ignore[arg-type]
        )
        target = partner("ZFL").model_copy(update={"endpoint": f"slnp://127.0.0.1:{port}"})
        attempt = await sender.send(target, a_change())
    finally:
        server.close()
    assert (attempt.ok, attempt.retryable) == (False, True) and "no reply" in attempt.detail


async def test_the_simulated_zfl_talks_to_the_hub_listener_and_back(
    hub_port: tuple[int, FakeIntake],
) -> None:
    """Both halves of the simulator against the connector: what the hub sends arrives parsed."""
    port, intake = hub_port
    async with ZflClient("127.0.0.1", port) as client:
        assert (await client.order("RT1", Isbn="3-16-148410-0")).ok
    request = intake.taken[0][1]
    assert request.correlation is not None and request.correlation.request_id == "RT1"
    assert parse_command(a_change().decode()).get("Status") == "Geliefert"


async def test_a_partner_still_sending_reads_its_refusal(
    hub_port: tuple[int, FakeIntake],
) -> None:
    port, _ = hub_port
    # An endless line: refused after max_line_bytes while the partner goes on sending.
    said, error = await send_then_read(port, b"SLNPFLBestellung\nBemerkung:" + b"x" * 600_000)
    assert error is None  # not reset: the hub half-closed and read what still came
    assert said.startswith(b"220 ") and b"SLNP_REQ_FORMAT_ERROR" in said


SLNP_LOGIN = (
    partner(
        "BVB",
        addresses=["127.0.0.0/8"],
        inbound_auth=Credential(scheme="basic", username="zfl-bvb", secret_env=SECRET_ENV),
    ),
)


@pytest.mark.parametrize("partners", [SLNP_LOGIN])
async def test_reconnecting_buys_no_guesses_and_the_partner_elsewhere_still_logs_in(
    hub_port: tuple[int, FakeIntake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    port, intake = hub_port
    answers = []
    for attempt in range(30):  # a guesser on 127.0.0.1, a new connection for each guess
        async with ZflClient("127.0.0.1", port) as zfl:
            answers.append((await zfl.login("zfl-bvb", f"guess{attempt}")).error_type)
    assert answers == ["SLNP_ACCESS_DENIED"] * PER_SOURCE + ["SLNP_LOGIN_THROTTLED"] * (
        30 - PER_SOURCE
    )
    async with ZflClient("127.0.0.1", port) as zfl:  # the right secret is not even checked
        assert (await zfl.login("zfl-bvb", "s3cret")).error_type == "SLNP_LOGIN_THROTTLED"
    # The partner, from its own address, is not locked out by what 127.0.0.1 did.
    async with ZflClient("127.0.0.1", port, source="127.0.0.2") as zfl:
        assert (await zfl.login("zfl-bvb", "s3cret")).code == 240
        assert (await zfl.order("B1")).ok
    # 31 refused logins are a burst: dead-lettered at the 1st and the 10th, counted.
    logins = [reason for reason, _ in intake.refused if "login" in reason]
    assert len(logins) == 2 and "(10 failed or throttled" in logins[1]
