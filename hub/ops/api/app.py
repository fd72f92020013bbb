"""The API's HTTP side: an aiohttp sub-application mounted at /api/v1/ on the gateway's port.

Every call but /openapi.json carries `Authorization: Bearer <token>` (tokens.py); failed
tokens go through the shared `LoginThrottle` per source address. A library's token names its
requests by its own request ids, so it can only ever address its own: another library's
request, like one that does not exist, is a 404. Placing and acting go through the gateway's
`Intake.take` with the API connector's codec, as a partner's message does (audited, routed,
answered once durable); reading comes from this worker's transaction table, else the
operators' index. Each call is logged (`api.call`) with the client's name, never its token.
Every error is an RFC 9457 problem document; nothing here answers a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from connectors.core.contract import Codec, Intake, Refusal
from connectors.core.model import Event, transaction_id
from connectors.core.throttle import LoginThrottle
from hub.ops import index as index_module
from hub.ops.api import patron, views
from hub.ops.api.tokens import Client, TokenFile
from hub.runtime import status_links, webhook_store

log = structlog.get_logger(__name__)
T = TypeVar("T")

PROBLEM = "application/problem+json"
CALL_LINE = "application/vnd.rshub.api-call+json"  # an API call's line on ill.audit
PROBLEM_BASE = "https://rshub.invalid/problems/"
CLIENT = web.RequestKey("api_client", Client)
ACTION_EVENTS = {"cancel": Event.CANCEL, "renew": Event.RENEW}
Staff = Callable[..., Awaitable[tuple[int, str]]]


def problem(status: int, detail: str, kind: str, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": kind.replace("_", " "),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type=PROBLEM, headers=headers
    )


def invalid(field: str, message: str, status: int = 422) -> web.Response:
    return problem(status, f"{field}: {message}", "invalid", [{"field": field, "message": message}])


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(), status=status, content_type="application/json"
    )


# Reads whose audit line may be under way at once; past it a read waits for its own.
AUDIT_BACKLOG = 1000


class Api:
    def __init__(
        self,
        *,
        intake: Intake,
        codec: Codec[Any],
        tokens: TokenFile,
        index_path: Path,
        document: dict[str, Any],
        row: Callable[[str], Any] | None = None,
        renews: Callable[[str], bool] | None = None,
        redeliver: Staff | None = None,
        route: Staff | None = None,
        replay: Staff | None = None,
        manage: Staff | None = None,
        stuck: timedelta = timedelta(hours=72),
        throttle: LoginThrottle | None = None,
        webhooks: Path | None = None,
        event_ends: Callable[[], Awaitable[dict[int, int]]] | None = None,
    ) -> None:
        """`row(txn)`: the transaction table's row in this worker, or None; `renews(lender)`:
        whether that lender's protocol has renewals; `redeliver(txn, partner, by)`,
        `route(txn, action, lender, by)`, `replay(ref, trust_sender, by)`, `manage(txn,
        action, text, to, by)` (cancel, close, note, message): the operators' actions, as
        the console does them (hub.ops.actions). `webhooks`: the subscriptions' store
        (hub.runtime.webhook_store; None: no webhooks); `event_ends()`: the ends of
        ill.events now, where the first subscription's deliveries start."""
        self.intake, self.codec, self.tokens = intake, codec, tokens
        self.index_path, self.document = index_path, document
        self.row, self.renews = row, renews
        self.staff = {"redeliver": redeliver, "route": route, "replay": replay, "manage": manage}
        self.stuck = stuck
        self.throttle = throttle or LoginThrottle()
        self.auditing: set[asyncio.Task[None]] = set()  # reads' audit lines under way
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="api-index")
        self.index: index_module.Index | None = None
        self.webhooks_path, self.event_ends = webhooks, event_ends
        # The patron's page in words is the API connector's; another codec: JSON only.
        self.pages: patron.Pages | None = getattr(codec, "patron_pages", None)
        # The store's one connection is used from one thread, one call at a time.
        self.hooks_io = ThreadPoolExecutor(1, thread_name_prefix="api-webhooks")
        self.hooks: webhook_store.Store | None = None

    # -- mounting ----------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.add_subapp("/api/v1", self.application())

    def application(self) -> web.Application:
        api = web.Application(middlewares=[self._problems, self._authenticate])
        api.router.add_get("/openapi.json", self.openapi)
        api.router.add_get("/status/{borrower}/{request_id}", self.patron_status)
        api.router.add_post("/requests", self.place)
        api.router.add_get("/requests", self.find)
        api.router.add_get("/requests/{request_id}", self.read)
        api.router.add_post("/requests/{request_id}/{action}", self.act)
        api.router.add_get("/transactions/{transaction_id}", self.read_transaction)
        api.router.add_post("/transactions/{transaction_id}/redeliver", self.redeliver)
        api.router.add_post("/transactions/{transaction_id}/route", self.route)
        api.router.add_post("/transactions/{transaction_id}/staff", self.manage)
        api.router.add_post("/deadletters/replay", self.replay)
        api.router.add_post("/webhooks", self.subscribe)
        api.router.add_get("/webhooks", self.subscriptions)
        api.router.add_delete("/webhooks/{subscription_id}", self.unsubscribe)
        api.router.add_get("/webhooks/{subscription_id}/deliveries", self.webhook_deliveries)
        api.router.add_post("/webhooks/{subscription_id}/redeliver", self.webhook_redeliver)
        api.on_cleanup.append(self._close)
        return api

    async def _close(self, _app: web.Application) -> None:
        self.reader.shutdown(wait=False)
        self.hooks_io.shutdown(wait=True)
        if self.hooks is not None:
            self.hooks.close()

    # -- what every call goes through ----------------------------------------------------------

    @web.middleware
    async def _problems(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        try:
            response = await handler(request)
        except web.HTTPException as error:  # aiohttp's own: no route, wrong method, too large
            kind = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
            response = problem(error.status, error.reason, kind.get(error.status, "http"))
        except Exception as error:  # a defect here must be a line in the log, not a traceback
            log.error("api.failed", path=request.path, error=f"{type(error).__name__}: {error}")
            response = problem(500, "the hub could not handle this call", "internal")
        client = request.get(CLIENT)
        if client is not None:
            if request.method in ("GET", "HEAD") and len(self.auditing) < AUDIT_BACKLOG:
                # A read answers from the index without the broker: its audit line is written
                # beside the answer, not before it (a slow broker must not slow reads).
                task = asyncio.create_task(self._audit_call(request, client, response.status))
                self.auditing.add(task)
                task.add_done_callback(self.auditing.discard)
            else:
                await self._audit_call(request, client, response.status)
        log.info(
            "api.call",
            client=client.name if client else None,
            partner=client.partner if client else None,
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((asyncio.get_running_loop().time() - started) * 1000),
        )
        return response

    async def _audit_call(self, request: web.Request, client: Client, status: int) -> None:
        """Every authenticated call on ill.audit with the client's identity (who, for which
        library, what, the answer's status), beside the raw body a request or an action is
        audited with. Unauthenticated calls are only logged (refused before anyone is known:
        keeping each would let anyone fill the topic). A call is answered even when its line
        cannot be written (the broker is away): said in the log."""
        line = {
            "client": client.name,
            "library": client.partner,
            "method": request.method,
            "path": request.path[:1000],
            "query": request.query_string[:1000],
            "status": status,
            "source": request.remote,
        }
        try:
            await self.intake.audit(
                "in", self.codec.protocol, client.partner, json.dumps(line).encode(), CALL_LINE
            )
        except Exception as error:
            log.warning(
                "api.audit_failed", client=client.name, error=f"{type(error).__name__}: {error}"
            )

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.match_info.handler in (self.openapi, self.patron_status):
            return await handler(request)  # public: the document, and a page behind its key
        challenge = {"WWW-Authenticate": 'Bearer realm="rshub"'}
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return problem(
                401, "send Authorization: Bearer <token>", "unauthenticated", headers=challenge
            )
        source = request.remote or "?"
        attempt = self.throttle.begin(source, token.strip()[:18])  # the token's public id part
        if not attempt.allowed:
            retry = {"Retry-After": str(int(self.throttle.window_s))}
            return problem(
                429, "too many failed tokens from this address", "throttled", headers=retry
            )
        client = self.tokens.authenticate(token.strip())
        attempt.end(client is not None)
        if client is None:
            if attempt.report:
                log.warning("api.token_refused", source=source)
            return problem(401, "the token was not accepted", "unauthenticated", headers=challenge)
        request[CLIENT] = client
        return await handler(request)

    def _client(self, request: web.Request, scope: str) -> Client | web.Response:
        client = request[CLIENT]
        if not client.may(scope):
            return problem(403, f"this token lacks the scope {scope!r}", "forbidden")
        return client

    async def _read_index(self, work: Callable[[index_module.Index], T]) -> T:
        def run() -> T:
            if self.index is None:
                self.index = index_module.Index(self.index_path)
            return work(self.index)

        return await asyncio.get_running_loop().run_in_executor(self.reader, run)

    async def _body(self, request: web.Request) -> bytes | web.Response:
        try:
            return await request.read()  # bounded by the gateway's client_max_size
        except web.HTTPRequestEntityTooLarge as error:
            return problem(413, error.reason, "too_large")

    async def _take(self, partner: str, body: bytes) -> web.Response:
        try:
            taken = await self.intake.take(self.codec, partner, body, "application/json")
        except Refusal as refusal:
            await self.intake.refuse(refusal, partner, self.codec.protocol)
            taken = refusal.answer
        content = taken.body
        if taken.status in (201, 202):
            accepted = json.loads(taken.body)
            txn = transaction_id(partner, accepted["request_id"])
            placed = accepted["accepted"] == Event.REQUEST.value
            link = status_links.status_path(partner, accepted["request_id"]) if placed else None
            shown = views.Accepted(**accepted, transaction_id=txn, status_url=link)
            content = shown.model_dump_json().encode()
        kind = taken.content_type.split(";")[0]
        return web.Response(body=content, status=taken.status, content_type=kind)

    def _borrower(self, client: Client) -> str | web.Response:
        """The token's library, if the directory has it as an API borrower."""
        partner = self.intake.directory.partner(client.partner or "")
        if client.partner is None:
            return problem(403, "a staff token places and acts on no library's behalf", "forbidden")
        if partner is None or partner.protocol != self.codec.protocol:
            protocol = self.codec.protocol
            detail = f"{client.partner} is not a partner of protocol {protocol!r} in the directory"
            return problem(403, detail, "forbidden")
        return partner.symbol

    async def _view(self, txn: str) -> views.RequestView | None:
        row = self.row(txn) if self.row else None
        if row:
            return views.from_row(dict(row))
        found = await self._read_index(lambda index: index.transaction(txn))
        return views.from_index(found) if found and found.get("state") else None

    # -- the library's calls ---------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    async def patron_status(self, request: web.Request) -> web.Response:
        """The patron's page of a request placed through the API: reachable only with the key
        of its link (anything else is a 404, as for a request that does not exist); the
        title, the state in words and the dates, never the patron or the lender."""
        borrower, request_id = request.match_info["borrower"], request.match_info["request_id"]
        key = request.query.get("key", "")
        if not status_links.status_ok(borrower, request_id, key):
            return problem(404, "no such request", "not_found")
        found = await self._view(transaction_id(borrower, request_id))
        state = found.state if found else None
        pages = self.pages
        language = pages.language(request.headers.get("Accept-Language", "")) if pages else "en"
        shown = views.PatronStatus(
            request_id=request_id,
            title=found.title if found else None,
            state=state,
            state_text=pages.state_text(state, language) if pages else (state or ""),
            due_date=found.due_date if found else None,
            need_before=found.need_before if found else None,
        )
        if "application/json" in request.headers.get("Accept", "") or pages is None:
            response = answer(shown)
        else:
            page = pages.page(
                language, request_id, state, shown.title, shown.due_date, shown.need_before
            )
            response = web.Response(body=page, content_type="text/html", charset="utf-8")
        # The key is in the address: kept out of caches and of the next site's Referer.
        response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        return response

    async def place(self, request: web.Request) -> web.Response:
        client = self._client(request, "request")
        if isinstance(client, web.Response):
            return client
        borrower = self._borrower(client)
        if isinstance(borrower, web.Response):
            return borrower
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            document = json.loads(body)
        except ValueError:
            document = None  # the codec refuses it, audited and dead-lettered as any input
        if isinstance(document, dict) and "action" in document:
            return invalid("action", "Extra inputs are not permitted")
        response = await self._take(borrower, body)
        if response.status == 201 and isinstance(document, dict):
            response.headers["Location"] = f"/api/v1/requests/{document.get('request_id')}"
        return response

    async def find(self, request: web.Request) -> web.Response:
        client = self._client(request, "read")
        if isinstance(client, web.Response):
            return client
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
            offset = int(query.get("offset", "0"))
            older = query.get("older_than_hours")
            hours = float(older) if older is not None else None
        except ValueError as error:
            return invalid("query", str(error), 400)
        if (
            not 1 <= limit <= 200
            or not 0 <= offset <= 100_000
            or (hours is not None and not 0 <= hours < 1e6)
        ):
            return invalid("query", "limit is 1..200, offset 0..100000, older_than_hours >= 0", 400)
        flags = {}
        for name in ("open", "needs_attention"):
            word = query.get(name, "false").lower()
            if word not in ("true", "false", "1", "0"):
                return invalid(name, "true or false", 400)
            flags[name] = word in ("true", "1")
        criteria = index_module.Criteria(
            # A library's token sees its own requests only, whatever it asks for.
            borrower=client.partner or query.get("borrower") or None,
            request_id=query.get("request_id") or None,
            patron=query.get("patron") or None,
            lender=query.get("lender") or None,
            title=query.get("title") or None,
            states=query.getall("state", []),
            older_than=timedelta(hours=hours) if hours is not None else None,
            open_only=flags["open"],
            needs_attention=flags["needs_attention"],
            limit=offset + limit + 1,
        )
        now = datetime.now(UTC)
        rows = await self._read_index(lambda index: index.find(criteria, now, self.stuck))
        page = rows[offset : offset + limit]
        more = len(rows) > offset + limit
        return answer(
            views.RequestPage(
                items=[views.summary(r, client.partner is None) for r in page],
                offset=offset,
                limit=limit,
                next_offset=offset + limit if more else None,
            )
        )

    async def read(self, request: web.Request) -> web.Response:
        client = self._client(request, "read")
        if isinstance(client, web.Response):
            return client
        if client.partner is None:
            return problem(
                404, "staff tokens read requests by /transactions/{transaction_id}", "not_found"
            )
        txn = transaction_id(client.partner, request.match_info["request_id"])
        found = await self._view(txn)
        if found is None:
            return problem(404, "no such request", "not_found")
        return answer(found)

    async def read_transaction(self, request: web.Request) -> web.Response:
        client = self._client(request, "read")
        if isinstance(client, web.Response):
            return client
        found = await self._view(request.match_info["transaction_id"])
        if found is None or (client.partner is not None and found.borrower != client.partner):
            return problem(404, "no such request", "not_found")  # another's is not told apart
        return answer(found)

    async def act(self, request: web.Request) -> web.Response:
        client = self._client(request, "act")
        if isinstance(client, web.Response):
            return client
        action = request.match_info["action"]
        if action not in ("cancel", "renew", "received", "returned"):
            return problem(
                404, f"no action {action!r}: cancel, renew, received or returned", "not_found"
            )
        borrower = self._borrower(client)
        if isinstance(borrower, web.Response):
            return borrower
        request_id = request.match_info["request_id"]
        found = await self._view(transaction_id(borrower, request_id))
        if found is None:
            return problem(404, "no such request", "not_found")
        if action == "renew" and self.renews and found.lender and not self.renews(found.lender):
            return problem(409, f"the lender {found.lender}'s protocol has no renewal", "state")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            given = json.loads(body) if body.strip() else {}
        except ValueError as error:
            return invalid("(body)", f"not JSON: {str(error)[:80]}")
        if not isinstance(given, dict):
            return invalid("(body)", "a JSON object is expected")
        call = {**given, "action": action, "request_id": request_id}
        return await self._take(borrower, json.dumps(call).encode())

    # -- staff -----------------------------------------------------------------------------------

    async def _staff_body(
        self, request: web.Request, model: type[BaseModel], required: bool
    ) -> Any:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            given = json.loads(body) if body.strip() or required else {}
            return model.model_validate(given)
        except ValueError as error:
            if isinstance(error, ValidationError):
                errors = [
                    {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
                    for e in error.errors(include_url=False, include_input=False)
                ]
                detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
                return problem(422, detail, "invalid", errors)
            return invalid("(body)", f"not JSON: {str(error)[:80]}")

    async def _staff(self, request: web.Request, scope: str) -> Client | web.Response:
        client = self._client(request, scope)
        if isinstance(client, web.Response):
            return client
        if client.partner is not None:
            return problem(403, "staff actions need a staff token", "forbidden")
        return client

    def _outcome(self, code: int, detail: str) -> web.Response:
        if code == 0:
            return answer(views.Outcome(ok=True, detail=detail))
        return problem(409 if code == 2 else 503, detail, "refused" if code == 2 else "unavailable")

    async def redeliver(self, request: web.Request) -> web.Response:
        client = await self._staff(request, "redeliver")
        if isinstance(client, web.Response):
            return client
        given = await self._staff_body(request, views.Redeliver, False)
        if isinstance(given, web.Response):
            return given
        txn = request.match_info["transaction_id"]
        if await self._view(txn) is None:
            return problem(404, "no such request", "not_found")
        assert self.staff["redeliver"] is not None
        return self._outcome(*await self.staff["redeliver"](txn, given.partner, client.name))

    async def route(self, request: web.Request) -> web.Response:
        client = await self._staff(request, "reroute")
        if isinstance(client, web.Response):
            return client
        given = await self._staff_body(request, views.Route, True)
        if isinstance(given, web.Response):
            return given
        if given.action in ("lender", "skip") and not given.lender:
            return invalid("lender", f"a lender is needed to {given.action}")
        txn = request.match_info["transaction_id"]
        if await self._view(txn) is None:
            return problem(404, "no such request", "not_found")
        assert self.staff["route"] is not None
        return self._outcome(
            *await self.staff["route"](txn, given.action, given.lender, client.name)
        )

    async def manage(self, request: web.Request) -> web.Response:
        client = await self._staff(request, "manage")
        if isinstance(client, web.Response):
            return client
        given = await self._staff_body(request, views.StaffAct, True)
        if isinstance(given, web.Response):
            return given
        if given.action == "message" and given.to is None:
            return invalid("to", "a message goes to the borrower or the lender")
        txn = request.match_info["transaction_id"]
        if await self._view(txn) is None:
            return problem(404, "no such request", "not_found")
        assert self.staff["manage"] is not None
        return self._outcome(
            *await self.staff["manage"](txn, given.action, given.text, given.to, client.name)
        )

    async def replay(self, request: web.Request) -> web.Response:
        client = await self._staff(request, "replay")
        if isinstance(client, web.Response):
            return client
        given = await self._staff_body(request, views.Replay, True)
        if isinstance(given, web.Response):
            return given
        assert self.staff["replay"] is not None
        code, detail = await self.staff["replay"](given.ref, given.trust_sender, client.name)
        if code == 1:
            return problem(404, detail, "not_found")
        return self._outcome(code, detail)

    # -- webhooks (docs/api.md) ------------------------------------------------------------------

    async def _with_hooks(self, work: Callable[[webhook_store.Store], T]) -> T:
        def run() -> T:
            if self.hooks is None:
                assert self.webhooks_path is not None
                self.hooks = webhook_store.Store(self.webhooks_path)
            return work(self.hooks)

        return await asyncio.get_running_loop().run_in_executor(self.hooks_io, run)

    def _library(self, request: web.Request, staff: str | None = None) -> Client | web.Response:
        """Webhooks are a library's: a token with `read` for its own requests. Staff see
        every library's with `read` and send again with `redeliver` (`staff`: the scope a
        staff token needs here; None: a library's call only, as the secret is its)."""
        owner = request[CLIENT].partner
        client = self._client(request, "read" if owner is not None or staff is None else staff)
        if isinstance(client, web.Response):
            return client
        if client.partner is None and staff is None:
            return problem(403, "webhooks are made by a library: use its token", "forbidden")
        if self.webhooks_path is None:
            return problem(404, "this hub has no webhooks", "not_found")
        return client

    async def _subscription(
        self, request: web.Request, staff: str | None = None
    ) -> tuple[Client, webhook_store.Subscription] | web.Response:
        client = self._library(request, staff)
        if isinstance(client, web.Response):
            return client
        ident = request.match_info["subscription_id"]
        found = await self._with_hooks(lambda store: store.subscription(client.partner, ident))
        if found is None:  # another library's is not told apart from none
            return problem(404, "no such webhook", "not_found")
        return client, found

    async def subscribe(self, request: web.Request) -> web.Response:
        client = self._library(request)
        if isinstance(client, web.Response):
            return client
        given = await self._staff_body(request, views.WebhookCreate, True)
        if isinstance(given, web.Response):
            return given
        try:
            # Where the follower starts if this is the only subscription (asked every time:
            # the last one may go while this one is made).
            starts = await self.event_ends() if self.event_ends else {}
        except Exception as error:  # the broker is away: nothing is stored, try again
            log.warning("api.webhook_unavailable", error=f"{type(error).__name__}: {error}")
            starts = {}
        if not starts:
            return problem(503, "the hub cannot reach its broker now; try again", "unavailable")
        partner, url, states = client.partner or "", str(given.url), list(given.states)
        now = datetime.now(UTC)
        sub, secret = await self._with_hooks(
            lambda store: store.add(partner, url, states, client.name, now, starts)
        )
        log.info("api.webhook_added", partner=partner, subscription=sub.id, by=client.name)
        shown = views.WebhookCreated(**views.webhook(sub).model_dump(), secret=secret)
        response = answer(shown, 201)
        response.headers["Location"] = f"/api/v1/webhooks/{sub.id}"
        response.headers["Cache-Control"] = "no-store"  # the secret is in it
        return response

    async def subscriptions(self, request: web.Request) -> web.Response:
        client = self._library(request, staff="read")
        if isinstance(client, web.Response):
            return client
        found = await self._with_hooks(lambda store: store.subscriptions(client.partner))
        return answer(views.WebhookList(items=[views.webhook(s) for s in found]))

    async def unsubscribe(self, request: web.Request) -> web.Response:
        found = await self._subscription(request)
        if isinstance(found, web.Response):
            return found
        client, sub = found
        await self._with_hooks(lambda store: store.remove(client.partner, sub.id))
        log.info("api.webhook_removed", partner=client.partner, subscription=sub.id)
        return web.Response(status=204)

    async def webhook_deliveries(self, request: web.Request) -> web.Response:
        found = await self._subscription(request, staff="read")
        if isinstance(found, web.Response):
            return found
        _, sub = found
        try:
            limit = int(request.query.get("limit", "50"))
            offset = int(request.query.get("offset", "0"))
        except ValueError as error:
            return invalid("query", str(error), 400)
        status = request.query.get("status") or None
        if not 1 <= limit <= 200 or not 0 <= offset <= 100_000:
            return invalid("query", "limit is 1..200, offset 0..100000", 400)
        if status not in (None, "waiting", "parked", "delivered"):
            return invalid("status", "waiting, parked or delivered", 400)
        rows = await self._with_hooks(
            lambda store: store.deliveries(sub.id, status, limit + 1, offset)
        )
        return answer(
            views.WebhookDeliveries(
                items=[views.webhook_delivery(row) for row in rows[:limit]],
                offset=offset,
                limit=limit,
                next_offset=offset + limit if len(rows) > limit else None,
            )
        )

    async def webhook_redeliver(self, request: web.Request) -> web.Response:
        found = await self._subscription(request, staff="redeliver")
        if isinstance(found, web.Response):
            return found
        client, sub = found
        given = await self._staff_body(request, views.WebhookRedeliver, False)
        if isinstance(given, web.Response):
            return given
        ident = given.delivery_id
        count = await self._with_hooks(lambda store: store.redeliver(sub.id, ident, time.time()))
        if ident is not None and count == 0:
            return problem(404, "no such delivery of this webhook", "not_found")
        log.info(
            "api.webhook_redeliver",
            partner=sub.partner,
            by=client.name,
            subscription=sub.id,
            count=count,
        )
        return answer(views.Outcome(ok=True, detail=f"{count} deliveries to be sent again now"))
