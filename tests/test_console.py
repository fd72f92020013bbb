"""The console's own rules, on a real console (its aiohttp server on a real socket) over an
index file filled with records as the hub writes them: users and their hashed passwords,
login, sessions, CSRF, roles, escaping of everything a partner can send, the live feed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from connectors.core.directory import Directory
from connectors.core.throttle import PER_SOURCE
from hub.ops import index as index_module
from hub.ops.console import users as users_module
from hub.ops.console.app import Console, _local
from hub.ops.console.html import h, tag
from hub.ops.console.pretty import pretty
from hub.ops.console.sessions import Sessions

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
HOSTILE = '<script>alert("t")</script><img src=x onerror=alert(1)>'
TXN = "tCONSOLE000000001"


def record(topic: str, offset: int, key: str, value: dict[str, Any]) -> index_module.Record:
    return index_module.Record(
        topic, 0, offset, 1_700_000_000_000 + offset * 1000, key, json.dumps(value).encode()
    )


def fill_index(path: Path) -> None:
    """A request whose title and raw bytes are hostile, a refused step, a dead letter."""
    index = index_module.Index(path)
    raw = f"<?xml version='1.0'?><RequestItem><Title>{HOSTILE.replace('<', '&lt;')}</Title>"
    raw += "<Note>ok</Note></RequestItem>"
    index.apply(
        [
            record(
                "ill.audit",
                0,
                TXN,
                {
                    "direction": "in",
                    "protocol": "ncip",
                    "partner": "NORTH",
                    "transaction_id": TXN,
                    "content_type": "application/xml",
                    "body": raw,
                },
            ),
            record(
                "ill.inbound",
                1,
                TXN,
                {
                    "transaction_id": TXN,
                    "event": "Request",
                    "sender": "NORTH",
                    "source_protocol": "ncip",
                    "request_id": "R-<b>1</b>",
                    "audit_ref": "ill.audit/0/0",
                    "bibliographic": {"title": HOSTILE},
                },
            ),
            record(
                "ill.transactions",
                2,
                TXN,
                {
                    "id": TXN,
                    "state": "Requested",
                    "borrower": "NORTH",
                    "borrower_request_id": "R-<b>1</b>",
                    "request": {"patron_id": "p-1", "bibliographic": {"title": HOSTILE}},
                    "attempts": [{"lender": "SOUTH"}],
                },
            ),
            record(
                "ill.events",
                3,
                TXN,
                {
                    "transaction_id": TXN,
                    "kind": "refused",
                    "event": "Received",
                    "sender": "NORTH",
                    "from_state": "Requested",
                    "to_state": "Requested",
                    "detail": "not allowed in Requested",
                },
            ),
            record(
                "ill.deadletter",
                4,
                TXN,
                {
                    "stage": "apply",
                    "error": f"refused {HOSTILE}",
                    "partner": "NORTH",
                    "protocol": "ncip",
                    "transaction_id": TXN,
                    "audit_ref": "ill.audit/0/0",
                },
            ),
        ]
    )
    index.close()


DIRECTORY = Directory.model_validate(
    {
        "consortium": "Test <consortium>",
        "partners": [
            {"symbol": "NORTH", "name": "North", "protocol": "ncip", "endpoint": "http://n.test/"},
            {
                "symbol": "SOUTH",
                "name": "South <Uni>",
                "protocol": "ncip",
                "endpoint": "http://s.test/",
            },
        ],
    }
)


class Calls:
    def __init__(self) -> None:
        self.redelivered: list[tuple[str | None, str | None, str]] = []
        self.replayed: list[tuple[str, bool]] = []
        self.acknowledged: list[tuple[str, str, str]] = []

    async def redeliver(self, txn: str | None, partner: str | None, by: str) -> tuple[int, str]:
        self.redelivered.append((txn, partner, by))
        return 0, f"done: {txn} redelivered"

    async def replay(
        self,
        ref: str,
        letter: dict[str, Any] | None,
        raw: dict[str, Any] | None,
        trust: bool,
        by: str,
    ) -> tuple[int, str]:
        assert letter is not None and raw is not None  # the console found both in the index
        self.replayed.append((ref, trust))
        if trust:  # stands for a step the state machine refuses again
            return 2, "refused again (apply): not possible in state Requested"
        return 0, f"replayed {ref} by {by}"

    async def acknowledge(
        self, ref: str, letter: dict[str, Any] | None, by: str, note: str
    ) -> tuple[int, str]:
        assert letter is not None
        self.acknowledged.append((ref, by, note))
        return 0, f"acknowledged {ref}: {note}"


class Staff:
    """Stands for `hub.ops.actions.Staff`: records what the console asked of it."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def can_message(self, symbol: str | None, to: str = "lender") -> bool:
        return symbol == "SOUTH"  # stands for: only SOUTH's protocol has notifications

    async def route(self, txn: str, action: Any, lender: str | None, by: str) -> tuple[int, str]:
        self.asked.append(("route", txn, action.value, lender, by))
        return 0, f"done: {txn} is now Requested"

    async def cancel(self, txn: str, reason: str, by: str) -> tuple[int, str]:
        self.asked.append(("cancel", txn, reason, by))
        return 2, "refused: not possible in state Loaned: close the loan instead"

    async def message(
        self, txn: str, to: str, text: str, by: str, recipient: str | None = None
    ) -> tuple[int, str]:
        self.asked.append(("message", txn, to, text, by, recipient))
        return 0, f"LenderNotification to {recipient}: sent"


STAFF = Staff()


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "console-users"
    users_module.add(path, "olive", "operator", PASSWORD)
    users_module.add(path, "rita", "reader", PASSWORD)
    return path


@pytest.fixture
async def console(tmp_path: Path, users_file: Path) -> AsyncIterator[tuple[Console, Calls]]:
    path = tmp_path / "index.sqlite3"
    fill_index(path)
    calls = Calls()
    running = Console(
        index_path=path,
        users_file=users_file,
        directory=DIRECTORY,
        live_interval_s=0.05,
        notes=["the embedded broker keeps data in memory only"],
        load=lambda: {"SOUTH": 3},
        redeliver=calls.redeliver,
        replay=calls.replay,
        acknowledge=calls.acknowledge,
        staff=STAFF,
    )
    STAFF.asked.clear()
    await running.start()
    try:
        yield running, calls
    finally:
        await running.stop()


def base(console: Console) -> str:
    return f"http://127.0.0.1:{console.port}"


def client(source: str | None = None) -> aiohttp.ClientSession:
    # unsafe: keep cookies of an IP address (127.0.0.1); no redirects followed unless asked.
    # `source`: the local address to connect from (another loopback address: another user).
    connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def log_in(
    session: aiohttp.ClientSession, console: Console, name: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with session.get(f"{base(console)}/login") as reply:
        token = csrf_of(await reply.text())
    form = {"csrf": token, "name": name, "password": password, "next": ""}
    async with session.post(f"{base(console)}/login", data=form, allow_redirects=False) as reply:
        await reply.read()
        return reply


# -- users ------------------------------------------------------------------------------


def test_passwords_are_stored_as_salted_scrypt_hashes(users_file: Path) -> None:
    text = users_file.read_text()
    assert PASSWORD not in text
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    found = users_module.load(users_file)
    olive, rita = found["olive"], found["rita"]
    assert olive.role == "operator" and rita.role == "reader"
    assert olive.hashed.startswith("scrypt$") and olive.hashed != rita.hashed  # own salts
    assert users_module.check_password(PASSWORD, olive.hashed)
    assert not users_module.check_password(PASSWORD + "x", olive.hashed)
    assert not users_module.check_password(PASSWORD, "md5$abc")
    with pytest.raises(users_module.UsersError, match="at least"):
        users_module.add(users_file, "short", "reader", "short")
    with pytest.raises(users_module.UsersError, match="role"):
        users_module.add(users_file, "eve", "admin", PASSWORD)
    with pytest.raises(users_module.UsersError, match="name"):
        users_module.add(users_file, "bad name", "reader", PASSWORD)


def test_console_user_command_writes_a_hash_to_the_file_the_setting_names(
    tmp_path: Path,
) -> None:
    path = tmp_path / "elsewhere" / "users"
    env = {**os.environ, "RSHUB_CONSOLE_USERS_FILE": str(path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "console-user",
            "add",
            "ann",
            "--password-stdin",
            "--role",
            "operator",
        ],
        input=PASSWORD + "\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "added ann (operator)" in done.stdout
    assert PASSWORD not in path.read_text()
    assert users_module.UserFile(path).authenticate("ann", PASSWORD) is not None
    listed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "console-user", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.stdout.split() == ["ann", "operator"]


# -- login, sessions, CSRF, roles -------------------------------------------------------


async def test_every_page_needs_a_login(console: tuple[Console, Calls]) -> None:
    running, _ = console
    async with client() as session:
        for path in ("/", "/partners", "/deadletters", f"/requests/{TXN}"):
            async with session.get(base(running) + path, allow_redirects=False) as reply:
                assert reply.status == 303
                assert reply.headers["Location"].startswith("/login")
        async with session.get(base(running) + "/live") as reply:
            assert reply.status == 401
        async with session.post(base(running) + f"/requests/{TXN}/redeliver") as reply:
            assert reply.status == 401


async def test_login_with_a_wrong_password_or_without_the_form_token_is_refused(
    console: tuple[Console, Calls],
) -> None:
    running, _ = console
    async with client() as session:
        reply = await log_in(session, running, "olive", "wrong password!")
        assert reply.status == 401
        reply = await log_in(session, running, "nobody", PASSWORD)
        assert reply.status == 401
        # The login form's token must match its cookie (a cross-site form has neither).
        form = {"csrf": "forged", "name": "olive", "password": PASSWORD}
        async with session.post(
            f"{base(running)}/login", data=form, allow_redirects=False
        ) as reply:
            assert reply.status == 401
        async with session.get(base(running) + "/", allow_redirects=False) as reply:
            assert reply.status == 303  # still not logged in


async def test_login_sets_a_strict_httponly_session_cookie_and_goes_only_to_local_pages(
    console: tuple[Console, Calls],
) -> None:
    running, _ = console
    async with client() as session:
        async with session.get(f"{base(running)}/login?next=/%09/evil.example") as reply:
            page = await reply.text()
        form = {
            "csrf": csrf_of(page),
            "name": "olive",
            "password": PASSWORD,
            "next": "/\t/evil.example",
        }
        async with session.post(
            f"{base(running)}/login", data=form, allow_redirects=False
        ) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == "/"
            cookie = reply.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookie if c.startswith("rshub_console="))
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
        async with session.get(base(running) + "/") as reply:
            assert reply.status == 200
            assert "olive (operator)" in await reply.text()
            assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
            assert reply.headers["X-Frame-Options"] == "DENY"


async def test_concurrent_guesses_count_and_lock_only_their_own_address(
    console: tuple[Console, Calls],
) -> None:
    running, _ = console
    async with client() as session:
        async with session.get(f"{base(running)}/login") as reply:
            token = csrf_of(await reply.text())

        async def guess(password: str) -> int:
            form = {"csrf": token, "name": "olive", "password": password, "next": ""}
            url = f"{base(running)}/login"
            async with session.post(url, data=form, allow_redirects=False) as reply:
                await reply.read()
                return reply.status

        # 30 guesses at once: each counts from before its scrypt check, so only the first
        # PER_SOURCE are checked; the others are refused at once, and so is the right password.
        statuses = await asyncio.gather(*(guess(f"guess number {n}") for n in range(30)))
        assert sorted(statuses) == [401] * PER_SOURCE + [429] * (30 - PER_SOURCE)
        assert await guess(PASSWORD) == 429
    # The operator at another address is not locked out by what 127.0.0.1 did.
    async with client("127.0.0.2") as elsewhere:
        reply = await log_in(elsewhere, running, "olive")
        assert reply.status == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " //evil.example",
        "/%2F/evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/requests/x\u3000/y",
    ],
)
def test_login_goes_on_only_to_paths_of_this_site(target: str) -> None:
    assert _local(target) == ""


def test_login_goes_on_to_a_page_of_the_console() -> None:
    assert _local("/requests/tX1?state=Loaned&q=a%20b") == "/requests/tX1?state=Loaned&q=a%20b"


async def test_actions_need_the_csrf_token_and_the_operator_role(
    console: tuple[Console, Calls],
) -> None:
    running, calls = console
    url = f"{base(running)}/requests/{TXN}/redeliver"
    async with client() as session:
        assert (await log_in(session, running, "olive")).status == 303
        async with session.get(f"{base(running)}/requests/{TXN}") as reply:
            token = csrf_of(await reply.text())
        async with session.post(url, data={}, allow_redirects=False) as reply:
            assert reply.status == 403
        async with session.post(url, data={"csrf": "guess"}, allow_redirects=False) as reply:
            assert reply.status == 403
        assert calls.redelivered == []
        async with session.post(url, data={"csrf": token}) as reply:
            assert reply.status == 200
            assert f"done: {TXN} redelivered" in await reply.text()  # said once, after
        assert calls.redelivered == [(TXN, None, "console:olive")]
        async with session.post(
            f"{base(running)}/partners/SOUTH/redeliver", data={"csrf": token}
        ) as reply:
            assert reply.status == 200
        assert calls.redelivered[-1] == (None, "SOUTH", "console:olive")
        async with session.post(
            f"{base(running)}/deadletters/replay", data={"csrf": token, "ref": "ill.deadletter/0/4"}
        ) as reply:
            assert reply.status == 200
            assert "replayed ill.deadletter/0/4 by console:olive" in await reply.text()
        assert calls.replayed == [("ill.deadletter/0/4", False)]
        # Refused again is shown as a refusal, not as a success.
        async with session.post(
            f"{base(running)}/deadletters/replay",
            data={"csrf": token, "ref": "ill.deadletter/0/4", "trust_sender": "1"},
        ) as reply:
            page = await reply.text()
        assert '<p class="flash refused">replay ill.deadletter/0/4: refused again' in page
        async with session.post(
            f"{base(running)}/deadletters/ack",
            data={"csrf": token, "ref": "ill.deadletter/0/4", "note": "fixed by phone"},
        ) as reply:
            assert reply.status == 200
            assert '<p class="flash">acknowledged ill.deadletter/0/4' in await reply.text()
        assert calls.acknowledged == [("ill.deadletter/0/4", "console:olive", "fixed by phone")]
    async with client() as session:
        assert (await log_in(session, running, "rita")).status == 303
        async with session.get(f"{base(running)}/requests/{TXN}") as reply:
            page = await reply.text()
        assert 'id="redeliver"' not in page  # a reader is not offered the action
        token = csrf_of(page)  # the logout form's
        async with session.post(url, data={"csrf": token}, allow_redirects=False) as reply:
            assert reply.status == 403
        async with session.get(f"{base(running)}/deadletters") as reply:
            listed = await reply.text()
        assert "Replay" not in listed and "Acknowledge" not in listed
        async with session.post(
            f"{base(running)}/deadletters/ack",
            data={"csrf": token, "ref": "ill.deadletter/0/4"},
            allow_redirects=False,
        ) as reply:
            assert reply.status == 403
    assert len(calls.redelivered) == 2 and len(calls.replayed) == 2
    assert len(calls.acknowledged) == 1


async def test_request_actions_reach_the_operations_layer_with_who_asked(
    console: tuple[Console, Calls],
) -> None:
    running, _ = console
    page_url = f"{base(running)}/requests/{TXN}"
    async with client() as session:
        assert (await log_in(session, running, "olive")).status == 303
        async with session.get(page_url) as reply:
            page = await reply.text()
        token = csrf_of(page)
        # Requested: rerouting, cancelling, a message and a note are offered; closing is not.
        for offered in ("route-lender", "route-skip", "route-next", "route-restart", "cancel"):
            assert f'id="{offered}"' in page, offered
        assert 'id="close"' not in page
        # A message only to the party whose protocol takes one (SOUTH, not NORTH).
        assert "the lender, SOUTH" in page and "the borrower, NORTH" not in page
        async with session.post(
            f"{page_url}/message", data={"to": "lender", "text": "hi"}, allow_redirects=False
        ) as reply:
            assert reply.status == 403  # no CSRF token
        async with session.post(
            f"{page_url}/message", data={"csrf": token, "to": "lender", "text": "any news?"}
        ) as reply:
            assert "LenderNotification to SOUTH: sent" in await reply.text()
        async with session.post(
            f"{page_url}/route", data={"csrf": token, "how": "lender", "lender": "SOUTH"}
        ) as reply:
            assert f"done: {TXN} is now Requested" in await reply.text()
        async with session.post(
            f"{page_url}/cancel", data={"csrf": token, "reason": "patron left"}
        ) as reply:
            said = await reply.text()
        assert '<p class="flash refused">cancel ' in said and "close the loan instead" in said
        async with session.post(
            f"{page_url}/route", data={"csrf": token, "how": "sideways"}
        ) as reply:
            assert "no way to route called" in await reply.text()
        async with session.post(
            f"{page_url}/fly", data={"csrf": token}, allow_redirects=False
        ) as reply:
            assert reply.status == 404
    assert STAFF.asked == [
        ("message", TXN, "lender", "any news?", "console:olive", "SOUTH"),
        ("route", TXN, "lender", "SOUTH", "console:olive"),
        ("cancel", TXN, "patron left", "console:olive"),
    ]
    async with client() as session:
        assert (await log_in(session, running, "rita")).status == 303
        async with session.get(page_url) as reply:
            page = await reply.text()
        assert 'id="staff-actions"' not in page
        for action in ("route", "cancel", "close", "note", "message"):
            async with session.post(
                f"{page_url}/{action}", data={"csrf": csrf_of(page)}, allow_redirects=False
            ) as reply:
                assert reply.status == 403, action
    assert len(STAFF.asked) == 3


async def test_logout_and_removal_from_the_users_file_end_the_session(
    console: tuple[Console, Calls], users_file: Path
) -> None:
    running, _ = console
    async with client() as session:
        await log_in(session, running, "olive")
        async with session.get(base(running) + "/") as reply:
            token = csrf_of(await reply.text())
        async with session.post(f"{base(running)}/logout", data={"csrf": token}) as reply:
            assert reply.url.path == "/login"
        async with session.get(base(running) + "/", allow_redirects=False) as reply:
            assert reply.status == 303
    async with client() as session:
        await log_in(session, running, "rita")
        async with session.get(base(running) + "/", allow_redirects=False) as reply:
            assert reply.status == 200
        assert users_module.remove(users_file, "rita")
        async with session.get(base(running) + "/", allow_redirects=False) as reply:
            assert reply.status == 303


def test_sessions_expire_when_idle() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=60.0, clock=lambda: now[0])
    sid, _ = sessions.open("olive", "operator")
    now[0] = 59.0
    assert sessions.get(sid) is not None  # use keeps it alive
    now[0] = 118.0
    assert sessions.get(sid) is not None
    now[0] = 179.0
    assert sessions.get(sid) is None
    assert sessions.get("made-up") is None


# -- escaping ---------------------------------------------------------------------------


def test_html_helpers_escape_everything_not_made_as_markup() -> None:
    assert h(HOSTILE) == (
        "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    )
    assert tag("td", HOSTILE, title='"x" onmouseover=y') == (
        '<td title="&quot;x&quot; onmouseover=y">' + h(HOSTILE) + "</td>"
    )
    assert tag("td", tag("b", "<i>")) == "<td><b>&lt;i&gt;</b></td>"


async def test_pages_escape_what_partners_send(console: tuple[Console, Calls]) -> None:
    running, _ = console
    async with client() as session:
        await log_in(session, running, "olive")
        paths = ("/", f"/requests/{TXN}", "/deadletters", "/partners", "/stats?by=<script>")
        for path in (*paths, "/?title=<script>"):
            async with session.get(base(running) + path) as reply:
                assert reply.status == 200
                page = await reply.text()
            assert "<script>" not in page and "onerror=alert(1)>" not in page, path
            assert '<script src="/static/console.js" defer></script>' in page
        async with session.get(f"{base(running)}/requests/{TXN}") as reply:
            page = await reply.text()
        assert h(HOSTILE) in page  # shown as text
        assert "refused Received from NORTH in Requested" in page
        # The raw XML is pretty-printed (indented), and escaped.
        assert "&lt;RequestItem&gt;\n  &lt;Title&gt;" in page
        async with session.get(f"{base(running)}/partners") as reply:
            page = await reply.text()
        assert "South &lt;Uni&gt;" in page and "Test &lt;consortium&gt;" in page
        assert "3 / " not in page and ">3<" in page  # SOUTH's load from the load view


def test_raw_messages_are_pretty_printed_by_kind() -> None:
    shown, text = pretty(b"<a><b>1</b><c/></a>")
    assert shown == "xml" and text == "<a>\n  <b>1</b>\n  <c/>\n</a>"
    shown, text = pretty(b'{"a": [1, 2]}')
    assert shown == "json" and text == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    shown, text = pretty(bytes([0x30, 0x03, 0x02, 0x01, 0x05]))
    assert shown == "hex" and text.startswith("00000000  30 03 02 01 05")
    # Entities are not expanded (the hub's hardened parser): shown as the text it is.
    bomb = b'<!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>'
    shown, text = pretty(bomb)
    assert shown == "text" and "boom</a>" not in text


# -- live updates -----------------------------------------------------------------------


async def test_live_updates_stream_what_the_index_takes_in(
    console: tuple[Console, Calls], tmp_path: Path
) -> None:
    running, _ = console
    async with client() as session:
        await log_in(session, running, "rita")
        async with session.get(f"{base(running)}/live") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert (await stream.content.readline()) == b": connected\n"
            writer = index_module.Index(tmp_path / "index.sqlite3")
            change = {
                "transaction_id": TXN,
                "kind": "transition",
                "event": "WillSupply",
                "sender": "SOUTH",
                "from_state": "Requested",
                "to_state": "WillSupply",
            }
            await asyncio.to_thread(writer.apply, [record("ill.events", 5, TXN, change)])
            writer.close()
            lines: list[bytes] = []
            while not lines or not lines[-1].startswith(b"data: "):
                line = await asyncio.wait_for(stream.content.readline(), 30)
                if line.strip() and not line.startswith((b":", b"retry")):
                    lines.append(line.strip())
            assert lines[-2] == b"event: entry"
            event = json.loads(lines[-1].removeprefix(b"data: "))
            assert event["transaction_id"] == TXN
            assert event["summary"] == "Requested -> WillSupply (WillSupply from SOUTH)"
            assert event["when"] == "2023-11-14 22:13:25 UTC"  # as the pages show times


async def test_statistics_page_and_csv_for_readers(console: tuple[Console, Calls]) -> None:
    running, _ = console
    async with client() as session:
        await log_in(session, running, "rita")  # a reader may look
        async with session.get(f"{base(running)}/stats") as reply:
            assert reply.status == 200
            page = await reply.text()
        assert 'id="stats"' in page and "<td>NORTH</td>" in page and "Download CSV" in page
        async with session.get(f"{base(running)}/stats?by=month&from=someday") as reply:
            assert reply.status == 200 and "from: not a date" in await reply.text()
        async with session.get(f"{base(running)}/stats.csv?by=pair") as reply:
            assert reply.status == 200 and reply.content_type == "text/csv"
            assert "attachment" in reply.headers["Content-Disposition"]
            assert (await reply.text()).startswith("group,requests,filled,")
        async with session.get(f"{base(running)}/stats.csv?by=nonsense") as reply:
            assert reply.status == 400
    async with client() as stranger, stranger.get(f"{base(running)}/stats.csv") as reply:
        assert reply.status in (302, 303, 401, 403) or "login" in str(reply.url)


# -- lists -------------------------------------------------------------------------------


def fill_many(path: Path, count: int) -> None:
    """`count` requests a minute apart from 2023-11-14 22:13:20 UTC, titled so that the
    order by title is the reverse of the order by age."""
    index = index_module.Index(path)
    index.apply(
        [
            index_module.Record(
                "ill.transactions",
                0,
                n,
                1_700_000_000_000 + n * 60_000,
                f"tLIST{n:04d}",
                json.dumps(
                    {
                        "id": f"tLIST{n:04d}",
                        "state": "Requested" if n % 2 else "Loaned",
                        "borrower": "NORTH",
                        "borrower_request_id": f"L-{n}",
                        "request": {"bibliographic": {"title": f"Title {count - n:04d}"}},
                        "attempts": [{"lender": "SOUTH"}],
                    }
                ).encode(),
            )
            for n in range(count)
        ]
    )
    index.close()


async def test_lists_page_sort_filter_by_date_and_show_local_times(
    tmp_path: Path, users_file: Path
) -> None:
    path = tmp_path / "many.sqlite3"
    fill_many(path, 60)
    directory = Directory.model_validate(
        {
            "consortium": "T",
            "partners": [
                {"symbol": "NORTH", "name": "North", "protocol": "ncip", "endpoint": "http://n/"},
                {
                    "symbol": "SOUTH",
                    "name": "South",
                    "protocol": "ncip",
                    "endpoint": "http://s/",
                    "contact_name": "Sam <ILL desk>",
                    "contact_email": "ill@south.test",
                    "contact_phone": "+44 1 234",
                },
            ],
        }
    )

    async def waiting() -> dict[str, list[dict[str, Any]]]:
        step = {"transaction_id": "tLIST0001", "step": "Request", "status": "parked"}
        return {"SOUTH": [{**step, "failures": 5, "next_at": None, "error": "refused"}]}

    running = Console(
        index_path=path,
        users_file=users_file,
        directory=directory,
        zone=ZoneInfo("Europe/Berlin"),
        waiting=waiting,
    )
    await running.start()
    try:
        async with client() as session:
            assert (await log_in(session, running, "rita")).status == 303

            async def listed(query: str) -> tuple[str, list[str]]:
                async with session.get(f"{base(running)}/?{query}") as reply:
                    page = await reply.text()
                return page, re.findall(r'data-txn="(tLIST\d+)"', page)

            page, rows = await listed("")
            assert "1 to 50 of 60 requests · page 1 of 2" in page
            assert rows[0] == "tLIST0059" and len(rows) == 50  # newest first
            assert 'id="page-next"' in page and 'id="page-prev"' not in page
            page, rows = await listed("page=2")
            assert rows == [f"tLIST{n:04d}" for n in range(9, -1, -1)]
            assert "51 to 60 of 60" in page and 'id="page-prev"' in page
            # Sorted by title (A first), the oldest request's title comes last.
            page, rows = await listed("sort=title&dir=asc")
            assert rows[0] == "tLIST0059" and 'aria-sort="ascending"' in page
            # Every state is offered, not only those seen; the filter counts what matches.
            for state in ("RenewPending", "CancelPending", "Expired", "Loaned"):
                assert f'<option value="{state}"' in page
            page, rows = await listed("state=Loaned")
            assert "of 30 requests" in page and len(rows) == 30
            # Dates are days in the console's zone: the first request was made at 23:13 on
            # 14 November in Berlin, the next ones on the 14th until 23:59, then the 15th.
            page, rows = await listed("from=2023-11-15")
            assert "of 13 requests" in page and "tLIST0046" not in rows
            page, rows = await listed("to=2023-11-14")
            assert "of 47 requests" in page
            page, _ = await listed("from=14.11.2023")
            assert "is not a date (YYYY-MM-DD); not used" in page and "of 60 requests" in page
            async with session.get(f"{base(running)}/requests/tLIST0000") as reply:
                request_page = await reply.text()
            assert "2023-11-14 23:13:20 CET" in request_page
            async with session.get(f"{base(running)}/partners") as reply:
                partners = await reply.text()
        # Who to call, next to the partner with deliveries waiting (and escaped).
        south = partners[partners.index('data-partner="SOUTH"') :]
        assert "contact: Sam &lt;ILL desk&gt;" in south and 'href="mailto:ill@south.test"' in south
        north = partners[partners.index('data-partner="NORTH"') : partners.index("SOUTH")]
        assert "contact:" not in north
    finally:
        await running.stop()


async def test_dead_letters_filter_by_the_stages_and_partners_they_have(
    console: tuple[Console, Calls],
) -> None:
    running, _ = console
    async with client() as session:
        assert (await log_in(session, running, "rita")).status == 303
        async with session.get(f"{base(running)}/deadletters") as reply:
            page = await reply.text()
        assert "1 to 1 of 1 dead letters · page 1 of 1" in page
        # Chosen from what is there, not typed: a typo cannot hide every letter.
        assert '<option value="apply">apply</option>' in page
        assert '<option value="NORTH">NORTH</option>' in page
        async with session.get(f"{base(running)}/deadletters?stage=parse") as reply:
            assert "No dead letters." in await reply.text()
        async with session.get(f"{base(running)}/deadletters?partner=NORTH&stage=apply") as reply:
            page = await reply.text()
        assert f'href="/requests/{TXN}"' in page and "of 1 dead letters" in page
