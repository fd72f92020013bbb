"""Hostile input at the OpenURL doors of the real hub (issue 22): a seeded sample of links and
form posts without the borrower's credentials (no token, wrong tokens, another borrower's
token, forged form tokens, session cookies, hostile values). Every answer is a page or JSON
below 500; nothing reaches a lender; the hub logs no traceback and keeps serving."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.fuzz import HOSTILE_VALUES
from tests.openurl_helpers import NORTH_TOKEN, WEST_TOKEN, OpenUrlHub, openurl_hub, signed_patron

pytestmark = pytest.mark.kafka

ATTEMPTS = 400
KEYS = [
    "title", "atitle", "author", "isbn", "issn", "doi", "pmid", "oclc", "volume", "pages",
    "rft.btitle", "rft.atitle", "rft.jtitle", "rft.isbn", "rft_id", "rft.genre", "genre",
    "url_ver", "rfr_id", "sid", "csrf", "number", "expires", "kev", "patron_signed",
    "patron_id", "patron_email", "service", "need_before", "pickup", "note", "req_id",
    "req.email", "req_exp", "req_sig", "rshub_token", "rshub.request_id",
]  # fmt: skip
# Tokens a stranger might try: none valid for the door they are tried at.
TOKENS = ["", "guess", NORTH_TOKEN[:-1], NORTH_TOKEN.upper(), WEST_TOKEN, NORTH_TOKEN + " "]
SMALL_VALUES = [v for v in HOSTILE_VALUES if len(v) < 6000] + ["x", "9781611974492", "00256196"]


@pytest.fixture
async def ou(bootstrap: str, tmp_path: Path) -> AsyncIterator[OpenUrlHub]:
    async with openurl_hub(bootstrap, tmp_path) as running:
        yield running


def attempts(seed: int) -> list[tuple[str, str, list[tuple[str, str]], dict[str, str]]]:
    """(method, symbol, pairs, headers) without a credential valid for the symbol."""
    rng = random.Random(seed)
    found = []
    for _ in range(ATTEMPTS):
        symbol = rng.choice(["NORTH", "NORTH", "WEST", "NOBODY", "north", "NORTH%00", ""])
        pairs = [(rng.choice(KEYS), rng.choice(SMALL_VALUES)) for _ in range(rng.randint(1, 12))]
        token = rng.choice(TOKENS)
        if symbol == "WEST" and token == WEST_TOKEN:
            token = "guess"
        if token:
            pairs.append(("rshub_token", token))
        if rng.random() < 0.4:
            pairs.append(("csrf", f"{rng.getrandbits(256):064x}"))
        headers = {}
        if rng.random() < 0.3:
            headers["Cookie"] = f"rshub_openurl={rng.getrandbits(64):x}"
        if rng.random() < 0.2:
            headers["Accept"] = "application/json"
        if rng.random() < 0.1:
            headers["Authorization"] = rng.choice(["Bearer guess", "Basic Tk9SVEg6eA==", "x"])
        found.append((rng.choice(["GET", "POST"]), symbol, pairs, headers))
    return found


async def test_no_request_without_credentials_and_no_5xx(ou: OpenUrlHub) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for method, symbol, pairs, headers in attempts(seed=22):
            path = f"{ou.url}/openurl/{symbol}".rstrip("/")
            query = urlencode(pairs)
            if method == "GET":
                call = session.get(f"{path}?{query}", headers=headers)
            else:
                form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
                call = session.post(path, data=query, headers=form)
            async with call as reply:
                body = await reply.read()
                label = (method, symbol, pairs[:4])
                assert reply.status < 500, (label, reply.status, body[:300])
                assert reply.status != 201, label  # nothing was created
                kind = reply.content_type
                assert kind in ("text/html", "application/json") or reply.status in (404, 405), (
                    label,
                    kind,
                    body[:200],
                )
        # The borrower's own link still works, and is the first request any lender sees.
        link = f"{ou.url}/openurl/NORTH?rft.btitle=After&rft.isbn=9781611974492"
        link += f"&rshub_token={NORTH_TOKEN}{signed_patron()}"
        async with session.get(link, headers={"Accept": "application/json"}) as reply:
            assert reply.status == 201, await reply.text()
    first = await ou.lenders["SOUTH"].next()
    assert first.bibliographic.title == "After"
    for server in (ou.relais, ou.illiad):
        assert server.received.empty()
    assert ou.lenders["EAST"].received.empty()
    assert ou.hub.process is not None and ou.hub.process.poll() is None
    log = ou.hub.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
