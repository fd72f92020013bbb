"""End to end over e-mail: an NCIP borrower (a simulated library over HTTP), the real hub (a
process on the embedded broker), the British Library over ARTEmail and ILLiad's e-mail import
as last resort, on a real Dovecot (IMAP, LMTP) and a real SMTP server (aiosmtpd) delivering
into it.

The BL's side is played by the test: it reads the order mail from the BL's mailbox over IMAP
and answers with BLDSS reply mails submitted to the SMTP server, addressed to the hub's
mailbox for the BL (read by the hub over IMAP with STARTTLS). Every wait is on a record, a
message at the borrower or a mail arriving in a folder (IMAP IDLE), never on time.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.artemail import order as orders
from connectors.core.model import Bibliographic, Event, Message, RequestFormat, now
from connectors.core.records import Tick, audit_bytes
from connectors.simulator import Library, directory_yaml, running
from hub.cli.process import HubProcess
from hub.kafka.producer import KafkaIO
from hub.runtime.settings import Settings
from tests.kafka_reader import wait_for_record
from tests.mail_imap import submit, wait_for_mails
from tests.mail_servers import USERS, MailServers, available, mail_servers

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(not available(), reason="dovecot is not installed (.ci/run)"),
]

CUSTOMER, ART_PASSWORD = "87-1234", "ARTSECRET"
BL_SENDER = "bldss@bl.uk"
HUB_BL = "hub-bl@localhost"  # the hub's mailbox for the BL (login hub-bl)
# RFC 6068's form is `mailto:bl@localhost`; the hub's start-up check still wants a host
# (notes/mail2-requests.md), which `mailto://` gives; the connectors read both alike.
ENDPOINT_BL, ENDPOINT_ILLIAD = "mailto:bl@localhost", "mailto:illiad@localhost"
MAILBOX_KEY = "mail:artemail:BL:hub-bl:INBOX"
ARTICLE = Bibliographic(
    title="Death Studies",
    title_of_component="A revised death anxiety scale",
    author_of_component="Thorson, J.A.",
    publication_date="1992",
    pages_requested="507-",  # the pages to copy (Alma: Ext/Pages)
    issn="0748-1187",
)
BOOK = Bibliographic(
    title="Property and wealth in classical Sparta",
    author="Hodkinson, Stephen",
    publisher="Duckworth",
    place_of_publication="London",
    publication_date="2000",
    isbn="0715630407",
)


@pytest.fixture
def servers() -> Iterator[MailServers]:
    with mail_servers() as running_servers:
        yield running_servers


@pytest.fixture
async def north() -> AsyncIterator[Library]:
    libs = {"NORTH": Library("NORTH", "01NORTH_INST||MAIN", "north-secret")}
    async with running(libs):
        yield libs["NORTH"]


@pytest.fixture
def bl_extra() -> dict[str, object]:
    """More options of the BL partner (a test parametrizes it)."""
    return {}


def directory(north: Library, bl_extra: dict[str, object]) -> str:
    document = yaml.safe_load(directory_yaml([north], rota=["NORTH"]))
    document["partners"] += [
        {
            "symbol": "BL",
            "name": "British Library",
            "protocol": "artemail",
            "endpoint": ENDPOINT_BL,
            "retry_minutes": [],
            "options": {
                "reply_to": HUB_BL,
                "mailbox_user": "hub-bl",
                "mailbox_password_env": "RSHUB_BL_MAILBOX_PASSWORD",
                "from_addresses": ["@bl.uk"],
                "accept_unverified": True,  # the test's SMTP server writes no DKIM verdict
                **bl_extra,
            },
        },
        {
            "symbol": "ILLIAD",
            "name": "ILLiad (last resort)",
            "protocol": "illiad-email",
            "endpoint": ENDPOINT_ILLIAD,
            "retry_minutes": [],
            "options": {
                "reply_to": "hub@localhost",
                "openurl_base": "https://illiad.example.edu/illiad/illiad.dll",
                "markers": {
                    "Username:": "Username",
                    "Request Type:": "RequestType",
                    "Title:": "LoanTitle",
                    "Author:": "LoanAuthor",
                    "ISBN:": "ISSN",
                    "Request Id:": "ILLNumber",
                },
            },
        },
    ]
    document["rotas"][0]["members"] = ["NORTH", "BL"]
    document["rotas"][0]["last_resort"] = ["ILLIAD"]
    return yaml.safe_dump(document, sort_keys=False)


def mail_env(servers: MailServers) -> dict[str, str]:
    env = {
        "RSHUB_SECRET_NORTH": "north-secret",
        "RSHUB_BL_CUSTOMER_CODE": CUSTOMER,
        "RSHUB_BL_ART_PASSWORD": ART_PASSWORD,
        "RSHUB_BL_MAILBOX_PASSWORD": USERS["hub-bl"],
        "RSHUB_SMTP_PASSWORD": USERS["hub-out"],
        "RSHUB_OUTBOUND_RETRIES": "2",
        "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
        "RSHUB_OUTBOUND_TIMEOUT_S": "10",
    }
    for connector in ("ARTEMAIL", "ILLIAD_EMAIL"):
        prefix = f"RSHUB_{connector}_"
        env |= {
            # The hub reads its mailbox with STARTTLS on the plain IMAP port.
            prefix + "IMAP_PORT": str(servers.dovecot.imap_port),
            prefix + "IMAP_TLS": "starttls",
            prefix + "SMTP_PORT": str(servers.smtp.port),
            prefix + "SMTP_TLS": "starttls",
            prefix + "SMTP_USER": "hub-out",
            prefix + "CA_FILE": str(servers.dovecot.cert),
            prefix + "RECONNECT_S": "0.2",
            prefix + "TIMEOUT_S": "10",
        }
    return env


@pytest.fixture
async def hub(
    bootstrap: str,
    north: Library,
    servers: MailServers,
    bl_extra: dict[str, object],
    tmp_path: Path,
) -> AsyncIterator[HubProcess]:
    path = tmp_path / "consortium.yaml"
    path.write_text(directory(north, bl_extra))
    running_hub = HubProcess(bootstrap, path, tmp_path, mail_env(servers))
    north.hub_url = running_hub.url
    await running_hub.start()
    yield running_hub
    running_hub.stop()


# --- helpers ------------------------------------------------------------------------------


async def ask(north: Library, request_id: str, **fields: Any) -> None:
    status, answer = await north.send(
        Message(event=Event.REQUEST, request_id=request_id, patron_id="patron-7", **fields)
    )
    assert status == 200 and answer.ok, answer


def body_of(raw: bytes) -> str:
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def header(raw: bytes, name: str) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)[name])


def reference_of(raw: bytes) -> str:
    """The TX reference of a single-request order (the lender request id)."""
    (found,) = re.findall(r"^TX(\S+) ", body_of(raw), re.MULTILINE)
    return found


def bl_reply(reference: str, *lines: str, sender: str = BL_SENDER, n: int = 1) -> bytes:
    """A BLDSS status report as the BL mails it (its layout is not public: code at the start
    of a line, our reference quoted back in the subject and beside the code)."""
    body = "\r\n".join([f"Your ref: TX{reference}", *lines, ""])
    return (
        f"From: British Library <{sender}>\r\nTo: {HUB_BL}\r\n"
        f"Subject: BLDSS status report FILEREFNO {reference}\r\n"
        f"Message-ID: <bldss-{reference}-{n}@bl.uk>\r\n\r\n{body}"
    ).encode()


async def reply(servers: MailServers, raw: bytes, sender: str = BL_SENDER) -> None:
    await submit(servers, raw, sender, HUB_BL)


async def records(
    bootstrap: str, topic: str, until: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    """Every record on `topic` from the beginning up to and including the first for which
    `until` is true (to count what came before it)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:

        async def scan() -> list[dict[str, Any]]:
            async for record in consumer:
                if record.value is None:
                    continue
                seen.append(json.loads(record.value))
                if until(seen[-1]):
                    return seen
            raise AssertionError("consumer ended")

        return await asyncio.wait_for(scan(), timeout)
    finally:
        await consumer.stop()


async def checkpoint(bootstrap: str, key: str) -> str:
    """The last position recorded under `key` on the compacted topic ill.checkpoints."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition("ill.checkpoints", p)
            for p in sorted(consumer.partitions_for_topic("ill.checkpoints") or [])
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: str | None = None
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                record = await consumer.getone(partition)
                if record.key == key.encode() and record.value is not None:
                    found = record.value.decode()
        assert found is not None, f"no checkpoint under {key}"
        return found
    finally:
        await consumer.stop()


def expected_order(blocks: list[list[str]]) -> str:
    """An ARTEmail order body exactly as FORMAT.md lays it out: customer code, ART password,
    four blank lines; each request followed by four blank lines; NNNN."""
    gap = ["", "", "", ""]
    lines = [CUSTOMER, ART_PASSWORD, *gap]
    for block in blocks:
        lines += [*block, *gap]
    return "\n".join([*lines, "NNNN"]) + "\n"


# --- tests ---------------------------------------------------------------------------------


async def test_copy_order_goes_out_as_artemail_and_shipped_copy_reaches_the_borrower(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    await ask(
        north,
        "N-1",
        request_format=RequestFormat.DIGITAL,
        bibliographic=ARTICLE,
        delivery_email="ill@north.example.ac.uk",
    )
    (order,) = await wait_for_mails(servers, "bl")
    reference = reference_of(order)
    assert re.fullmatch(r"t[0-9a-f]{16}\.1", reference)
    assert body_of(order) == expected_order(
        [
            [
                f"TX{reference} S SED99",  # BL only; secure electronic delivery
                "Death Studies",  # journal title
                "1992 PP 507-",  # year VOL PT PP (this article gives no volume or issue)
                "A revised death anxiety scale",  # article title
                "Thorson, J.A.",  # its author
                "0748-1187",  # ISSN
                "",
                "",
                "",
                "",
                ":DELIVER ABOVE ITEM TO:",
                "ill@north.example.ac.uk",
            ]
        ]
    )
    assert header(order, "Subject") == f"FILEREFNO {reference}"
    assert header(order, "From") == HUB_BL and header(order, "To") == "bl@localhost"
    assert all(len(line) <= orders.LINE for line in body_of(order).splitlines()[6:11])
    # The hub audited the mail it sent as it reached the BL's mailbox, but for the customer
    # code and ART password (a redelivery renders the order again; the audit never shows them).
    sent = await wait_for_record(
        bootstrap, "ill.audit", lambda r: r["direction"] == "out" and r["protocol"] == "artemail"
    )
    kept = audit_bytes(sent)
    assert ART_PASSWORD.encode() not in kept and CUSTOMER.encode() not in kept
    assert body_of(kept) == orders.redact_text(body_of(order))

    await reply(servers, bl_reply(reference, "SHIPPED COPY", "Your item has been sent."))
    shipped = await north.next()
    assert (shipped.event, shipped.request_id) == (Event.COPY_COMPLETED, "N-1")
    # The copy's request has ended: nothing more is waited for from anyone.
    txn = reference.rsplit(".", 1)[0]
    done = await wait_for_record(
        bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == "CopyCompleted"
    )
    assert done["next_deadline"] is None and done["needs_attention"] is None

    (processed,) = await wait_for_mails(servers, "hub-bl", "Processed")
    assert b"SHIPPED COPY" in processed
    assert servers.dovecot.count("hub-bl") == 0 and servers.dovecot.count("hub-bl", "Failed") == 0
    received = await wait_for_record(
        bootstrap, "ill.audit", lambda r: r["direction"] == "in" and r["protocol"] == "artemail"
    )
    assert "SHIPPED COPY" in received["body"] and received["partner"] == "BL"


async def test_loan_is_due_and_a_restart_applies_every_mail_once(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    await ask(north, "N-2", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    await ask(north, "N-3", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    mails = await wait_for_mails(servers, "bl", count=2)
    references = [reference_of(m) for m in mails]
    assert len(set(references)) == 2
    for reference, raw in zip(references, mails, strict=True):
        assert body_of(raw) == expected_order(
            [
                [
                    f"TX{reference} S LOAN",
                    "Property and wealth in classical Sparta",  # title
                    "Hodkinson, Stephen",  # author
                    "Duckworth, London",  # publisher, place
                    "2000",  # year (no volume, part or edition)
                    "0715630407",  # ISBN
                ]
            ]
        )

    # The BL lends the first; the borrower hears of it with the due date.
    await reply(servers, bl_reply(references[0], "DUE 15-01-2027", "Loan despatched."))
    loaned = await north.next()
    assert loaned.event is Event.LOANED and loaned.due_date == datetime(2027, 1, 15, tzinfo=UTC)
    other = {"N-2": "N-3", "N-3": "N-2"}[loaned.request_id]
    await wait_for_mails(servers, "hub-bl", "Processed", count=1)

    # The hub dies; the BL's report on the second arrives while it is down.
    hub.kill()
    await reply(servers, bl_reply(references[1], "DUE 20-01-2027", "Loan despatched."))
    await hub.start()

    loaned = await north.next()
    assert (loaned.event, loaned.request_id) == (Event.LOANED, other)
    assert loaned.due_date == datetime(2027, 1, 20, tzinfo=UTC)
    processed = await wait_for_mails(servers, "hub-bl", "Processed", count=2)
    assert len(processed) == 2 and servers.dovecot.count("hub-bl") == 0

    # The restarted hub read only the new mail: the first was audited once, before it.
    audits = await records(
        bootstrap,
        "ill.audit",
        lambda r: r["direction"] == "in" and "DUE 20-01-2027" in r["body"],
    )
    inbound = [a for a in audits if a["direction"] == "in" and a["protocol"] == "artemail"]
    assert ["DUE 15-01-2027" in a["body"] for a in inbound] == [True, False]
    # Its position is durable: the second mail (UID 2) taken and filed under Processed.
    validity, uid, folder = (await checkpoint(bootstrap, MAILBOX_KEY)).split(" ", 2)
    assert (int(validity) > 0, uid, folder) == (True, "2", "Processed")


async def test_not_moves_the_request_to_illiad_as_last_resort(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    await ask(north, "N-4", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    (order,) = await wait_for_mails(servers, "bl")
    reference = reference_of(order)
    await reply(servers, bl_reply(reference, "NOT", "Not available from the British Library."))

    (mail,) = await wait_for_mails(servers, "illiad")
    second = reference.rsplit(".", 1)[0] + ".2"
    lines = body_of(mail).splitlines()
    assert lines[:6] == [
        "Username: patron-7",
        "Request Type: Loan",
        "Title: Property and wealth in classical Sparta",
        "Author: Hodkinson, Stephen",
        "ISBN: 0715630407",
        f"Request Id: {second}",
    ]
    assert lines[6:8] == ["", "OpenURL:"]
    assert lines[8].startswith("https://illiad.example.edu/illiad/illiad.dll?Action=10&Form=30&")
    assert "rft.isbn=0715630407" in lines[8]
    assert header(mail, "To") == "illiad@localhost"
    routing = await wait_for_record(bootstrap, "ill.routing", lambda r: r["chosen"] == "ILLIAD")
    assert routing["attempt"] == 2
    # ILLiad answers over NCIP later; nothing about it reached the borrower by mail.
    assert north.received.empty()


async def test_foreign_and_unreadable_mail_goes_to_failed_and_the_dead_letters(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    await ask(north, "N-5", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    (order,) = await wait_for_mails(servers, "bl")
    reference = reference_of(order)
    foreign = bl_reply(reference, "CANC", sender="mallory@example.org", n=1)
    html = (
        f"From: {BL_SENDER}\r\nTo: {HUB_BL}\r\nSubject: FILEREFNO {reference}\r\n"
        "Content-Type: text/html\r\n\r\n<p>NOT</p>\r\n"
    ).encode()
    unknown = bl_reply("t000000000000dead.1", "DUE 01-02-2027", n=3)
    unmatched = (
        f"From: {BL_SENDER}\r\nTo: {HUB_BL}\r\nSubject: status\r\n\r\nDUE 01-02-2027\r\n"
    ).encode()
    for raw, sender in (
        (foreign, "mallory@example.org"),
        (html, BL_SENDER),
        (unknown, BL_SENDER),
        (unmatched, BL_SENDER),
    ):
        await reply(servers, raw, sender)
    # A genuine report after them is still read.
    await reply(servers, bl_reply(reference, "DUE 15-01-2027", n=4))
    loaned = await north.next()
    assert (loaned.event, loaned.request_id) == (Event.LOANED, "N-5")

    failed = await wait_for_mails(servers, "hub-bl", "Failed", count=4)
    assert len(failed) == 4  # kept, never deleted
    assert any(b"mallory@example.org" in m for m in failed)
    dead_foreign = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: "mallory@example.org" in r["error"]
    )
    assert dead_foreign["stage"] == "authenticate" and dead_foreign["partner"] == "BL"
    assert dead_foreign["audit_ref"]  # the mail's bytes are on ill.audit
    dead_html = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: "HTML-only" in r["error"]
    )
    assert dead_html["protocol"] == "artemail"
    # A reference of the right form naming no request: refused by the state machine.
    dead_unknown = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: r["transaction_id"] == "t000000000000dead"
    )
    assert (dead_unknown["stage"], dead_unknown["partner"]) == ("apply", "BL")
    no_reference = await wait_for_record(
        bootstrap, "ill.deadletter", lambda r: "no reference" in r["error"]
    )
    assert no_reference["partner"] == "BL"
    # The foreign CANC did not cancel anything: the loan stands.
    assert loaned.due_date == datetime(2027, 1, 15, tzinfo=UTC)


async def test_mails_over_the_body_limit_are_refused_and_later_mail_is_still_read(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    """A stranger's and the BL's mail of 1.5 MB (under the old 2,000,000-byte mail limit,
    over the hub's body limit and the producer's record limit) once stopped the
    mailbox listener for good; now each goes to Failed unread, and the report after them
    reaches the borrower."""
    await ask(north, "N-6", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    (order,) = await wait_for_mails(servers, "bl")
    reference = reference_of(order)
    filler = ("x" * 998 + "\r\n") * 1500
    for sender, n in (("mallory@example.org", 1), (BL_SENDER, 2)):
        await reply(servers, bl_reply(reference, "NOT", filler, sender=sender, n=n), sender)
    await reply(servers, bl_reply(reference, "DUE 15-01-2027", n=3))
    loaned = await north.next()
    assert (loaned.event, loaned.request_id) == (Event.LOANED, "N-6")

    failed = await wait_for_mails(servers, "hub-bl", "Failed", count=2)
    assert len(failed) == 2 and all(len(m) > 1_048_576 for m in failed)  # kept
    found: list[dict[str, Any]] = []

    def two_too_large(record: dict[str, Any]) -> bool:
        if "not read" in record["error"]:
            found.append(record)
        return len(found) == 2

    await records(bootstrap, "ill.deadletter", two_too_large)
    assert all((r["stage"], r["partner"], r["audit_ref"]) == ("parse", "BL", None) for r in found)
    assert all(f"over {Settings().max_body_bytes}" in r["error"] for r in found)
    # The mailbox listener is still there, and /health says so.
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/health") as answer:
        health = await answer.json()
    assert answer.status == 200, health
    mailboxes = {k: v for k, v in health["listeners"].items() if k.startswith("mail:artemail")}
    assert mailboxes and all(v["state"] in ("running", "connecting") for v in mailboxes.values())


# Orders wait for each other up to the window (far longer than the test), so the second
# request completes the batch: one mail, two requests, no clock involved.
@pytest.mark.parametrize("bl_extra", [{"batch_max": 2, "batch_window_s": 600}])
async def test_two_orders_share_one_mail_and_each_reply_reaches_its_request(
    hub: HubProcess, north: Library, servers: MailServers
) -> None:
    await ask(north, "N-7", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    await ask(
        north,
        "N-8",
        request_format=RequestFormat.DIGITAL,
        bibliographic=ARTICLE,
        delivery_email="ill@north.example.ac.uk",
    )
    (batch,) = await wait_for_mails(servers, "bl")
    references = re.findall(r"^TX(\S+) ", body_of(batch), re.MULTILINE)
    assert len(references) == 2
    blocks = {
        "LOAN": [
            "Property and wealth in classical Sparta",
            "Hodkinson, Stephen",
            "Duckworth, London",
            "2000",
            "0715630407",
        ],
        "SED99": [
            "Death Studies",
            "1992 PP 507-",
            "A revised death anxiety scale",
            "Thorson, J.A.",
            "0748-1187",
            "",
            "",
            "",
            "",
            ":DELIVER ABOVE ITEM TO:",
            "ill@north.example.ac.uk",
        ],
    }
    kinds = re.findall(r"^TX\S+ S (\S+)$", body_of(batch), re.MULTILINE)
    assert sorted(kinds) == ["LOAN", "SED99"]
    assert body_of(batch) == expected_order(
        [[f"TX{ref} S {kind}", *blocks[kind]] for ref, kind in zip(references, kinds, strict=True)]
    )
    assert header(batch, "Subject").startswith("FILEREFNO ")

    loan_ref, copy_ref = references if kinds[0] == "LOAN" else references[::-1]
    await reply(servers, bl_reply(copy_ref, "SHIPPED COPY"))
    shipped = await north.next()
    assert (shipped.event, shipped.request_id) == (Event.COPY_COMPLETED, "N-8")
    await reply(servers, bl_reply(loan_ref, "DUE 15-01-2027"))
    loaned = await north.next()
    assert (loaned.event, loaned.request_id) == (Event.LOANED, "N-7")


async def test_a_cancel_the_bl_takes_no_mail_for_is_answered_to_the_borrower(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    await ask(north, "N-6", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    await wait_for_mails(servers, "bl")
    status, answer = await north.send(
        Message(event=Event.CANCEL, request_id="N-6", patron_id="patron-7")
    )
    assert status == 200 and answer.ok, answer
    delivery = await wait_for_record(
        bootstrap,
        "ill.delivery",
        lambda r: r["recipient"] == "BL" and r["event"] == "Cancel",
    )
    assert delivery["outcome"] == "not_applicable"
    # Issue 12: "answered to the borrower as not supported by this partner".
    told = await north.next(timeout=30)
    assert (told.event, told.request_id, told.answer) == (Event.CANCEL_REPLY, "N-6", False)


async def test_a_bl_loan_goes_from_order_to_close_and_the_hub_closes_it_after_the_return(
    hub: HubProcess, north: Library, servers: MailServers, bootstrap: str
) -> None:
    """The BL never reports its check-in: the borrower's return leaves the loan Returned,
    listed for staff with the day it closes; the clock closes it then, with the reason on
    the timeline, and tells the borrower nothing (nobody checked the item in)."""
    await ask(north, "N-8", request_format=RequestFormat.PHYSICAL, bibliographic=BOOK)
    (order,) = await wait_for_mails(servers, "bl")
    reference = reference_of(order)
    txn = reference.rsplit(".", 1)[0]
    await reply(servers, bl_reply(reference, "DUE 15-01-2027", "Loan despatched."))
    loaned = await north.next()
    assert (loaned.event, loaned.request_id) == (Event.LOANED, "N-8")
    # The BL's automatic renewal, unasked: the borrower hears the new due date.
    await reply(servers, bl_reply(reference, "RENEWED*29-01-2027", n=2))
    renewed = await north.next()
    assert (renewed.event, renewed.answer) == (Event.RENEW_ANSWER, True)
    assert renewed.due_date == datetime(2027, 1, 29, tzinfo=UTC)

    for event in (Event.RECEIVED, Event.SHIPPED_RETURN):
        status, answer = await north.send(
            Message(event=event, request_id="N-8", item_id=loaned.item_id)
        )
        assert status == 200 and answer.ok, (event, answer)
    waiting = await wait_for_record(
        bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == "Returned"
    )
    note = waiting["needs_attention"] or ""
    assert note.startswith("the hub closes this loan on "), note
    assert "28 days after the borrower's return" in note
    assert "BL (artemail) cannot report its check-in" in note

    # The hub's own clock, 29 days on (as its timer would send it; nobody waits weeks).
    kafka = KafkaIO(bootstrap)
    await kafka.start()
    try:
        tick = Tick(transaction_id=txn, at=now() + timedelta(days=29))
        await kafka.send("ill.control", txn, tick.model_dump_json().encode())
    finally:
        await kafka.stop()
    closed = await wait_for_record(
        bootstrap,
        "ill.events",
        lambda r: r["transaction_id"] == txn and r["to_state"] == "LoanCompleted",
    )
    assert closed["from_state"] == "Returned" and closed["kind"] == "timer"
    assert "closed by the hub: BL (artemail) cannot report its check-in" in closed["detail"]
    row = await wait_for_record(
        bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == "LoanCompleted"
    )
    assert row["needs_attention"] is None and row["next_deadline"] is None
    assert north.received.empty()  # told nothing: nobody checked the item in
