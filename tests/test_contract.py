"""The connector contract is real: a protocol defined only in a test (tests/line_connector.py)
carries a loan through the real hub with no edit anywhere else; and every connector says,
for every canonical event and state, what it does with it (a gap fails here, not a partner)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from connectors.core.connections import free_port
from connectors.core.contract import Connector, Fault, Outgoing, Registry
from connectors.core.directory import Partner
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RequestFormat,
    ServiceType,
)
from connectors.core.secret import Secret
from connectors.registry import CONNECTORS
from connectors.simulator import Library, running
from hub.cli.process import HubProcess
from hub.domain.lifecycle import State
from tests import line_connector

EVERY = Registry([*CONNECTORS, line_connector.CONNECTOR])
DAY = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def sample(event: Event, request_id: str = "t0123456789abcdef.1") -> Message:
    return Message(
        event=event,
        request_id=request_id,
        transaction_id="t0123456789abcdef",
        sender="A",
        patron_id="p1",
        item_id="i1",
        bibliographic=Bibliographic(title="T", author="A", isbn="9780151446476"),
        service_type=ServiceType.LOAN,
        request_format=RequestFormat.PHYSICAL,
        due_date=DAY,
        date_shipped=DAY,
        answer=True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None,
        reason=Reason.from_code(10),
        note="a note",
        cost=Money(amount="1.00", currency="EUR"),
        timestamp=DAY,
    )


def partner(connector: Connector) -> Partner:  # type: ignore[type-arg]
    scheme = connector.endpoint_schemes[0]
    return Partner(
        symbol="B", name="B", protocol=connector.name, endpoint=f"{scheme}://127.0.0.1:9/x"
    )


@pytest.mark.parametrize("connector", list(EVERY), ids=lambda c: c.name)
def test_every_event_is_rendered_or_declared_not_applicable(
    connector: Connector,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Secrets a partner's options name by variable (the BL's customer code): set, as in use.
    for field in connector.options.model_fields.values():
        if isinstance(field.default, Secret) and field.default.env:
            monkeypatch.setenv(field.default.env, "x1")
    codec = connector.codec
    assert codec.events_out | codec.not_applicable == frozenset(Event)
    assert not codec.events_out & codec.not_applicable
    for event in Event:
        for to_borrower in (False, True):
            outgoing = Outgoing(
                sample(event), "A", partner(connector), state="Requested", to_borrower=to_borrower
            )
            if event in codec.not_applicable:
                with pytest.raises(NotApplicable):
                    codec.render(outgoing)
            else:
                assert codec.render(outgoing), (connector.name, event)


@pytest.mark.parametrize("connector", list(EVERY), ids=lambda c: c.name)
def test_every_fault_and_state_has_an_answer(connector: Connector) -> None:  # type: ignore[type-arg]
    for fault in Fault:
        for state in [None, *State]:
            answer = connector.codec.fault(fault, "detail", None, state)
            assert (answer.body and answer.status < 500) or fault is Fault.UNAVAILABLE


def test_stateful_tables_cover_every_state() -> None:
    """Protocols that tell partners the transaction's state name every state of ours."""
    from connectors.iso10161.transport import CURRENT_STATE
    from connectors.iso18626.tables import STATE_STATUS

    for table in (CURRENT_STATE, STATE_STATUS):
        assert {state.value for state in State} <= set(table)


# --- a loan through a protocol the hub never heard of ---------------------------------------


class LinePartner:
    """A library speaking the line protocol: it receives the hub's lines on its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            await self.lines.put(line.decode().strip())
            writer.write(b"OK\n")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", self.port)

    async def say(self, hub_port: int, text: str) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub_port)
        writer.write(text.encode() + b"\n")
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readline(), 60)).decode().strip()
        writer.close()
        return answer


@pytest.fixture
async def line_hub(
    bootstrap: str, tmp_path: Path
) -> AsyncIterator[tuple[HubProcess, int, LinePartner, Library]]:
    lender = Library("SOUTH", "01SOUTH_INST||MAIN", "south-secret")
    borrower = LinePartner()
    await borrower.start()
    async with running({"SOUTH": lender}):
        directory = tmp_path / "consortium.yaml"
        directory.write_text(
            yaml.safe_dump(
                {
                    "consortium": "Line test",
                    "partners": [
                        {
                            "symbol": "LINE",
                            "name": "A library speaking the line protocol",
                            "protocol": "line",
                            "endpoint": f"tcp://127.0.0.1:{borrower.port}",
                            "addresses": ["127.0.0.1"],
                        },
                        {
                            "symbol": "SOUTH",
                            "name": "South",
                            "protocol": "ncip",
                            "endpoint": lender.endpoint,
                            "agency_ids": [lender.agency_id],
                            "inbound_auth": {
                                "scheme": "bearer",
                                "secret_env": "RSHUB_SECRET_SOUTH",
                            },
                        },
                    ],
                    "rotas": [{"name": "default", "members": ["SOUTH"]}],
                    "default_rota": "default",
                }
            )
        )
        line_port = free_port()
        env = {
            "RSHUB_SECRET_SOUTH": lender.secret,
            "RSHUB_EXTRA_CONNECTORS": "tests.line_connector:CONNECTOR",
            "RSHUB_LINE_PORT": str(line_port),
        }
        hub = HubProcess(bootstrap, directory, tmp_path, env)
        lender.hub_url = hub.url
        await hub.start()
        try:
            yield hub, line_port, borrower, lender
        finally:
            hub.stop()
            assert borrower.server is not None
            borrower.server.close()


@pytest.mark.kafka
async def test_a_loan_through_a_connector_defined_in_a_test(line_hub) -> None:  # type: ignore[no-untyped-def]
    _hub, port, borrower, lender = line_hub
    answer = await borrower.say(port, "Request R-1 from=LINE title=Dune")
    assert answer.startswith("OK"), answer
    asked = await lender.next(timeout=60)
    assert (
        asked.event is Event.REQUEST and asked.bibliographic and asked.bibliographic.title == "Dune"
    )
    status, reply = await lender.send(
        Message(event=Event.LOANED, request_id=asked.request_id, item_id="SOUTH-1", due_date=DAY)
    )
    assert status == 200 and reply.ok, reply.errors
    loaned = await asyncio.wait_for(borrower.lines.get(), 60)
    assert loaned.split()[:2] == ["Loaned", "R-1"] and "item=SOUTH-1" in loaned
    answer = await borrower.say(port, "Received R-1 from=LINE item=SOUTH-1")
    assert answer == "OK Received", answer
    assert (await lender.next(timeout=60)).event is Event.RECEIVED
    # A step the borrower may not say: the line protocol's own error.
    answer = await borrower.say(port, "LoanCompleted R-1 from=LINE item=SOUTH-1")
    assert answer.startswith("ERR state"), answer


def test_topics_yaml_documents_every_connectors_topics() -> None:
    """The file operators read names every topic the built-in connectors use; a topic of an
    extra connector the file does not name is still created (with the outbound defaults)."""
    from hub.kafka import topics

    declared = {spec.name for spec in topics.load(topics.DEFAULT)}
    for connector in CONNECTORS:
        assert {connector.outbound_topic, *connector.topics} <= declared, connector.name
    stray = {n for n in declared if n.startswith("ill.outbound.")} - {
        c.outbound_topic for c in CONNECTORS
    }
    assert not stray
    completed = {spec.name for spec in topics.complete(topics.load(topics.DEFAULT), EVERY)}
    assert "ill.outbound.line" in completed
