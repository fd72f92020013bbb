"""Patron e-mail (docs/api.md, issue 29.4): a library's patron is mailed when a request
reaches a state the library chose, once, in the library's language, through the hub's SMTP
sender; a state it did not choose sends nothing."""

from __future__ import annotations

import asyncio
import email
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from connectors.api.patron import state_text
from connectors.core.contract import Attempt, Registry
from connectors.core.directory import Directory, Partner, PatronNotices
from connectors.core.model import Event
from connectors.simulator import TcpLibrary, directory_yaml, running
from hub.cli.process import HubProcess
from hub.ops.api import tokens
from hub.runtime import patron_notices
from hub.runtime.settings import Settings
from hub.runtime.status_links import status_path
from hub.runtime.webhook_store import Change
from tests import mail_servers as mail
from tests.mail_imap import wait_for_mails
from tests.test_api import PLACED, Client, hears, say
from tests.test_e2e_ncip import DUE

TITLE = PLACED["bibliographic"]["title"]  # type: ignore[index]
PATRON = "bl@patrons.example"  # the test server delivers by the local part: mailbox "bl"

# --- without a hub ---------------------------------------------------------------------------


def facts(state: str, lang: str, link: str | None = None) -> patron_notices.Facts:
    return patron_notices.Facts(
        request_id="W-1",
        title="Il nome della rosa",
        state=state_text(state, lang),
        due_date=datetime(2027, 3, 1, tzinfo=UTC),
        status_link=link,
    )


def test_the_built_in_templates_say_the_title_the_state_in_words_the_due_date_and_the_link() -> (
    None
):
    german = PatronNotices(language="de")
    subject, body = patron_notices.render_text(german, facts("Loaned", "de", "https://h/x"))
    assert subject == "Ihre Fernleihbestellung: Il nome della rosa"
    assert "Titel: Il nome della rosa" in body
    assert "Stand: Das Werk ist auf dem Weg zu Ihrer Bibliothek." in body
    assert "Zurückzugeben bis: 2027-03-01" in body
    assert "Ihre Bestellung verfolgen: https://h/x" in body
    _, english = patron_notices.render_text(PatronNotices(), facts("Overdue", "en"))
    assert "Status: It is overdue; please return it." in english
    assert "Follow your request" not in english  # no link: no line
    own = PatronNotices(subject="$title\nis here", template="$state / $due_date / $nope")
    subject, body = patron_notices.render_text(own, facts("Received", "en"))
    assert subject == "Il nome della rosa is here"  # one line
    assert body.startswith("It has arrived") and body.endswith("/ 2027-03-01 / $nope")


def test_the_mail_is_addressed_to_the_patron_from_the_library_in_its_language() -> None:
    notices = PatronNotices(language="de", from_address="fernleihe@lib.example")
    raw = patron_notices.render_mail(
        notices, facts("Loaned", "de"), PATRON, "hub@x", "hub.example", "t1:e1"
    )
    mail_ = email.message_from_bytes(raw, policy=policy.default)
    assert mail_["To"] == PATRON and mail_["From"] == "fernleihe@lib.example"
    assert mail_["Content-Language"] == "de" and "@hub.example>" in mail_["Message-ID"]
    assert "Zurückzugeben bis" in mail_.get_content()  # type: ignore[attr-defined]


def test_the_directory_block_is_optional_typed_and_defaulted() -> None:
    partner = Partner(symbol="WEB", name="WEB", protocol="api", lends=False)
    assert partner.patron_notices is None
    chosen = Partner.model_validate(
        {"symbol": "W", "name": "W", "protocol": "api", "lends": False, "patron_notices": {}}
    ).patron_notices
    assert chosen is not None and chosen.states == [
        "Loaned",
        "CopyCompleted",
        "Received",
        "Overdue",
    ]
    with pytest.raises(ValueError):
        PatronNotices.model_validate({"language": "deutsch"})
    with pytest.raises(ValueError):
        PatronNotices.model_validate({"colour": "red"})


def test_the_directory_reference_shows_the_block_as_the_model_says() -> None:
    from hub.cli import reference

    section = "\n".join(reference._section("PatronNotices", PatronNotices, None)).rstrip()
    assert section in (Path(__file__).parent.parent / "docs" / "directory.md").read_text()


def test_the_outbox_takes_a_notice_once_and_forgets_the_mail_once_sent(tmp_path: Path) -> None:
    store = patron_notices.Store(tmp_path / patron_notices.FILE)
    store.start({0: 3, 1: 0})
    store.start({0: 9})  # a later start keeps the position
    assert store.offsets() == {0: 3, 1: 0}
    made = [("t1:e1", "WEB", "t1", "Loaned", b"mail")]
    assert store.take({0: 4, 1: 0}, made, 0.0) == 1
    assert store.take({0: 4, 1: 0}, made, 0.0) == 0  # read again after a crash
    (due,) = store.due(1.0)
    store.failed(due.id, "could not send", 100.0, parked=False)
    assert store.due(1.0) == [] and store.counts() == {("WEB", "waiting"): 1}
    (again,) = store.due(100.0)
    assert again.attempts == 1
    store.sent(again.id, 101.0)
    assert store.status("t1:e1") == "sent" and store.due(1e12) == []
    assert store.db.execute("SELECT mail FROM notices").fetchone()[0] is None
    assert (tmp_path / patron_notices.FILE).stat().st_mode & 0o077 == 0


class FlakySender:
    """An SMTP sender whose answers are given: (ok, retryable) per try."""

    def __init__(self, *answers: tuple[bool, bool]) -> None:
        self.answers, self.sent = list(answers), 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        self.sent += 1
        ok, retryable = self.answers.pop(0)
        return Attempt(ok, retryable, "refused: <bl@patrons.example>" if not ok else "ok")


async def test_a_failed_mail_is_tried_again_on_the_librarys_schedule_and_a_refused_one_never(
    tmp_path: Path,
) -> None:
    directory = Directory(
        consortium="c",
        partners=[
            Partner(
                symbol="WEB",
                name="WEB",
                protocol="api",
                lends=False,
                retry_minutes=[0.001],
                parked_retry_minutes=0.002,
                patron_notices=PatronNotices(),
            )
        ],
    )
    service = patron_notices.PatronNotices(
        Settings(data_dir=tmp_path), directory, "", Registry([]), None, lambda _: ("other", None)
    )
    sender = FlakySender((False, True), (False, True), (True, False), (False, False))
    service.sender = sender
    store = patron_notices.Store(tmp_path / patron_notices.FILE)
    store.take({}, [("t1:e1", "WEB", "t1", "Loaned", b"mail")], time.time())
    await service._send_due(store)
    assert store.status("t1:e1") == "waiting" and store.due(time.time()) == []
    await asyncio.sleep(0.1)  # 0.06 s: the library's first retry
    await service._send_due(store)
    assert store.status("t1:e1") == "parked"  # its schedule is used up
    await asyncio.sleep(0.15)
    await service._send_due(store)
    assert store.status("t1:e1") == "sent" and sender.sent == 3
    row = store.db.execute("SELECT last_error, mail FROM notices").fetchone()
    assert tuple(row) == (None, None)
    store.take({}, [("t2:e1", "WEB", "t2", "Loaned", b"mail")], time.time())
    await service._send_due(store)
    assert store.status("t2:e1") == "failed" and store.due(time.time() + 1e6) == []
    (error,) = store.db.execute("SELECT last_error FROM notices WHERE id = 't2:e1'").fetchone()
    assert "@" not in error  # the server's words, which may name the patron, are not kept


def test_facts_come_from_the_transaction_row() -> None:
    row = {
        "borrower_request_id": "W-1",
        "due_date": "2027-03-01T00:00:00+00:00",
        "request": {"patron_email": PATRON, "bibliographic": {"title": "T"}},
    }
    change = Change("e1", "WEB", "t1", "W-1", "Loaned", "Requested", "Loaned", datetime.now(UTC))
    notices = PatronNotices(language="de", status_base_url="https://hub.example/")
    address, said = patron_notices.facts_of(row, change, notices, state_text, True)
    assert address == PATRON and said.title == "T" and said.due_date is not None
    assert said.status_link == "https://hub.example" + status_path("WEB", "W-1")
    assert patron_notices.facts_of(row, change, notices, state_text, False)[1].status_link is None


# --- with a hub, a lender and a mail server --------------------------------------------------


@pytest.fixture
def servers() -> Iterator[mail.MailServers]:
    if not mail.available():
        pytest.skip("dovecot is not installed")
    with mail.mail_servers() as running_servers:
        yield running_servers


@pytest.fixture
async def libraries() -> AsyncIterator[dict[str, TcpLibrary]]:
    libs = {"VDX": TcpLibrary("VDX", "VDX-LIB")}
    async with running(libs):
        yield libs


@pytest.fixture
async def hub_parts(
    bootstrap: str,
    libraries: dict[str, TcpLibrary],
    servers: mail.MailServers,
    tmp_path: Path,
) -> AsyncIterator[dict[str, Any]]:
    document = yaml.safe_load(directory_yaml(list(libraries.values()), rota=["VDX"]))
    document["partners"].append(
        {
            "symbol": "WEB",
            "name": "WEB",
            "protocol": "api",
            "lends": False,
            "patron_notices": {
                "states": ["Loaned", "Overdue"],
                "language": "de",
                "from_address": "fernleihe@library.example",
                "status_base_url": "https://hub.example.org",
            },
        }
    )
    directory = tmp_path / "consortium.yaml"
    directory.write_text(yaml.safe_dump(document))
    token = tokens.add(tmp_path / "api-tokens", "web-discovery", "WEB", ["read", "request", "act"])
    prefix = "RSHUB_ILLIAD_EMAIL_"
    env = {
        "RSHUB_OUTBOUND_BACKOFF_S": "0.1",
        "RSHUB_SMTP_PASSWORD": mail.USERS["hub-out"],
        prefix + "SMTP_PORT": str(servers.smtp.port),
        prefix + "SMTP_TLS": "starttls",
        prefix + "SMTP_USER": "hub-out",
        prefix + "CA_FILE": str(servers.dovecot.cert),
        prefix + "TIMEOUT_S": "10",
    }
    hub = HubProcess(bootstrap, directory, tmp_path, env)
    libraries["VDX"].hub_tcp = ("127.0.0.1", hub.iso10161_port)
    await hub.start()
    async with aiohttp.ClientSession() as session:
        yield {"hub": hub, "web": Client(session, hub.url + "/api/v1", token), "dir": tmp_path}
    hub.stop()


async def following(data_dir: Path, timeout: float = 60) -> None:
    """Until the service has its position in ill.events (what happens before is not told)."""
    path = data_dir / patron_notices.FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with sqlite3.connect(path) as db:
                if db.execute("SELECT COUNT(*) FROM offsets").fetchone()[0]:
                    return
        await asyncio.sleep(0.2)
    raise AssertionError("the patron notice service never started following")


@pytest.mark.kafka
async def test_the_patron_is_mailed_once_in_german_when_the_loan_ships_and_not_on_receipt(
    hub_parts: dict[str, Any], libraries: dict[str, TcpLibrary], servers: mail.MailServers
) -> None:
    web, vdx = hub_parts["web"], libraries["VDX"]
    await following(hub_parts["dir"])
    patron = {**PLACED["patron"], "email": PATRON}  # type: ignore[dict-item]
    placed_request = {**PLACED, "patron": patron}
    status, placed, _ = await web.call("POST", "/requests", placed_request)
    assert status == 201, placed
    asked = await hears(vdx, Event.REQUEST)
    await say(vdx, Event.LOANED, asked.request_id, due_date=DUE)
    (raw,) = await wait_for_mails(servers, "bl", count=1, timeout=90)
    got = email.message_from_bytes(raw, policy=policy.default)
    body = got.get_content()  # type: ignore[attr-defined]
    assert got["From"] == "fernleihe@library.example" and got["To"] == PATRON
    assert got["Subject"] == f"Ihre Fernleihbestellung: {TITLE}"
    assert "Stand: Das Werk ist auf dem Weg zu Ihrer Bibliothek." in body
    assert f"Zurückzugeben bis: {DUE.date().isoformat()}" in body
    assert "https://hub.example.org" + placed["status_url"] in body
    # Received is not a state WEB chose: nothing more is sent.
    status, done, _ = await web.call("POST", "/requests/W-1/received", None)
    assert status == 202, done
    await hears(vdx, Event.RECEIVED)
    await asyncio.sleep(5)
    assert servers.dovecot.count("bl") == 1
    # Killed and started again: ill.events is read on from the stored position, no repeat.
    hub_parts["hub"].kill()
    await hub_parts["hub"].start()
    status, done, _ = await web.call("POST", "/requests/W-1/returned", None)
    assert status == 202, done
    await hears(vdx, Event.SHIPPED_RETURN)
    await asyncio.sleep(5)
    assert servers.dovecot.count("bl") == 1
    with sqlite3.connect(hub_parts["dir"] / patron_notices.FILE) as db:
        rows = db.execute("SELECT state, status, mail FROM notices").fetchall()
    assert rows == [("Loaned", "sent", None)]
    assert PATRON not in (hub_parts["dir"] / "hub.log").read_text()  # nor the body
    assert "Zurückzugeben" not in (hub_parts["dir"] / "hub.log").read_text()
