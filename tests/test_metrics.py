"""`/metrics` (Prometheus text format) counts a loan's messages, deliveries, state changes,
refusals and dead letters; `/ready` says the worker is assigned and recovered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.core.model import Event, Message, transaction_id
from connectors.simulator import Library
from hub.cli.process import HubProcess
from tests.kafka_reader import wait_for_record
from tests.test_e2e_ncip import lend, say

pytestmark = pytest.mark.kafka

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(hub: HubProcess) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


async def delivered(bootstrap: str, txn: str, recipient: str, event: Event) -> None:
    """Waits until the engine has applied the delivery report of `event` to `recipient`: by
    then the outbound agent has counted it and the transaction agent every earlier step."""
    await wait_for_record(
        bootstrap,
        "ill.events",
        lambda change: (
            change["transaction_id"] == txn
            and change["kind"] == "delivery"
            and change["event"] == f"{event.value}:sent"
            and change["sender"] == recipient
        ),
    )


async def test_a_loan_is_counted(
    hub: HubProcess, libraries: dict[str, Library], bootstrap: str
) -> None:
    north, south = libraries["NORTH"], libraries["SOUTH"]
    before = await scrape(hub)
    assert total(before, "rshub_messages_in_total") == 0

    lender_id = await lend(north, south, "M-1", "BC-M1")
    txn = transaction_id("NORTH", "M-1")
    await delivered(bootstrap, txn, "NORTH", Event.LOANED)
    during = await scrape(hub)
    assert value(during, "rshub_open_requests", state="Loaned") == 1
    assert value(during, "rshub_open_requests_by_lender", partner="SOUTH") == 1

    await say(north, Event.RECEIVED, "M-1", item_id="BC-M1")
    assert (await south.next()).event is Event.RECEIVED
    await say(north, Event.SHIPPED_RETURN, "M-1", item_id="BC-M1")
    assert (await south.next()).event is Event.SHIPPED_RETURN
    await say(south, Event.LOAN_COMPLETED, lender_id, item_id="BC-M1")
    assert (await north.next()).event is Event.LOAN_COMPLETED
    # A step the state no longer allows, and a partner with the wrong secret.
    refused, answer = await south.send(
        Message(event=Event.LOANED, request_id=lender_id, item_id="BC-M1")
    )
    assert refused == 200 and answer.errors
    denied, _ = await north.send(Message(event=Event.RECEIVED, request_id="M-1"), secret="wrong")
    assert denied == 401
    await delivered(bootstrap, txn, "NORTH", Event.LOAN_COMPLETED)

    after = await scrape(hub)
    inbound = {
        ("NORTH", "Request"),
        ("SOUTH", "Loaned"),
        ("NORTH", "Received"),
        ("NORTH", "ShippedReturn"),
        ("SOUTH", "LoanCompleted"),
    }
    counted_in = {
        (dict(labels)["partner"], dict(labels)["kind"]): v
        for (name, labels), v in after.items()
        if name == "rshub_messages_in_total"
    }
    # Every message of the loan once, plus the refused Loaned (decoded, then refused).
    assert counted_in == {
        **{key: 1.0 for key in inbound},
        ("SOUTH", "Loaned"): 2.0,
    }
    assert all(
        dict(labels)["protocol"] == "ncip"
        for (n, labels) in after
        if n.startswith("rshub_messages_")
    )
    outbound = {
        ("SOUTH", "Request"),
        ("NORTH", "Loaned"),
        ("SOUTH", "Received"),
        ("SOUTH", "ShippedReturn"),
        ("NORTH", "LoanCompleted"),
    }
    counted_out = {
        (dict(labels)["partner"], dict(labels)["kind"]): v
        for (name, labels), v in after.items()
        if name == "rshub_messages_out_total"
    }
    assert counted_out == {key: 1.0 for key in outbound}
    assert value(after, "rshub_delivery_attempts_total", partner="SOUTH", protocol="ncip") == 3
    assert value(after, "rshub_delivery_attempts_total", partner="NORTH", protocol="ncip") == 2
    assert total(after, "rshub_delivery_failures_total") == 0

    # Per partner and role: a fill rate per library can be computed in Prometheus.
    changes = "rshub_state_changes_total"
    assert total(after, changes, state="LoanCompleted", partner="SOUTH", role="lender") == 1
    assert total(after, changes, state="Received", partner="NORTH", role="borrower") == 1
    located = {
        dict(k)["state"]: (dict(k)["partner"], dict(k)["role"])
        for n, k in after
        if n == changes and dict(k)["state"] in ("Locating", "Requested")
    }
    assert located == {"Requested": ("NORTH", "borrower")}  # no catalogue: asked at once

    # Every line the hub wrote is JSON a log shipper takes (issue 28.4): no library chatter
    # below WARNING, the refusals with who and where, the start-up line with every address.
    lines = [json.loads(line) for line in hub.log.read_text().splitlines() if line.strip()]
    assert not [
        x
        for x in lines
        if str(x.get("logger", "")).startswith(("faust", "aiokafka"))
        and x["level"] in ("debug", "info")
    ]
    (starting,) = [x for x in lines if x["event"] == "hub.starting"]
    listening = starting["listening"]
    assert {"http", "console"} <= set(listening)
    assert listening["http"].endswith(f":{hub.port}")
    denied_line = [x for x in lines if x["event"] == "deadletter" and x["stage"] == "authenticate"]
    assert denied_line and denied_line[0]["partner"] and denied_line[0]["protocol"] == "ncip"
    # The process and the build are described (no table's changelog counted as backlog).
    assert total(after, "process_cpu_seconds_total") > 0
    assert total(after, "rshub_build_info") == 1
    assert not any(
        n == "rshub_consumer_lag" and ("topic", "ill.transactions") in got for n, got in after
    )
    assert value(after, "rshub_refusals_total", protocol="ncip", reason="state") == 1
    assert value(after, "rshub_refusals_total", protocol="ncip", reason="authenticate") == 1
    assert value(after, "rshub_dead_letters_total", stage="apply") == 1
    assert value(after, "rshub_dead_letters_total", stage="authenticate") == 1

    # Six messages reached the state machine (five steps and the refused one); five
    # deliveries were accepted.
    steps = "rshub_step_seconds_count"
    assert value(after, steps, step="inbound_to_state_change") == 6
    assert value(after, steps, step="state_change_to_delivery") == 5
    assert total(after, "rshub_open_requests") == 0
    assert value(after, "rshub_open_requests_by_lender", partner="SOUTH") == 0
    # Everything written to the agents' topics so far has been read.
    assert value(after, "rshub_consumer_lag", topic="ill.outbound.ncip") == 0
    assert ("rshub_consumer_lag", frozenset({("topic", "ill.inbound")})) in after


async def test_ready_says_the_worker_is_assigned_and_recovered(hub: HubProcess) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/ready") as reply:
        body: dict[str, Any] = await reply.json()
        assert reply.status == 200, body
    assert body["status"] == "ready" and body["broker"] == "reachable"
    assert body["partitions_assigned"] > 0 and body["tables_recovered"] is True
    assert isinstance(body["lag"], dict)


MONITORING = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
MONITORING_DOC = Path(__file__).resolve().parent.parent / "docs" / "monitoring.md"


def documented_metrics() -> dict[str, set[str]]:
    """docs/monitoring.md's metric table: name -> labels."""
    found = {}
    for line in MONITORING_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 4 and cells[1].startswith("`rshub_"):
            name = cells[1].split("`")[1]
            found[name] = {x.strip() for x in cells[2].split(",") if x.strip()}
    return found


async def test_the_documented_table_and_the_dashboard_name_what_the_hub_exports(
    hub: HubProcess, libraries: dict[str, Library]
) -> None:
    await lend(libraries["NORTH"], libraries["SOUTH"], "M-DOC", "BC-DOC")
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as reply:
        text = await reply.text()
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("rshub_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = exported.setdefault(name, set())
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
    documented = documented_metrics()
    assert set(documented) == set(exported), set(documented) ^ set(exported)
    for name, labels in exported.items():
        assert labels <= documented[name], (name, labels, documented[name])
    # Every series the dashboard and the alerts ask for is one the hub exports.
    wanted = set(
        re.findall(r"\b(rshub_[a-z_]+)", (MONITORING / "grafana-dashboard.json").read_text())
    )
    wanted |= set(re.findall(r"\b(rshub_[a-z_]+)", (MONITORING / "alerts.yml").read_text()))
    known = set(exported) | {f"{n}_bucket" for n in exported} | {f"{n}_count" for n in exported}
    assert wanted and wanted <= known, wanted - known
