"""OpenURL end to end: the real hub (a process on the embedded broker) with OpenURL borrowers
(NORTH, WEST), NCIP lenders (SOUTH, EAST: simulated libraries on real HTTP servers) and
OpenURL lenders (RELAIS, ILLIAD: real HTTP servers recording the links they get). What the
patron's browser gets, what the lender got, and what is on the hub's topics."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.core.model import Event, Message, transaction_id
from connectors.openurl.sender import FORM_LINK, STAFF_LINK
from tests.kafka_reader import wait_for_record
from tests.openurl_helpers import (
    NORTH_BEARER,
    NORTH_REFERRER,
    NORTH_TOKEN,
    VALE_TOKEN,
    WEST_TOKEN,
    OpenUrlHub,
    form_fields,
    hidden_fields,
    openurl_hub,
    signed_patron,
)

pytestmark = pytest.mark.kafka

JSON = {"Accept": "application/json"}
BOOK = (
    f"url_ver=Z39.88-2004&rfr_id={NORTH_REFERRER}"
    "&rft_val_fmt=info:ofi/fmt:kev:mtx:book&rft.genre=book&rft.btitle=Dynamic+mode+decomposition"
    "&rft.au=Kutz,+J.+Nathan&rft.isbn=9781611974492&rft.date=2016"
)
# An article: a copy, so NORTH's articles rota (RELAIS) is asked.
ARTICLE = (
    f"url_ver=Z39.88-2004&rfr_id={NORTH_REFERRER}"
    "&rft_val_fmt=info:ofi/fmt:kev:mtx:journal&rft.genre=article"
    "&rft.jtitle=Mayo+Clinic+Proceedings&rft.atitle=Postural+Pseudoanemia&rft.issn=00256196"
    "&rft.volume=80&rft.issue=5&rft.spage=611&rft.epage=614&rft_id=info:doi/10.4065/80.5.611"
)
DUE = datetime(2027, 1, 15, tzinfo=UTC)


@pytest.fixture
async def ou(bootstrap: str, tmp_path: Path) -> AsyncIterator[OpenUrlHub]:
    async with openurl_hub(bootstrap, tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    # A patron's browser: keeps the form's session cookie (set by a host that is an address).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with session.get(url, headers=headers or {}) as reply:
        return reply.status, await reply.text()


async def until(
    read: Callable[[], Awaitable[tuple[int, str]]], wanted: str, timeout: float = 60.0
) -> str:
    """Read a page until it says `wanted`. The status page reads the worker's table, which
    is written just after the transition it shows is produced: there is no event to await
    from outside, so the page is read again until it shows it (or the time runs out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, text = await read()
        if status == 200 and wanted in text:
            return text
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never said {wanted!r}; last ({status}): {text[:500]}")
        await asyncio.sleep(0.2)


async def ship(ou: OpenUrlHub, asked: Message) -> None:
    """SOUTH tells the hub it has lent the item it was asked for."""
    status, answer = await ou.lenders["SOUTH"].send(
        Message(event=Event.LOANED, request_id=asked.request_id, item_id="SOUTH-1", due_date=DUE)
    )
    assert status == 200 and answer.ok, answer


async def test_signed_link_reaches_the_lender_and_the_status_page_follows_the_loan(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    link = f"{ou.url}/openurl/NORTH?{BOOK}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    async with browser.get(link, headers=JSON) as reply:
        assert reply.status == 201
        created: dict[str, Any] = await reply.json()
    assert created["status"] == "accepted" and created["request_id"].startswith("OU-")

    asked = await ou.lenders["SOUTH"].next()
    assert asked.event is Event.REQUEST
    assert asked.bibliographic is not None
    assert asked.bibliographic.isbn == "9781611974492"
    assert asked.bibliographic.title == "Dynamic mode decomposition"
    assert asked.patron_id == "patron-42"

    status_url = ou.url + created["status_url"]
    page = await until(lambda: fetch(browser, status_url), "We have asked a library to supply it.")
    assert created["request_id"] in page

    await ship(ou, asked)
    await until(lambda: fetch(browser, status_url), "It is on its way to your library.")
    async with browser.get(status_url, headers=JSON) as reply:
        data = await reply.json()
    assert data == {
        "request_id": created["request_id"],
        "state": "Loaned",
        "state_text": "It is on its way to your library.",
    }
    # The link's token and patron signature are nowhere in what the hub keeps.
    audit = await wait_for_record(
        ou.bootstrap,
        "ill.audit",
        lambda r: r["direction"] == "in" and r["partner"] == "NORTH",
    )
    assert NORTH_TOKEN not in audit["body"] and "req_sig" not in audit["body"]
    assert "rshub.patron=patron-42" in audit["body"]


async def test_a_patrons_loan_from_an_ncip_lender_ends_with_the_lenders_check_in(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    """An OpenURL borrower cannot report receipt or return: the lender's check-in after
    Loaned closes the loan (it was refused with state-transition-prohibited)."""
    link = f"{ou.url}/openurl/NORTH?{BOOK}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    async with browser.get(link, headers=JSON) as reply:
        created: dict[str, Any] = await reply.json()
    status_url = ou.url + created["status_url"]
    asked = await ou.lenders["SOUTH"].next()
    await ship(ou, asked)
    await until(lambda: fetch(browser, status_url), "It is on its way to your library.")
    status, answer = await ou.lenders["SOUTH"].send(
        Message(event=Event.LOAN_COMPLETED, request_id=asked.request_id, item_id="SOUTH-1")
    )
    assert status == 200 and answer.ok, answer
    await until(lambda: fetch(browser, status_url), "Completed: this loan is closed.")


async def test_a_patrons_loan_from_an_iso10161_lender_ends_with_the_lenders_check_in(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    """VALE's patrons type their card number in the form; VALE's rota is VDX (ISO 10161)."""
    status, html = await fetch(browser, f"{ou.url}/openurl/VALE?{BOOK}&rshub_token={VALE_TOKEN}")
    form = {**form_fields(html), "patron_id": "v-1"}
    async with browser.post(f"{ou.url}/openurl/VALE", data=form, headers=JSON) as reply:
        assert (status, reply.status) == (200, 201)
        created: dict[str, Any] = await reply.json()
    status_url = ou.url + created["status_url"]
    vdx = ou.lenders["VDX"]
    asked = await vdx.next()
    assert asked.event is Event.REQUEST
    for event, fields in (
        (Event.LOANED, {"item_id": "VDX-1", "due_date": DUE}),  # ISO 10161 Shipped
        (Event.LOAN_COMPLETED, {}),  # Checked-in
    ):
        status, answer = await vdx.send(Message(event=event, request_id=asked.request_id, **fields))
        assert status == 200 and answer.ok, (event, answer)
    await until(lambda: fetch(browser, status_url), "Completed: this loan is closed.")
    closed = await wait_for_record(
        ou.bootstrap,
        "ill.events",
        lambda r: (
            r["transaction_id"] == transaction_id("VALE", created["request_id"])
            and r["to_state"] == "LoanCompleted"
        ),
    )
    assert closed["from_state"] == "Loaned"


async def test_link_without_data_gets_the_form_and_posting_it_makes_the_request(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    # A Google Scholar-like link with the author only, and no patron.
    link = f"{ou.url}/openurl/NORTH?sid=google&genre=book&aulast=Kutz&rshub_token={NORTH_TOKEN}"
    status, html = await fetch(browser, link)
    assert status == 200
    assert '<form method="post"' in html and 'value="Kutz"' in html
    assert '<option value="Law library">Law library</option>' in html
    fields = hidden_fields(html)
    form = {
        **fields,
        "title": "Dynamic mode decomposition",
        "isbn": "978-1-611974-49-2",
        "author": "Kutz, J.",
        "service": "loan",
        "pickup": "Law library",
        "need_before": "2099-12-31",
        "note": "Chapter 3 first, please",
        "patron_id": "card-123",
        "patron_email": "card@north.edu",
    }
    async with browser.post(f"{ou.url}/openurl/NORTH", data=form) as reply:
        assert reply.status == 200
        page = await reply.text()
    number = re.search(r'id="request-number">([^<]+)<', page)
    assert number is not None and number.group(1) == fields["number"]

    asked = await ou.lenders["SOUTH"].next()
    assert asked.event is Event.REQUEST
    assert asked.bibliographic is not None
    assert asked.bibliographic.title == "Dynamic mode decomposition"
    assert asked.bibliographic.isbn == "9781611974492"
    assert asked.patron_id == "card-123"
    assert asked.need_before is not None and asked.need_before.date().isoformat() == "2099-12-31"

    found = re.search(r'id="status-link" href="([^"]+)"', page)
    assert found is not None
    status_url = ou.url + unescape(found.group(1))
    await until(lambda: fetch(browser, status_url), "We have asked a library to supply it.")

    # The same form sent again (a double click) is the same request, not a second one.
    async with browser.post(f"{ou.url}/openurl/NORTH", data=form) as reply:
        assert reply.status == 200 and fields["number"] in await reply.text()
    await ship(ou, asked)
    await until(lambda: fetch(browser, status_url), "It is on its way to your library.")
    assert ou.lenders["SOUTH"].received.empty() and ou.lenders["EAST"].received.empty()


async def test_json_clients_get_what_is_missing_and_the_form_fields(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    link = f"{ou.url}/openurl/NORTH?{BOOK}&rshub_token={NORTH_TOKEN}"  # no patron
    async with browser.get(link, headers=JSON) as reply:
        assert reply.status == 422
        data = await reply.json()
    assert data["status"] == "incomplete" and data["missing"] == ["patron"]
    assert data["citation"]["title"] == "Dynamic mode decomposition"
    assert set(data["form"]) == {"number", "patron_signed", "expires", "kev", "csrf"}
    # Sent back as the form with a card number, it is a request.
    form = {**data["form"], "title": "Dynamic mode decomposition", "patron_id": "card-7"}
    async with browser.post(f"{ou.url}/openurl/NORTH", data=form, headers=JSON) as reply:
        assert reply.status == 201
        created = await reply.json()
    assert created["request_id"] == data["form"]["number"]
    assert (await ou.lenders["SOUTH"].next()).patron_id == "card-7"
    # The consortium-wide address finds NORTH by its referrer; the bearer header stands in
    # for the link token.
    async with browser.get(
        f"{ou.url}/openurl?{ARTICLE}{signed_patron()}",
        headers={**JSON, "Authorization": f"Bearer {NORTH_BEARER}"},
    ) as reply:
        assert reply.status == 201
        assert (await reply.json())["status"] == "accepted"
    unknown = f"{ou.url}/openurl?rfr_id=info:sid/nobody&rft.btitle=X"
    async with browser.get(unknown, headers=JSON) as reply:
        assert reply.status == 404 and (await reply.json())["status"] == "refused"


@pytest.mark.parametrize("token", ["", "&rshub_token=wrong", f"&rshub_token={WEST_TOKEN}"])
async def test_unauthenticated_link_gets_401_and_a_dead_letter(
    ou: OpenUrlHub, browser: aiohttp.ClientSession, token: str
) -> None:
    status, html = await fetch(browser, f"{ou.url}/openurl/NORTH?{BOOK}{token}{signed_patron()}")
    assert status == 401 and "This link is not valid for this library." in html
    dead = await wait_for_record(
        ou.bootstrap,
        "ill.deadletter",
        lambda r: r["partner"] == "NORTH" and r["protocol"] == "openurl",
    )
    assert dead["stage"] == "authenticate" and "not accepted" in dead["error"]
    assert ou.lenders["SOUTH"].received.empty()


async def test_a_stranger_cannot_order_through_the_form(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    """Issue 22.1, as the attack went: post any csrf, post back the form the refusal carried
    with a typed patron. Nothing may reach a lender; the borrower's own link still works."""
    attack = {"csrf": "x", "title": "Any book", "patron_id": "someone", "service": "loan"}
    async with browser.post(f"{ou.url}/openurl/NORTH", data=attack) as reply:
        assert reply.status == 403 and "Set-Cookie" not in reply.headers
        page = await reply.text()
    assert hidden_fields(page) == {}
    async with browser.post(
        f"{ou.url}/openurl/NORTH", data={**attack, **hidden_fields(page)}
    ) as reply:
        assert reply.status == 403
    await wait_for_record(
        ou.bootstrap,
        "ill.deadletter",
        lambda r: r["partner"] == "NORTH" and "form token" in r["error"],
    )
    link = f"{ou.url}/openurl/NORTH?{BOOK}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    status, _ = await fetch(browser, link, JSON)
    assert status == 201
    first = await ou.lenders["SOUTH"].next()
    assert first.patron_id == "patron-42"  # the first (and only) request SOUTH got


async def test_an_over_long_link_gets_the_openurl_page(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    status, page = await fetch(browser, f"{ou.url}/openurl/NORTH?{BOOK}&rft.au=" + "a" * 20_000)
    assert status == 413 and "<html" in page


async def test_article_goes_to_a_relais_lender_as_an_openurl(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    link = f"{ou.url}/openurl/NORTH?{ARTICLE}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    async with browser.get(link, headers=JSON) as reply:
        assert reply.status == 201
        created = await reply.json()
    method, items = await ou.relais.next()
    keys = dict(items)
    assert method == "GET" and keys["LS"] == "RSHUB" and keys["url_ver"] == "Z39.88-2004"
    assert keys["rft.genre"] == "article" and keys["rft.atitle"] == "Postural Pseudoanemia"
    assert (keys["rft.volume"], keys["rft.issue"], keys["rft.pages"]) == ("80", "5", "611-614")
    assert ("rft_id", "info:doi/10.4065/80.5.611") in items
    assert keys["rft.issn"] == "0025-6196"
    txn = transaction_id("NORTH", created["request_id"])
    delivered = await wait_for_record(
        ou.bootstrap,
        "ill.delivery",
        lambda r: r["recipient"] == "RELAIS" and r["outcome"] == "sent",
    )
    assert delivered["transaction_id"] == txn and delivered["event"] == "Request"
    # The simulated Relais answers with its prefilled request form: nobody submitted it yet,
    # so the delivery is a link for staff (it was counted as delivered).
    assert delivered["detail"].startswith(FORM_LINK), delivered["detail"]
    assert ou.lenders["SOUTH"].received.empty()


async def test_illiad_lender_gets_the_link_recorded_for_staff(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    west = f"{ou.url}/openurl/WEST?{BOOK}&rshub_token={WEST_TOKEN}"
    status, html = await fetch(browser, west)
    form = {**form_fields(html), "patron_id": "w-1"}  # the link's citation, as prefilled
    async with browser.post(f"{ou.url}/openurl/WEST", data=form, headers=JSON) as reply:
        assert (status, reply.status) == (200, 201)
    delivered = await wait_for_record(
        ou.bootstrap, "ill.delivery", lambda r: r["recipient"] == "ILLIAD"
    )
    assert delivered["outcome"] == "sent"
    assert delivered["detail"].startswith(STAFF_LINK)
    assert (
        "Action=10&Form=30" in delivered["detail"] and "isbn=9781611974492" in delivered["detail"]
    )
    assert ou.illiad.received.empty()  # ILLiad makes a person log in: nothing was sent
    # Staff find it in `rshub deliveries` (it said nothing waits).
    env = {k: v for k, v in ou.hub.env.items() if k != "RSHUB_APP_ID"}
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hub.cli", "deliveries"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert listed.returncode == 0, listed.stderr
    assert "ILLIAD: 0 retrying, 0 parked, 1 for staff to submit" in listed.stdout
    assert "Action=10&Form=30" in listed.stdout


async def test_later_steps_to_an_openurl_borrower_are_not_applicable(
    ou: OpenUrlHub, browser: aiohttp.ClientSession
) -> None:
    link = f"{ou.url}/openurl/NORTH?{BOOK}&rshub_token={NORTH_TOKEN}{signed_patron()}"
    async with browser.get(link, headers=JSON) as reply:
        assert reply.status == 201
    await ship(ou, await ou.lenders["SOUTH"].next())
    told = await wait_for_record(
        ou.bootstrap,
        "ill.delivery",
        lambda r: r["recipient"] == "NORTH" and r["event"] == "Loaned",
    )
    # The patron follows the request on its status page; nothing is sent, nothing failed.
    assert told["outcome"] == "not_applicable", told
