"""The OpenURL intake over real HTTP (aiohttp's test server wrapping the connector's routes):
authentication, signed patrons, the form and its CSRF protection, JSON, status pages."""

from __future__ import annotations

import re
import time
from html import unescape
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.core.model import transaction_id
from connectors.openurl.options import OpenUrlSettings
from connectors.openurl.signing import patron_signature
from connectors.openurl.web import routes
from connectors.registry import CONNECTORS
from tests.openurl_helpers import RecordingIntake, application, directory, form_fields

LINK = (
    "/openurl/NORTH?url_ver=Z39.88-2004&rfr_id=info:sid/primo.exlibrisgroup.com:north"
    "&rft_val_fmt=info:ofi/fmt:kev:mtx:journal&rft.genre=article&rft.jtitle=Mayo+Clinic+Proceedings"
    "&rft.atitle=Postural+Pseudoanemia&rft.issn=00256196&rft_id=info:doi/10.4065/80.5.611"
)


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OU_TEST_NORTH_AUTH", "north-bearer")
    monkeypatch.setenv("OU_TEST_NORTH_TOKEN", "north-link-token")
    monkeypatch.setenv("OU_TEST_NORTH_PATRON", "north-patron-key")
    monkeypatch.setenv("OU_TEST_SUED_TOKEN", "sued-link-token")


@pytest.fixture
def intake() -> RecordingIntake:
    found = RecordingIntake(directory())
    found.secrets["NORTH"] = "north-bearer"
    return found


@pytest.fixture
async def client(intake: RecordingIntake):
    app = application(routes(intake, intake.limits, OpenUrlSettings()))
    async with TestClient(TestServer(app)) as running:
        yield running


def signed(req_id: str = "patron-42", email: str = "reader@north.edu", ttl: int = 600) -> str:
    expires = str(int(time.time()) + ttl)
    sig = patron_signature("north-patron-key", req_id, email, expires)
    return f"&req_id={quote(req_id)}&req.email={quote(email)}&req_exp={expires}&req_sig={sig}"


def hidden(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return {name: unescape(value) for name, value in found}


async def test_signed_link_makes_the_request_at_once(
    client: TestClient, intake: RecordingIntake
) -> None:
    reply = await client.get(
        LINK + "&rshub_token=north-link-token" + signed(), headers={"Accept": "application/json"}
    )
    assert reply.status == 201
    data = await reply.json()
    assert data["status"] == "accepted" and data["state"] == "Locating"
    assert data["state_text"] == "We are looking for a library that has it."
    (message,) = intake.taken
    assert message.patron_id == "patron-42" and message.delivery_email == "reader@north.edu"
    assert message.bibliographic.issn == "0025-6196"
    assert message.request_id == data["request_id"]
    # the token and the signature are not stored with the request
    assert b"north-link-token" not in intake.bodies[0] and b"req_sig" not in intake.bodies[0]
    # the same click again is the same request
    again = await client.get(
        LINK + "&rshub_token=north-link-token" + signed(), headers={"Accept": "application/json"}
    )
    assert (await again.json())["request_id"] == data["request_id"] and len(intake.taken) == 1


async def test_bearer_header_authenticates_too(client: TestClient, intake: RecordingIntake) -> None:
    reply = await client.get(
        LINK + signed(),
        headers={"Authorization": "Bearer north-bearer", "Accept": "application/json"},
    )
    assert reply.status == 201


@pytest.mark.parametrize("token", ["", "&rshub_token=wrong", "&rshub_token=sued-link-token"])
async def test_unauthenticated_link_is_refused_and_dead_lettered(
    client: TestClient, intake: RecordingIntake, token: str
) -> None:
    reply = await client.get(LINK + token + signed())
    assert reply.status == 401
    assert "This link is not valid for this library." in await reply.text()
    assert not intake.taken and intake.refused[-1].stage == "authenticate"


async def test_unknown_borrower(client: TestClient, intake: RecordingIntake) -> None:
    reply = await client.get("/openurl/NOBODY?title=x", headers={"Accept": "application/json"})
    assert reply.status == 404 and (await reply.json())["status"] == "refused"


@pytest.mark.parametrize(
    "patron",
    [
        "&req_id=patron-42&req.email=reader%40north.edu",  # unsigned
        signed()[:-4] + "0000",  # signature altered
        signed(ttl=-10),  # expired
        signed(ttl=10 * 86_400),  # valid for longer than allowed
    ],
)
async def test_untrusted_patron_gets_the_form(
    client: TestClient, intake: RecordingIntake, patron: str
) -> None:
    reply = await client.get(LINK + "&rshub_token=north-link-token" + patron)
    assert reply.status == 200
    html = await reply.text()
    assert 'name="patron_id"' in html and "patron-42" not in html
    assert 'value="Postural Pseudoanemia"' in html  # prefilled with what came
    assert 'value="0025-6196"' in html
    assert not intake.taken


async def _form(client: TestClient, link: str) -> tuple[dict[str, str], str]:
    reply = await client.get(link)
    assert reply.status == 200
    html = await reply.text()
    assert (
        "rshub_openurl=" in reply.headers["Set-Cookie"]
        and "HttpOnly" in reply.headers["Set-Cookie"]
    )
    return hidden(html), html


async def test_form_flow_creates_the_request_and_shows_its_status(
    client: TestClient, intake: RecordingIntake
) -> None:
    fields, html = await _form(
        client, "/openurl/NORTH?rshub_token=north-link-token&sid=google&genre=book&aulast=Kutz"
    )
    assert '<html lang="en">' in html and '<label for="f-title">' in html
    assert '<option value="Law library">Law library</option>' in html
    form = {
        **fields,
        "title": "Dynamic mode decomposition",
        "isbn": "978-1-611974-49-2",
        "author": "Kutz, J.",
        "service": "loan",
        "need_before": "2099-12-31",
        "pickup": "Law library",
        "note": "Chapter 3 first, please",
        "patron_id": "card-123",
        "patron_email": "card@north.edu",
    }
    reply = await client.post("/openurl/NORTH", data=form)
    assert reply.status == 200
    page = await reply.text()
    number = re.search(r'id="request-number">([^<]+)<', page).group(1)
    assert number == fields["number"]
    (message,) = intake.taken
    assert message.request_id == number and message.patron_id == "card-123"
    assert (
        message.bibliographic.isbn == "9781611974492" and message.pickup_location == "Law library"
    )
    assert (
        message.need_before.date().isoformat() == "2099-12-31"
        and message.note == "Chapter 3 first, please"
    )
    assert message.bibliographic.author == "Kutz, J."
    link = unescape(re.search(r'id="status-link" href="([^"]+)"', page).group(1))
    intake.states[transaction_id("NORTH", number)] = "Loaned"
    status = await client.get(link)
    assert status.status == 200 and "It is on its way to your library." in await status.text()
    forged = await client.get(link[:-4] + "abcd")
    assert forged.status == 404


async def test_form_as_a_browser_sends_it_with_every_field(
    client: TestClient, intake: RecordingIntake
) -> None:
    fields, _ = await _form(client, "/openurl/NORTH?rshub_token=north-link-token&genre=book")
    names = [
        "title",
        "atitle",
        "author",
        "volume",
        "issue",
        "pages",
        "date",
        "publisher",
        "place",
        "edition",
        "isbn",
        "issn",
        "doi",
        "pmid",
        "oclc",
        "need_before",
        "pickup",
        "note",
        "patron_id",
        "patron_email",
    ]
    form = {
        **fields,
        **dict.fromkeys(names, ""),
        "title": "Crime & Punishment",
        "patron_id": "card-9",
        "service": "loan",
    }
    reply = await client.post("/openurl/NORTH", data=form)
    assert reply.status == 200, await reply.text()
    (message,) = intake.taken
    assert message.bibliographic.title == "Crime & Punishment" and message.pickup_location is None


async def test_form_without_the_session_cookie_is_refused(
    client: TestClient, intake: RecordingIntake
) -> None:
    fields, _ = await _form(client, "/openurl/NORTH?rshub_token=north-link-token&title=Some+book")
    client.session.cookie_jar.clear()
    reply = await client.post("/openurl/NORTH", data={**fields, "patron_id": "card-1"})
    assert reply.status == 403
    page = await reply.text()
    assert "This form has expired" in page and "csrf" not in page
    assert not intake.taken


@pytest.mark.parametrize("cookie", [True, False])
async def test_a_stranger_cannot_turn_a_refused_form_into_a_request(
    client: TestClient, intake: RecordingIntake, cookie: bool
) -> None:
    """Issue 22.1: anyone could post any `csrf`, take the form the refusal carried (a valid
    token for the cookie set in the same answer) and post it back with a typed patron."""
    form = {"csrf": "x", "number": "OU-AAAA-BBBB", "title": "Some book", "patron_id": "card-1"}
    if cookie:
        client.session.cookie_jar.update_cookies({"rshub_openurl": "attacker-session"})
    reply = await client.post("/openurl/NORTH", data=form)
    page = await reply.text()
    assert reply.status == 403 and "Set-Cookie" not in reply.headers
    assert hidden(page) == {} and "follow the link" in page
    again = await client.post("/openurl/NORTH", data={**form, **hidden(page)})
    assert again.status == 403 and not intake.taken
    assert intake.refused[-1].stage == "authenticate"
    as_json = await client.post("/openurl/NORTH", data=form, headers={"Accept": "application/json"})
    assert as_json.status == 403 and "form" not in await as_json.json()
    assert not intake.taken


@pytest.mark.parametrize(
    "change",
    [
        {"csrf": "0" * 64},
        {"number": "OU-AAAA-BBBB"},
        {"patron_signed": "someone-else"},
        {"expires": "1"},
    ],
)
async def test_tampered_form_is_refused(
    client: TestClient, intake: RecordingIntake, change: dict[str, str]
) -> None:
    fields, _ = await _form(client, "/openurl/NORTH?rshub_token=north-link-token&title=Some+book")
    reply = await client.post("/openurl/NORTH", data={**fields, "patron_id": "card-1", **change})
    assert reply.status == 403 and not intake.taken


async def test_signed_patron_cannot_be_replaced_in_the_form(
    client: TestClient, intake: RecordingIntake
) -> None:
    fields, html = await _form(
        client, "/openurl/NORTH?rshub_token=north-link-token&genre=book" + signed()
    )
    assert "patron-42" in html and 'name="patron_id"' not in html
    reply = await client.post(
        "/openurl/NORTH", data={**fields, "title": "A book", "patron_id": "intruder"}
    )
    assert reply.status == 200
    assert intake.taken[0].patron_id == "patron-42"


async def test_a_signed_patrons_form_as_a_browser_encodes_it_is_accepted(
    client: TestClient, intake: RecordingIntake
) -> None:
    """HTML's form encoding sends the hidden field's line break as CRLF: the signed patron's
    form was refused as stale in every real browser."""
    fields, _ = await _form(
        client, "/openurl/NORTH?rshub_token=north-link-token&genre=book" + signed()
    )
    assert fields["patron_signed"] == "patron-42\nreader@north.edu"
    sent = {**fields, "patron_signed": fields["patron_signed"].replace("\n", "\r\n")}
    reply = await client.post("/openurl/NORTH", data={**sent, "title": "A book"})
    assert reply.status == 200, await reply.text()
    assert intake.taken[0].patron_id == "patron-42"


async def test_missing_data_and_bad_values_are_said_in_the_form(
    client: TestClient, intake: RecordingIntake
) -> None:
    fields, _ = await _form(client, "/openurl/NORTH?rshub_token=north-link-token&genre=book")
    reply = await client.post(
        "/openurl/NORTH", data={**fields, "isbn": "978-1-611974-49-3", "need_before": "2001-01-01"}
    )
    assert reply.status == 400
    html = await reply.text()
    assert 'role="alert"' in html
    for text in (
        "This identifier is not valid:",
        "Give a title or an identifier",
        "Give your library card number.",
        "must not be in the past",
    ):
        assert text in html
    assert not intake.taken


async def test_everything_in_the_form_is_escaped(client: TestClient) -> None:
    evil = quote('"><script>alert(1)</script>')
    _fields, html = await _form(
        client,
        f"/openurl/NORTH?rshub_token=north-link-token&title={evil}&atitle={evil}&rfr_id={evil}",
    )
    assert "<script>" not in html
    assert 'value="&quot;&gt; alert(1)"' in html  # markup dropped, quotes escaped


async def test_json_for_an_incomplete_link(client: TestClient) -> None:
    reply = await client.get(
        "/openurl/NORTH?rshub_token=north-link-token&genre=book",
        headers={"Accept": "application/json"},
    )
    assert reply.status == 422
    data = await reply.json()
    assert data["missing"] == ["title_or_identifier", "patron"] and data["form"]["csrf"]


async def test_consortium_address_finds_the_borrower_by_referrer(
    client: TestClient, intake: RecordingIntake
) -> None:
    link = LINK.replace("/openurl/NORTH?", "/openurl?") + "&rshub_token=north-link-token" + signed()
    reply = await client.get(link, headers={"Accept": "application/json"})
    assert reply.status == 201 and intake.taken[0].sender == "NORTH"
    unknown = await client.get("/openurl?rfr_id=info:sid/elsewhere&title=x")
    assert unknown.status == 404


async def test_form_in_the_borrowers_language(client: TestClient) -> None:
    _fields, html = await _form(client, "/openurl/SUED?rshub_token=sued-link-token&genre=book")
    assert '<html lang="de">' in html and "Fernleihbestellung" in html and "Ausweisnummer" in html


async def test_post_link_and_hub_keys_in_a_link_are_ignored(
    client: TestClient, intake: RecordingIntake
) -> None:
    body = "rft.btitle=A+book&rshub.patron=forged&rshub.request_id=OU-FORGED&rshub_token=north-link-token"
    reply = await client.post(
        "/openurl/NORTH", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert reply.status == 200 and "forged" not in await reply.text()
    assert not intake.taken


async def test_huge_query_and_invalid_utf8(client: TestClient, intake: RecordingIntake) -> None:
    huge = await client.post(
        "/openurl/NORTH",
        data="title=" + "a" * 40_000,
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status == 413 and (await huge.json())["status"] == "refused"
    # a request line past the HTTP server's limit (8190 bytes) is its 400, never a 5xx
    line = await client.get("/openurl/NORTH?title=" + "a" * 9_000)
    assert line.status == 400
    odd = await client.get("/openurl/NORTH?rshub_token=north-link-token&title=B%E4nde%FF%FE")
    assert odd.status == 200


async def test_broker_down_is_a_temporary_failure(
    client: TestClient, intake: RecordingIntake
) -> None:
    intake.up = False
    reply = await client.get(LINK + "&rshub_token=north-link-token" + signed())
    assert reply.status == 503 and "try again" in await reply.text()


async def test_status_of_a_request_this_worker_does_not_hold(
    client: TestClient, intake: RecordingIntake
) -> None:
    """Another worker's transaction (or one not yet in this worker's table): the page says
    it cannot show the state, it does not deny the request exists."""
    reply = await client.get(
        LINK + "&rshub_token=north-link-token" + signed(), headers={"Accept": "application/json"}
    )
    status_url = (await reply.json())["status_url"]
    intake.states.clear()
    page = await client.get(status_url)
    assert page.status == 200
    assert "We cannot show the status of this request at the moment." in await page.text()
    data = await (await client.get(status_url, headers={"Accept": "application/json"})).json()
    assert data["state"] is None


@pytest.mark.parametrize("expires", ["²", "١٢٣", "9" * 5000])
async def test_odd_digits_in_a_form_get_the_forms_own_page(
    client: TestClient, intake: RecordingIntake, expires: str
) -> None:
    fields, _ = await _form(client, "/openurl/NORTH?rshub_token=north-link-token&title=Some+book")
    reply = await client.post("/openurl/NORTH", data={**fields, "expires": expires})
    assert reply.status == 403 and reply.content_type == "text/html"
    assert not intake.taken


# -- requests no lender of the rota can take ------------------------------------------------

DOI_ONLY = (
    "/openurl/NORTH?rshub_token=north-link-token&rft.genre=article"
    "&rft.atitle=Postural+Pseudoanemia&rft_id=info:doi/10.4065/80.5.611"
)


@pytest.fixture
def lending_intake(intake: RecordingIntake) -> RecordingIntake:
    """NORTH's requests go to an NCIP lender, which cannot take one without a title."""
    found = intake.directory.model_dump()
    found["partners"].append(
        {"symbol": "SOUTH", "name": "South", "protocol": "ncip", "endpoint": "http://x/ncip"}
    )
    found["needs"] = CONNECTORS.needs
    intake.directory = type(intake.directory).model_validate(found)
    return intake


@pytest.fixture
async def lending(lending_intake: RecordingIntake):
    app = application(routes(lending_intake, lending_intake.limits, OpenUrlSettings()))
    async with TestClient(TestServer(app)) as running:
        yield running


async def test_a_link_no_lender_can_take_asks_for_the_title_before_promising(
    lending: TestClient, lending_intake: RecordingIntake
) -> None:
    """A DOI-only article link with a signed patron was confirmed, then went Unfilled: the
    NCIP lender needs a title. The patron is asked for it instead."""
    json_reply = await lending.get(DOI_ONLY + signed(), headers={"Accept": "application/json"})
    assert json_reply.status == 422
    data = await json_reply.json()
    assert data["missing"] == ["title"] and data["citation"]["doi"] == "10.4065/80.5.611"
    page = await lending.get(DOI_ONLY + signed())
    html = await page.text()
    assert page.status == 200 and "Give the title of the journal or book" in html
    assert not lending_intake.taken


async def test_a_form_submitted_without_the_title_a_lender_needs_is_shown_again(
    lending: TestClient, lending_intake: RecordingIntake
) -> None:
    _, html = await _form(lending, DOI_ONLY)
    # What a browser sends for the form as shown: the DOI and article title prefilled.
    form = {**form_fields(html), "title": "", "patron_id": "card-1"}
    assert form["doi"] == "10.4065/80.5.611"
    reply = await lending.post("/openurl/NORTH", data=form)
    assert reply.status == 400
    assert "Give the title of the journal or book" in await reply.text()
    assert not lending_intake.taken
    reply = await lending.post("/openurl/NORTH", data={**form, "title": "Mayo Clinic Proceedings"})
    assert reply.status == 200, await reply.text()
    (message,) = lending_intake.taken
    assert message.bibliographic.title == "Mayo Clinic Proceedings"


async def test_an_issn_only_link_is_not_promised_either(
    lending: TestClient, lending_intake: RecordingIntake
) -> None:
    link = "/openurl/NORTH?rshub_token=north-link-token&genre=article&issn=0025-6196"
    reply = await lending.get(link + signed(), headers={"Accept": "application/json"})
    assert reply.status == 422 and (await reply.json())["missing"] == ["title"]
    assert not lending_intake.taken


async def test_a_lender_that_needs_nothing_more_takes_the_doi_only_link(
    client: TestClient, intake: RecordingIntake
) -> None:
    """Without a lender that needs the title (this directory has none), nothing is asked."""
    reply = await client.get(DOI_ONLY + signed(), headers={"Accept": "application/json"})
    assert reply.status == 201 and len(intake.taken) == 1
