"""The console: an aiohttp application on its own port (RSHUB_CONSOLE_PORT), started by
`rshub serve` next to the gateway as a mode Service.

    GET  /login, POST /login, POST /logout     the console's own login (users file)
    GET  /                                     open requests by state; search (Index.find)
    GET  /requests/{txn}                       one request: facts, routing, timeline, raw
    POST /requests/{txn}/redeliver             operators: send its waiting steps again
    POST /requests/{txn}/{action}              operators: route, cancel, close, note, message
                                               (hub.ops.actions; REQUEST_ACTIONS)
    GET  /partners                             each partner's load, open requests, last
                                               contact, delivery health, waiting deliveries
    POST /partners/{symbol}/redeliver          operators: send all that waits for it again
    GET  /deadletters                          refused messages and records, with reasons
    POST /deadletters/replay                   operators: replay one (rshub deadletters replay)
    POST /deadletters/ack                      operators: acknowledge one (rshub deadletters ack)
    GET  /live                                 server-sent events: what the index takes in
    GET  /static/console.{js,css}

Every page but the login needs a session; every POST needs the session's CSRF token, and the
ones that change something need the operator role. Logins go through the shared
`LoginThrottle` (per source address and per name, counted before scrypt runs). The port caps
connections per source address and in all and closes a connection that has not sent a whole
request head within `idle_timeout_s`, so that no flood on it can take the descriptors the
partners' ports need. Pages are read from the operators' index
(the SQLite file `rshub serve` keeps from the topics) in one reader thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web
from mode import Service

from connectors.core.connections import CappedServer, SourceLimit, bind
from connectors.core.directory import Directory
from connectors.core.records import RouteAction
from connectors.core.throttle import LoginThrottle
from hub.domain.lifecycle import State
from hub.ops import index as index_module
from hub.ops import statistics
from hub.ops.console import pages, static, views
from hub.ops.console import stats as stats_page
from hub.ops.console.html import Html
from hub.ops.console.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    same,
    token,
)
from hub.ops.console.users import UserFile, UsersError

log = structlog.get_logger(__name__)
T = TypeVar("T")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 64 * 1024
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing the stream
CLIENT_QUEUE = 1000  # live events buffered per browser; one that falls behind is dropped
PAGE_SIZE = 50  # requests per page of the list
# Every state a request can be in, for the list's filter (not only those the index has seen).
ALL_STATES = [s.value for s in State if s is not State.NEW]
DEADLETTER_PAGE = 50  # dead letters per page

SESSION = web.RequestKey("console_session", Session)
FORM = web.RequestKey("console_form", dict[str, str])  # the text fields of a POSTed form
Redeliverer = Callable[[str | None, str | None, str], Awaitable[tuple[int, str]]]
Replayer = Callable[
    [str, dict[str, Any] | None, dict[str, Any] | None, bool, str], Awaitable[tuple[int, str]]
]
Acknowledger = Callable[[str, dict[str, Any] | None, str, str], Awaitable[tuple[int, str]]]
Waiting = Callable[[], Awaitable[dict[str, list[dict[str, Any]]]]]


class Console(Service):
    def __init__(
        self,
        *,
        index_path: Path,
        users_file: Path,
        directory: Directory,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
        session_idle_s: float = 8 * 3600.0,
        idle_timeout_s: float = 15.0,
        max_connections_per_source: int = 32,
        max_connections: int = 64,
        secure_cookies: bool = False,
        live_interval_s: float = 1.0,
        stuck_after: Any = None,
        notes: list[str] | None = None,
        load: Callable[[], dict[str, int]] | None = None,
        waiting: Waiting | None = None,
        redeliver: Redeliverer | None = None,
        replay: Replayer | None = None,
        acknowledge: Acknowledger | None = None,
        staff: Any = None,
        zone: tzinfo = UTC,
        **kwargs: Any,
    ) -> None:
        """`load`: open requests each lender holds (the rota's load view); `waiting`: steps
        waiting for delivery per partner (rshub deliveries); `redeliver(txn, partner, by)`,
        `replay(ref, letter, raw, trust_sender, by)` and `acknowledge(ref, letter, by,
        note)`: the operators' actions, as the commands do them (hub.ops); `staff`: the
        request actions (a `hub.ops.actions.Staff`: reroute, cancel, close, note, message);
        `zone`: the time zone pages show times in.
        `idle_timeout_s`: a connection without a whole request head within it (from connect,
        or from its last answer) is closed; the two caps: open connections from one source
        address, and in all."""
        super().__init__(**kwargs)
        self.index_path, self.directory = index_path, directory
        self.users = UserFile(users_file)
        self.host, self.port, self.sock = host, port, sock
        self.sessions = Sessions(session_idle_s)
        self.throttle = LoginThrottle()
        self.idle_timeout_s = idle_timeout_s
        self.connections = SourceLimit(max_connections_per_source, "console", max_connections)
        self.secure_cookies = secure_cookies
        self.live_interval_s = live_interval_s
        self.stuck = stuck_after or index_module.stuck_after()
        self.notes = notes or []
        self.load = load or dict
        self.waiting = waiting
        self.redeliver_call = redeliver
        self.replay_call = replay
        self.acknowledge_call = acknowledge
        self.staff = staff
        self.zone = zone
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-index")
        self.index: index_module.Index | None = None
        self.clients: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self.runner: web.AppRunner | None = None
        self.server: CappedServer | None = None
        self.live_from: tuple[int, int] | None = None

    # -- service -------------------------------------------------------------------------

    async def on_start(self) -> None:
        self.index = await self.read(lambda: index_module.Index(self.index_path))
        # keepalive_timeout: aiohttp closes a connection that has not completed a request
        # head within it, from connect or from the last answer (a live stream is an answer
        # under way, not idle).
        self.runner = web.AppRunner(
            self.application(), access_log=None, keepalive_timeout=self.idle_timeout_s
        )
        await self.runner.setup()
        assert self.runner.server is not None
        sock = self.sock or bind(self.host, self.port, "the console")
        self.server = CappedServer(self.runner.server, self.connections, sock)
        self.port = self.server.sockets[0].getsockname()[1]
        if not self.users.users():
            log.warning(
                "console.no_users",
                users_file=str(self.users.path),
                fix="rshub console-user add NAME --role operator",
            )
        log.info("console.listening", host=self.host, port=self.port)
        self.add_future(self._feed())

    async def on_stop(self) -> None:
        for queue in list(self.clients):
            queue.put_nowait(None)
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def on_shutdown(self) -> None:
        """After the live feed has stopped: the index can be closed."""
        if self.index is not None:
            index, self.index = self.index, None
            await self.read(index.close)
        self.reader.shutdown(wait=False)

    async def read(self, call: Callable[[], T]) -> T:
        """Runs a blocking index read in the console's one reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self.reader, call)

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_FORM_BYTES, middlewares=[self._headers, self._authenticate]
        )
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/", self.requests)
        app.router.add_get("/requests/{txn}", self.request_page)
        app.router.add_post("/requests/{txn}/redeliver", self.redeliver_request)
        app.router.add_post("/requests/{txn}/{action}", self.request_action)
        app.router.add_get("/partners", self.partners)
        app.router.add_post("/partners/{symbol}/redeliver", self.redeliver_partner)
        app.router.add_get("/deadletters", self.deadletters)
        app.router.add_post("/deadletters/replay", self.replay)
        app.router.add_post("/deadletters/ack", self.acknowledge)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/stats.csv", self.stats_csv)
        app.router.add_get("/live", self.live)
        app.router.add_get("/static/console.js", self.script)
        app.router.add_get("/static/console.css", self.stylesheet)
        return app

    # -- middleware ------------------------------------------------------------------------

    @web.middleware
    async def _headers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in ("/login", "/static/console.js", "/static/console.css"):
            return await handler(request)
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(sid)
        if session is not None and not self._still_allowed(session):
            self.sessions.close(sid)  # removed from the users file, or given another role
            session = None
        if session is None:
            if request.method != "GET" or request.path == "/live":
                raise web.HTTPUnauthorized(text="log in first")
            target = request.path_qs if request.path != "/" or request.query_string else ""
            raise web.HTTPSeeOther(pages.url("/login", next=target))
        request[SESSION] = session
        if request.method == "POST":
            form = await request.post()
            if not same(_field(form, "csrf"), session.csrf):
                log.warning("console.csrf_refused", user=session.user, path=request.path)
                raise web.HTTPForbidden(
                    text="the form has expired or did not come from this "
                    "console: reload the page and try again"
                )
            request[FORM] = _text_fields(form)
        return await handler(request)

    def _still_allowed(self, session: Session) -> bool:
        try:
            user = self.users.users().get(session.user)
        except UsersError:
            return False
        return user is not None and user.role == session.role

    def page(
        self, request: web.Request, title: str, content: Html, page: str, txn: str = ""
    ) -> web.Response:
        session: Session | None = request.get(SESSION)
        text = pages.layout(
            title,
            content,
            session,
            page,
            consortium=self.directory.consortium,
            notes=self.notes,
            txn=txn,
        )
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    # -- login -----------------------------------------------------------------------------

    async def login_page(self, request: web.Request, message: str = "") -> web.Response:
        csrf = request.cookies.get(LOGIN_COOKIE) or token()
        next_path = _local(request.query.get("next", "")) if request.method == "GET" else ""
        if request.method == "POST":
            next_path = _local(_field(request.get(FORM) or {}, "next"))
        if not message and not self.users.users():
            message = (
                "No console users yet: an administrator adds one with "
                "`rshub console-user add NAME --role operator`."
            )
        response = self.page(request, "Log in", pages.login_form(csrf, next_path, message), "login")
        response.set_cookie(
            LOGIN_COOKIE,
            csrf,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
            path="/login",
        )
        if message:
            response.set_status(401 if request.method == "POST" else 200)
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        request[FORM] = _text_fields(form)
        if not same(_field(form, "csrf"), request.cookies.get(LOGIN_COOKIE)):
            return await self.login_page(request, "The form expired; please log in again.")
        name, password = _field(form, "name").strip(), _field(form, "password")
        address = request.remote or "?"
        # Counted from before scrypt runs: concurrent guesses count against the limit too.
        attempt = self.throttle.begin(address, name)
        if not attempt.allowed:
            if attempt.report:
                log.warning(
                    "console.login_throttled", user=name[:64], remote=address, count=attempt.burst
                )
            page = await self.login_page(
                request, "Too many failed logins from here; wait a few minutes and try again."
            )
            page.set_status(429)
            return page
        try:
            user = await asyncio.to_thread(self.users.authenticate, name, password)
        except UsersError as error:
            attempt.end(None)
            log.error("console.users_file", error=str(error))
            return await self.login_page(request, "The console's users file cannot be read.")
        except BaseException:
            attempt.end(False)  # a guess cancelled half-way (the client left) still counts
            raise
        attempt.end(user is not None)
        if user is None:
            if attempt.report:
                log.warning(
                    "console.login_failed", user=name[:64], remote=address, count=attempt.burst
                )
            return await self.login_page(request, "Wrong name or password.")
        self.sessions.close(request.cookies.get(SESSION_COOKIE))
        sid, _session = self.sessions.open(user.name, user.role)
        log.info("console.login", user=user.name, role=user.role, remote=address)
        response = web.HTTPSeeOther(_local(_field(form, "next")) or "/")
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
            path="/",
        )
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session: Session = request[SESSION]
        self.sessions.close(request.cookies.get(SESSION_COOKIE))
        log.info("console.logout", user=session.user)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # -- pages -----------------------------------------------------------------------------

    async def requests(self, request: web.Request) -> web.Response:
        query = {k: v.strip() for k, v in request.query.items() if isinstance(v, str)}
        errors: list[str] = []
        created_from = self._day(query.get("from"), 0, "from", errors)
        created_to = self._day(query.get("to"), 1, "to", errors)
        sort = query.get("sort") if query.get("sort") in index_module.SORTS else "created"
        descending = query.get("dir") != "asc"
        page = _number(query.get("page"))
        criteria = index_module.Criteria(
            borrower=query.get("borrower") or None,
            request_id=query.get("request_id") or None,
            patron=query.get("patron") or None,
            lender=query.get("lender") or None,
            title=query.get("title") or None,
            states=[query["state"]] if query.get("state") else [],
            open_only=bool(query.get("open")),
            needs_attention=bool(query.get("attention")),
            limit=PAGE_SIZE,
            created_from=created_from,
            created_to=created_to,
            sort=str(sort),
            descending=descending,
            offset=(page - 1) * PAGE_SIZE,
        )
        now = datetime.now(UTC)
        index = self._index()

        def read() -> tuple[dict[str, int], tuple[list[dict[str, Any]], int]]:
            return views.open_by_state(index), index.search(criteria, now, self.stuck)

        counts, (found, total) = await self.read(read)
        listing = pages.Listing(found, total, criteria.offset, PAGE_SIZE, str(sort), descending)
        content = pages.requests_page(query, counts, ALL_STATES, listing, now, self.zone, errors)
        return self.page(request, "Requests", content, "requests")

    def _day(self, given: str | None, after: int, name: str, errors: list[str]) -> str | None:
        """The start of a day given as YYYY-MM-DD (or of the day `after` it) in the console's
        zone, as the index keeps times (ISO, UTC); a day that is not one is said, not used."""
        if not given:
            return None
        try:
            day = date.fromisoformat(given)
        except ValueError:
            errors.append(f"{name}: {given!r} is not a date (YYYY-MM-DD); not used")
            return None
        start = datetime.combine(day + timedelta(days=after), time(), tzinfo=self.zone)
        return start.astimezone(UTC).isoformat()

    async def request_page(self, request: web.Request) -> web.Response:
        txn = request.match_info["txn"]
        now = datetime.now(UTC)
        index = self._index()

        def read() -> tuple[Any, ...] | None:
            row = index.transaction(txn)
            if row is None:
                return None
            return row, index.story(txn), index.routing(txn), index.attention(row, now, self.stuck)

        found = await self.read(read)
        if found is None:
            content = pages.tag("p", f"No request {txn} in the index (yet).", id="missing")
            response = self.page(request, "Not found", content, "missing")
            response.set_status(404)
            return response
        row, story, routing, attention = found
        choices = None
        if self.staff is not None:
            choices = pages.StaffChoices(
                lenders=[p.symbol for p in self.directory.partners if p.lends],
                messageable={
                    side: symbol
                    for side, symbol in views.parties(row).items()
                    if self.staff.can_message(symbol, side)
                },
            )
        content = pages.request_page(
            row, story, routing, attention, request[SESSION], now, choices, self.zone
        )
        return self.page(request, f"Request {txn}", content, "request", txn=txn)

    async def partners(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        index = self._index()
        figures = await self.read(lambda: views.partner_figures(index, now))
        try:
            waiting = await self.waiting() if self.waiting else {}
        except Exception as error:  # the broker is away: the page still shows the rest
            log.warning("console.waiting_unavailable", error=str(error)[:200])
            waiting = {}
        content = pages.partners_page(
            list(self.directory.partners),
            figures,
            self.load(),
            waiting,
            request[SESSION],
            now,
            self.zone,
        )
        return self.page(request, "Partners", content, "partners")

    async def deadletters(self, request: web.Request) -> web.Response:
        query = {k: v.strip() for k, v in request.query.items() if isinstance(v, str)}
        offset = (_number(query.get("page")) - 1) * DEADLETTER_PAGE
        index = self._index()

        def read() -> tuple[list[dict[str, Any]], int, tuple[list[str], list[str]]]:
            letters, total = index.dead_letter_page(
                query.get("partner") or None, query.get("stage") or None, DEADLETTER_PAGE, offset
            )
            for letter in letters:
                letter["replayable"] = bool(letter["audit_ref"] and index.raw(letter["audit_ref"]))
            return letters, total, index.dead_letter_values()

        letters, total, (stages, partners) = await self.read(read)
        listing = pages.Listing(letters, total, offset, DEADLETTER_PAGE, "at", True)
        content = pages.deadletters_page(
            listing, query, request[SESSION], self.zone, stages, partners
        )
        return self.page(request, "Dead letters", content, "deadletters")

    async def stats(self, request: web.Request) -> web.Response:
        query, errors = stats_page.query_of(request.query)
        index = self._index()
        rows = await self.read(lambda: statistics.compute(index.db, query))
        return self.page(request, "Statistics", stats_page.page(rows, query, errors), "stats")

    async def stats_csv(self, request: web.Request) -> web.Response:
        query, errors = stats_page.query_of(request.query)
        if errors:
            raise web.HTTPBadRequest(text="; ".join(errors))
        index = self._index()
        rows = await self.read(lambda: statistics.compute(index.db, query))
        name = f"rshub-stats-{query.by}-{query.role}.csv"
        return web.Response(
            text=statistics.as_csv(rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- operators' actions ----------------------------------------------------------------

    def _operator(self, request: web.Request) -> Session:
        session: Session = request[SESSION]
        if not session.operator:
            log.warning("console.refused_reader", user=session.user, path=request.path)
            raise web.HTTPForbidden(text="readers may look, not act: ask an operator")
        return session

    async def redeliver_request(self, request: web.Request) -> web.Response:
        session = self._operator(request)
        txn = request.match_info["txn"]
        partner = _field(request[FORM], "partner") or None
        said = await self._act(session, "redeliver", txn, self._redeliver(txn, partner, session))
        session.flash.append(said)
        raise web.HTTPSeeOther(f"/requests/{txn}")

    async def request_action(self, request: web.Request) -> web.Response:
        """One of REQUEST_ACTIONS on a request, as `hub.ops.actions` does it for the CLI and
        the API; the answer (done, or refused with the reason) is shown on its page."""
        session = self._operator(request)
        txn, name = request.match_info["txn"], request.match_info["action"]
        if name not in REQUEST_ACTIONS:
            raise web.HTTPNotFound(text=f"no action {name}")
        form = request[FORM]
        index = self._index()
        row = await self.read(partial(index.transaction, txn))
        said: Awaitable[tuple[int, str]]
        if self.staff is None:
            said = _done(2, f"{name} is not available in this console")
        elif row is None:
            said = _done(1, f"no request {txn} in the index (yet)")
        else:
            by = f"console:{session.user}"
            said = REQUEST_ACTIONS[name](self.staff, txn, form, by, row)
        session.flash.append(await self._act(session, name, txn, said))
        raise web.HTTPSeeOther(f"/requests/{txn}")

    async def redeliver_partner(self, request: web.Request) -> web.Response:
        session = self._operator(request)
        symbol = request.match_info["symbol"]
        if self.directory.partner(symbol) is None:
            raise web.HTTPNotFound(text=f"no partner {symbol}")
        said = await self._act(session, "redeliver", symbol, self._redeliver(None, symbol, session))
        session.flash.append(said)
        raise web.HTTPSeeOther("/partners")

    async def replay(self, request: web.Request) -> web.Response:
        session = self._operator(request)
        form = request[FORM]
        ref, trust = _field(form, "ref"), _field(form, "trust_sender") == "1"
        index = self._index()

        def read() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            letter = index.dead_letter(ref)
            raw = index.raw(letter["audit_ref"]) if letter and letter["audit_ref"] else None
            return letter, raw

        letter, raw = await self.read(read)
        said: Awaitable[tuple[int, str]]
        if self.replay_call is None:
            said = _done(2, "replay is not available in this console")
        else:
            said = self.replay_call(ref, letter, raw, trust, f"console:{session.user}")
        session.flash.append(await self._act(session, "replay", ref, said))
        raise web.HTTPSeeOther("/deadletters")

    async def acknowledge(self, request: web.Request) -> web.Response:
        session = self._operator(request)
        form = request[FORM]
        ref, note = _field(form, "ref"), _field(form, "note").strip()
        index = self._index()
        letter = await self.read(partial(index.dead_letter, ref))
        said: Awaitable[tuple[int, str]]
        if self.acknowledge_call is None:
            said = _done(2, "acknowledging is not available in this console")
        else:
            said = self.acknowledge_call(ref, letter, f"console:{session.user}", note)
        session.flash.append(await self._act(session, "acknowledge", ref, said))
        raise web.HTTPSeeOther("/deadletters")

    def _redeliver(
        self, txn: str | None, partner: str | None, session: Session
    ) -> Awaitable[tuple[int, str]]:
        if self.redeliver_call is None:
            return _done(2, "redelivery is not available in this console")
        return self.redeliver_call(txn, partner, f"console:{session.user}")

    async def _act(
        self, session: Session, what: str, subject: str, call: Awaitable[tuple[int, str]]
    ) -> tuple[str, bool]:
        """Run an action; what to tell the operator, and whether it was done (a refusal,
        "refused again" included, is shown as one, not as a success)."""
        try:
            code, text = await call
        except Exception as error:  # the broker is away: say so, the console goes on
            code, text = 2, f"{type(error).__name__}: {error}"
        log.info(f"console.{what}", user=session.user, subject=subject, code=code, said=text)
        return (text, True) if code == 0 else (f"{what} {subject}: {text}", False)

    # -- live ------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.StreamResponse:
        session: Session = request[SESSION]
        sid = request.cookies.get(SESSION_COOKIE)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        for key, value in SECURITY_HEADERS.items():
            response.headers[key] = value
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(CLIENT_QUEUE)
        self.clients.add(queue)
        try:
            await response.write(b": connected\n\nretry: 3000\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    if self.sessions.get(sid) is not session:
                        break  # logged out, or expired
                    await response.write(b": still here\n\n")
                    continue
                if item is None:
                    break
                kind, data = item
                payload = json.dumps(data, default=str)
                await response.write(f"event: {kind}\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(queue)
        return response

    async def _feed(self) -> None:
        """Reads what the index took in since the last look, while browsers listen, and
        hands it to each. Never ends the console (nor the hub) by failing."""
        while not self.should_stop:
            await self.sleep(self.live_interval_s)
            index = self.index
            if index is None or self.should_stop:
                return
            try:
                if not self.clients or self.live_from is None:
                    self.live_from = await self.read(partial(views.live_start, index))
                    continue
                start = self.live_from
                found, self.live_from = await self.read(partial(views.live_since, index, start))
            except Exception as error:  # a locked or damaged index: try again next time
                log.warning("console.live_unavailable", error=str(error)[:200])
                continue
            for event in found:
                # Shown as the pages show times: in the console's zone.
                event["when"] = pages.when(event.get("at"), self.zone)
                for queue in list(self.clients):
                    try:
                        queue.put_nowait((str(event["type"]), event))
                    except asyncio.QueueFull:  # a browser that stopped reading: end its
                        self.clients.discard(queue)  # stream; it reconnects from now on
                        queue.get_nowait()
                        queue.put_nowait(None)

    # -- static ----------------------------------------------------------------------------

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=static.JS, content_type="text/javascript", charset="utf-8")

    async def stylesheet(self, request: web.Request) -> web.Response:
        return web.Response(text=static.CSS, content_type="text/css", charset="utf-8")

    def _index(self) -> index_module.Index:
        if self.index is None:
            raise web.HTTPServiceUnavailable(text="the console is starting")
        return self.index


Action = Callable[[Any, str, dict[str, str], str, dict[str, Any]], Awaitable[tuple[int, str]]]


def _route(
    staff: Any, txn: str, form: dict[str, str], by: str, row: dict[str, Any]
) -> Awaitable[tuple[int, str]]:
    how = _field(form, "how")
    try:
        action = RouteAction(how)
    except ValueError:
        return _done(2, f"no way to route called {how!r}")
    named = action in (RouteAction.LENDER, RouteAction.SKIP)
    lender = _field(form, "lender").strip() or None
    if named and lender is None:
        return _done(2, "choose the lender")
    return staff.route(txn, action, lender if named else None, by)


def _message(
    staff: Any, txn: str, form: dict[str, str], by: str, row: dict[str, Any]
) -> Awaitable[tuple[int, str]]:
    to = _field(form, "to")
    recipient = views.parties(row).get(to)
    return staff.message(txn, to, _field(form, "text"), by, recipient)


# The request actions of the console, by the last part of their path; each calls the
# operations layer (`hub.ops.actions.Staff`) with the form's fields and who asked.
REQUEST_ACTIONS: dict[str, Action] = {
    "route": _route,
    "cancel": lambda staff, txn, form, by, row: staff.cancel(txn, _field(form, "reason"), by),
    "close": lambda staff, txn, form, by, row: staff.close(txn, _field(form, "reason"), by),
    "note": lambda staff, txn, form, by, row: staff.note(txn, _field(form, "text"), by),
    "message": _message,
}


def _text_fields(form: Any) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _field(form: Any, name: str) -> str:
    value = form.get(name) if form is not None else None
    return value if isinstance(value, str) else ""


# A path on this site: a slash not followed by another or a backslash, then printable ASCII
# other than space and backslash. Browsers drop tabs and newlines and read `\` as `/`, so
# `/\t/evil` and `/\evil` are other sites to them; those characters are never allowed, nor
# (in case anything decodes it once more) their percent-encoded forms.
LOCAL_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")
UNSAFE_DECODED = re.compile(r"^/[/\\]|[\x00-\x1f\x7f\\]")


def _local(target: str) -> str:
    """A path of this console to go to after login; anything else (another site, a
    protocol-relative //host, a backslash, a control character, any of them percent-encoded)
    is dropped."""
    if not LOCAL_PATH.fullmatch(target) or UNSAFE_DECODED.search(urllib.parse.unquote(target)):
        return ""
    return target


MAX_PAGE = 1_000_000  # beyond it an offset no longer fits SQLite's integer


def _number(given: str | None) -> int:
    """A page number from the query: 1 unless a whole number of at least 1 is given."""
    try:
        return min(max(1, int(given or "1")), MAX_PAGE)
    except ValueError:
        return 1


async def _done(code: int, text: str) -> tuple[int, str]:
    return code, text
