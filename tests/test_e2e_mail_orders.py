"""End to end: the hub takes ARTEmail orders by mail (it stands where the BL would), on a real
Dovecot and SMTP server, and its lender is a simulated ISO 18626 library over HTTP.

A library's system that writes ARTEmail orders (Koha's BL scripts, say) mails them to the
hub's order mailbox; the hub reads every request of a mail completely or refuses the mail
whole (Failed, a dead letter, the refusal counted), and each loan or copy it took goes from
order to close. An ARTEmail borrower can report nothing after its order, so the lender's
check-in closes the loan (the silent-partner rows); the hub mails the borrower nothing back
(ARTEmail has no reply the hub can write: docs/mail.md). Every wait is on a record, a message
at the lender or a mail in a folder, never on time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from connectors.core.model import Event, Message, ServiceType, transaction_id
from connectors.simulator import Library, directory_yaml, running
from hub.cli.process import HubProcess
from tests.kafka_reader import wait_for_record
from tests.mail_imap import submit, wait_for_mails
from tests.mail_servers import USERS, MailServers, available, mail_servers
from tests.test_e2e_mail import mail_env

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(not available(), reason="dovecot is not installed (.ci/run)"),
]

LIBRARY = "ill@library.example.ac.uk"  # the ordering library's system
HUB_ORDERS = "hub-orders@localhost"  # the hub's order mailbox (login hub-orders)
GAP = "\r\n" * 4


@pytest.fixture
def servers() -> Iterator[MailServers]:
    with mail_servers() as running_servers:
        yield running_servers


@pytest.fixture
async def south() -> AsyncIterator[Library]:
    libs = {"SOUTH": Library("SOUTH", "ISIL:SOUTH", "south-secret", protocol="iso18626")}
    async with running(libs):
        yield libs["SOUTH"]


def directory(south: Library) -> str:
    document = yaml.safe_load(directory_yaml([south], rota=["SOUTH"]))
    document["partners"].append(
        {
            "symbol": "UH",
            "name": "A library ordering by ARTEmail",
            "protocol": "artemail",
            "lends": False,
            "endpoint": f"mailto:{LIBRARY}",
            "options": {
                "reply_to": HUB_ORDERS,
                "mailbox_user": "hub-orders",
                "mailbox_password_env": "RSHUB_ORDERS_MAILBOX_PASSWORD",
                "from_addresses": [LIBRARY],
                "accept_unverified": True,  # the test's SMTP server writes no DKIM verdict
            },
        }
    )
    return yaml.safe_dump(document, sort_keys=False)


@pytest.fixture
async def hub(
    bootstrap: str, south: Library, servers: MailServers, tmp_path: Path
) -> AsyncIterator[HubProcess]:
    path = tmp_path / "consortium.yaml"
    path.write_text(directory(south))
    env = {
        **mail_env(servers),
        "RSHUB_SECRET_SOUTH": "south-secret",
        "RSHUB_ORDERS_MAILBOX_PASSWORD": USERS["hub-orders"],
    }
    running_hub = HubProcess(bootstrap, path, tmp_path, env)
    south.hub_url = running_hub.url
    await running_hub.start()
    yield running_hub
    running_hub.stop()


def order_mail(*blocks: str, n: int = 1) -> bytes:
    """An ARTEmail order as FORMAT.md lays it out: customer code, ART password, four blank
    lines, each request followed by four blank lines, NNNN."""
    body = "87-9999\r\nARTPW" + GAP + "".join(block + GAP for block in blocks) + "NNNN\r\n"
    return (
        f"From: {LIBRARY}\r\nTo: {HUB_ORDERS}\r\nSubject: ART order {n}\r\n"
        f"Message-ID: <order-{n}@library.example.ac.uk>\r\n\r\n{body}"
    ).encode()


ARTICLE = "\r\n".join(
    [
        "TXUH-1301 S SED99",
        "Journal of Social Issues",
        "2013 VOL 68 PT 2 PP 238-",
        "Developing the research basis for contro",
        "Bendick Jr, M.",
        "0022-4537",
        *GAP.split("\r\n")[:4],
        ":DELIVER ABOVE ITEM TO:",
        "ill@library.example.ac.uk",
    ]
)
BOOK = "\r\n".join(
    [
        "TXUH-1202 S LOAN",
        "Property and wealth in classical Sparta",
        "Hodkinson, Stephen",
        "Duckworth, London",
        "2000 2nd ed",
        "0715630407",
    ]
)


async def lender_says(south: Library, event: Event, request_id: str, **fields: object) -> None:
    status, answer = await south.send(Message(event=event, request_id=request_id, **fields))
    assert status == 200 and answer.ok, (event, answer)


async def ended(bootstrap: str, txn: str, state: str) -> dict[str, object]:
    return await wait_for_record(
        bootstrap, "ill.transactions", lambda t: t["id"] == txn and t["state"] == state
    )


async def test_an_order_mail_of_a_copy_and_a_loan_is_read_whole_and_each_goes_to_its_end(
    hub: HubProcess, south: Library, servers: MailServers, bootstrap: str
) -> None:
    await submit(servers, order_mail(ARTICLE, BOOK), LIBRARY, HUB_ORDERS)
    asked = {}
    for _ in range(2):
        request = await south.next()
        assert request.event is Event.REQUEST
        asked[request.service_type] = request
    copy, loan = asked[ServiceType.COPY], asked[ServiceType.LOAN]
    # Every line of each request reached the lender, not only the first request's first.
    assert copy.bibliographic is not None and loan.bibliographic is not None
    assert copy.bibliographic.title == "Journal of Social Issues"
    assert copy.bibliographic.title_of_component == "Developing the research basis for contro"
    assert copy.bibliographic.author_of_component == "Bendick Jr, M."
    assert (copy.bibliographic.volume, copy.bibliographic.issue) == ("68", "2")
    assert copy.bibliographic.pages_requested == "238-"
    assert copy.bibliographic.issn == "0022-4537"
    assert copy.delivery_email == "ill@library.example.ac.uk"
    assert loan.bibliographic.title == "Property and wealth in classical Sparta"
    assert loan.bibliographic.author == "Hodkinson, Stephen"
    assert loan.bibliographic.publisher == "Duckworth"
    assert loan.bibliographic.edition == "2nd ed"
    assert loan.bibliographic.isbn == "0715630407"
    (processed,) = await wait_for_mails(servers, "hub-orders", "Processed")
    assert b"TXUH-1202" in processed and servers.dovecot.count("hub-orders", "Failed") == 0

    # The copy: the lender sends it, and the request ends.
    await lender_says(south, Event.COPY_COMPLETED, copy.request_id)
    await ended(bootstrap, transaction_id("UH", "UH-1301"), "CopyCompleted")
    # The loan: lent, and checked in by the lender (the borrower cannot report its receipt
    # or return by ARTEmail: the check-in closes it).
    await lender_says(south, Event.LOANED, loan.request_id, item_id="S-1")
    await ended(bootstrap, transaction_id("UH", "UH-1202"), "Loaned")
    await lender_says(south, Event.LOAN_COMPLETED, loan.request_id, item_id="S-1")
    done = await ended(bootstrap, transaction_id("UH", "UH-1202"), "LoanCompleted")
    assert done["needs_attention"] is None and done["next_deadline"] is None


async def test_an_order_mail_with_a_request_that_cannot_be_read_is_refused_whole(
    hub: HubProcess, south: Library, servers: MailServers, bootstrap: str
) -> None:
    """One unreadable request (here the second has no bibliographic lines) refuses the whole
    mail: nothing of it reaches a lender, it is filed under Failed, a dead letter says why,
    and the refusal is counted; the next mail is read as usual."""
    broken = order_mail(ARTICLE, "TXUH-1400 S LOAN", n=1)
    await submit(servers, broken, LIBRARY, HUB_ORDERS)
    await submit(servers, order_mail(BOOK, n=2), LIBRARY, HUB_ORDERS)

    # The mails are read in order: the first request any lender sees is the second mail's.
    first = await south.next()
    assert (first.event, first.request_id) == (
        Event.REQUEST,
        f"{transaction_id('UH', 'UH-1202')}.1",
    )
    (failed,) = await wait_for_mails(servers, "hub-orders", "Failed")
    assert b"TXUH-1400" in failed
    letter = await wait_for_record(bootstrap, "ill.deadletter", lambda r: "UH-1400" in r["error"])
    assert (letter["stage"], letter["partner"], letter["protocol"]) == ("parse", "UH", "artemail")
    assert "no bibliographic lines" in letter["error"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.url}/metrics") as response,
    ):
        exposition = await response.text()
    assert 'rshub_refusals_total{protocol="artemail",reason="parse"} 1.0' in exposition
    # The first request of the refused mail was not taken either.
    assert south.received.empty()
