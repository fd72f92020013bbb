"""The OpenURL intake on the hub's HTTP port: links from a borrower's discovery system,
the request form, the confirmation and the status page.

- `GET|POST /openurl/{BORROWER}`: a link of that borrower; `GET|POST /openurl?rfr_id=...`:
  the borrower is the one whose `referrers` option matches the link's rfr_id (or 0.1 sid).
- The borrower is authenticated by its `inbound_auth` (Authorization header) or by the token
  its links carry (`rshub_token`, option `link_token_env`).
- The patron comes from a signed `req_id`/`req.email` (`req_sig`, `req_exp`; option
  `patron_secret_env`) or from the form; an unsigned `req_id` is ignored.
- A link with a title or identifier and a patron becomes a request at once; otherwise the
  patron gets the form prefilled with what came. The form is bound to a session cookie by
  an HMAC (CSRF); submitting it makes the request and shows its number and status link.
- `Accept: application/json` gets JSON instead of pages.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from connectors.core.contract import (
    Answer,
    Fault,
    Intake,
    Limits,
    Refusal,
    WebRequest,
    WebResponse,
    WebRoute,
)
from connectors.core.directory import Partner
from connectors.core.model import transaction_id
from connectors.core.secret import value_of
from connectors.openurl import pages, signing
from connectors.openurl.citation import FIELDS, Citation, from_form
from connectors.openurl.codec import PROTOCOL, STATUS, OpenUrlCodec, Parsed, parse, to_message
from connectors.openurl.kev import KevError, clean_text, context, from_query, pairs
from connectors.openurl.keys import HUB_PREFIX, LINK_TOKEN_KEY, SIGNATURE_KEYS
from connectors.openurl.options import OpenUrlOptions, OpenUrlSettings
from connectors.openurl.strings import language_of, state_words, words

COOKIE = "rshub_openurl"
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
# Form fields the hub adds (bound by the CSRF token) besides the citation.
HIDDEN = ("number", "patron_signed", "expires", "kev", "csrf")
# A request field lenders need (`Directory.lacking`) -> (the form field that gives it, the
# words that ask for it). A field not named here is asked for as the item's title.
ASKED: dict[str, tuple[str, str]] = {"bibliographic.title": ("title", "need_title")}


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), "")


def _wants_json(request: WebRequest) -> bool:
    return "application/json" in _header(request.headers, "Accept").lower()


def _cookie(request: WebRequest) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(_header(request.headers, "Cookie"))
    except Exception:  # a malformed cookie header is no session
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel and len(morsel.value) < 100 else ""


def _strip(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A link without what must never be stored or trusted: the hub's own keys (a link
    cannot set them), the borrower's token and the patron signature, the requester entity
    (unsigned patron data)."""
    return [
        (k, v)
        for k, v in items
        if not k.startswith(HUB_PREFIX)
        and k != LINK_TOKEN_KEY
        and k not in SIGNATURE_KEYS
        and not k.startswith(("req.", "req_"))
    ]


def _is_form(body: bytes) -> bool:
    return body.startswith(b"csrf=") or b"&csrf=" in body


def _first(items: list[tuple[str, str]], key: str) -> str:
    return next((v for k, v in items if k == key), "")


class OpenUrlWeb:
    def __init__(self, intake: Intake, limits: Limits, settings: OpenUrlSettings) -> None:
        self.intake, self.limits, self.settings = intake, limits, settings
        self.codec = OpenUrlCodec(settings.max_pairs)

    def routes(self) -> list[WebRoute]:
        return [
            WebRoute("GET", "/openurl", self.consortium),
            WebRoute("POST", "/openurl", self.consortium),
            WebRoute("GET", "/openurl/{symbol}", self.borrower),
            WebRoute("POST", "/openurl/{symbol}", self.borrower),
            WebRoute("GET", "/openurl/{symbol}/status/{number}", self.status),
        ]

    # --- answers ---
    def _answer(
        self,
        request: WebRequest,
        status: int,
        language: str,
        title_key: str,
        html_body: str,
        data: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> WebResponse:
        if _wants_json(request):
            return WebResponse(status, json.dumps(data).encode(), JSON, dict(headers or {}))
        text = words(language)
        body = pages.page(language, text.get(title_key, title_key), html_body)
        return WebResponse(status, body, HTML, dict(headers or {}))

    async def _refused(
        self, request: WebRequest, refusal: Refusal, partner: str | None, language: str = "en"
    ) -> WebResponse:
        await self.intake.refuse(refusal, partner, PROTOCOL)
        status = refusal.answer.status
        key = {401: "unauthorised", 404: "not_found", 503: "unavailable"}.get(status)
        text = words(language)
        shown = text[key] if key else refusal.reason
        data = {"status": "refused", "detail": refusal.reason}
        return self._answer(request, status, language, "refused_title", pages.message(shown), data)

    async def _stale(self, request: WebRequest, symbol: str, language: str) -> WebResponse:
        """A form posted without a valid token for this browser, from anyone: refused and
        dead-lettered; the page sends the patron back to the catalogue's link."""
        detail = "form token missing, expired or not bound to this browser"
        refusal = self._refusal(Fault.UNAUTHENTICATED, detail, "authenticate")
        await self.intake.refuse(refusal, symbol, PROTOCOL)
        data = {"status": "refused", "detail": detail}
        shown = pages.message(words(language)["expired_link"])
        headers = {"Cache-Control": "no-store"}
        return self._answer(request, 403, language, "refused_title", shown, data, headers)

    def _refusal(self, fault: Fault, detail: str, stage: str = "parse") -> Refusal:
        return Refusal(detail, self.codec.fault(fault, detail), stage)

    def _url(self, path: str) -> str:
        return self.settings.public_url.rstrip("/") + path

    # --- reading the link ---
    def _items(self, request: WebRequest) -> list[tuple[str, str]]:
        """The link's pairs: the raw query where the hub gives it, else its parsed pairs,
        then a POST body's; bounded in size and count."""
        size = sum(len(k) + len(v) + 2 for k, v in request.query) + len(request.body)
        if size > self.settings.max_query_bytes:
            raise KevError(
                f"OpenURL of {size} bytes exceeds the limit of {self.settings.max_query_bytes}",
                too_large=True,
            )
        # The undecoded query (links arrive in Latin-1 too); the decoded pairs only where
        # the raw form is not at hand.
        raw = request.raw_query
        items = pairs(raw, self.settings.max_pairs) if raw else from_query(request.query)
        if request.method == "POST" and request.body:
            if _is_form(request.body):
                # Our own form: plain form decoding (empty fields are fields, not the rest
                # of a value cut by an unencoded `&`, as in a link).
                try:
                    text = request.body.decode("utf-8")
                    items += parse_qsl(
                        text, keep_blank_values=True, max_num_fields=self.settings.max_pairs
                    )
                except (UnicodeDecodeError, ValueError) as error:
                    raise KevError(f"form not readable: {error}") from None
            else:
                items += pairs(request.body, self.settings.max_pairs)
        if len(items) > self.settings.max_pairs:
            raise KevError(f"more than {self.settings.max_pairs} key/value pairs", too_large=True)
        return items

    def _partner(self, symbol: str) -> tuple[Partner, OpenUrlOptions] | None:
        partner = self.intake.directory.partner(symbol)
        if partner is None or partner.protocol != PROTOCOL:
            return None
        try:
            return partner, OpenUrlOptions.model_validate(partner.options)
        except ValueError:
            return None

    def _authenticated(
        self,
        request: WebRequest,
        partner: Partner,
        options: OpenUrlOptions,
        items: list[tuple[str, str]],
    ) -> bool:
        if partner.inbound_auth is not None and self.intake.authenticated(
            partner.symbol, _header(request.headers, "Authorization") or None
        ):
            return True
        token = _first(items, LINK_TOKEN_KEY)
        expected = value_of(options.link_token_env)
        if not token or not expected:
            return False
        return hmac.compare_digest(token.encode(), expected.encode())

    def _patron(self, items: list[tuple[str, str]], options: OpenUrlOptions) -> tuple[str, str]:
        """(patron id, e-mail) proved by the borrower's signature, else empty."""
        secret = value_of(options.patron_secret_env)
        signature = _first(items, "req_sig")
        if not secret or not signature:
            return "", ""
        req_id, email, expires = (
            _first(items, "req_id"),
            _first(items, "req.email"),
            _first(items, "req_exp"),
        )
        try:
            left = int(expires) - time.time()
        except ValueError:
            return "", ""
        if not 0 < left <= self.settings.signature_max_age_s:
            return "", ""
        if not signing.patron_ok(secret, req_id, email, expires, signature):
            return "", ""
        patron = clean_text(req_id.removeprefix("mailto:"))[:256]
        return patron, clean_text(email.removeprefix("mailto:"))[:254]

    # --- handlers ---
    async def consortium(self, request: WebRequest) -> WebResponse:
        try:
            items = self._items(request)
        except KevError as error:
            return await self._refused(request, self._kev_refusal(error), None)
        referrer = context(items).referrer
        for partner in self.intake.directory.partners:
            if partner.protocol != PROTOCOL or not referrer:
                continue
            found = self._partner(partner.symbol)
            if found and any(
                referrer == r or referrer.startswith(r) for r in found[1].referrers if r
            ):
                return await self._link(request, found[0], found[1], items)
        detail = f"no borrower of this consortium is known by the referrer {referrer[:80]!r}"
        return await self._refused(
            request, self._refusal(Fault.UNKNOWN_PARTNER, detail, "authenticate"), None
        )

    async def borrower(self, request: WebRequest) -> WebResponse:
        symbol = request.match.get("symbol", "")
        found = self._partner(symbol)
        if found is None:
            detail = f"no OpenURL borrower {symbol[:80]!r} in this consortium"
            return await self._refused(
                request, self._refusal(Fault.UNKNOWN_PARTNER, detail, "authenticate"), None
            )
        partner, options = found
        language = language_of(options.language)
        try:
            items = self._items(request)
        except KevError as error:
            return await self._refused(request, self._kev_refusal(error), symbol, language)
        if request.method == "POST" and any(k == "csrf" for k, _ in items):
            return await self._submit(request, partner, options, items)
        return await self._link(request, partner, options, items)

    def _kev_refusal(self, error: KevError) -> Refusal:
        return self._refusal(Fault.TOO_LARGE if error.too_large else Fault.SYNTAX, str(error))

    async def _link(
        self,
        request: WebRequest,
        partner: Partner,
        options: OpenUrlOptions,
        items: list[tuple[str, str]],
    ) -> WebResponse:
        language = language_of(options.language)
        if not self._authenticated(request, partner, options, items):
            detail = f"credentials for {partner.symbol} not accepted"
            return await self._refused(
                request,
                self._refusal(Fault.UNAUTHENTICATED, detail, "authenticate"),
                partner.symbol,
                language,
            )
        patron, email = self._patron(items, options)
        kept = _strip(items)
        kev = urlencode(kept)
        parsed = parse(kev.encode(), self.settings.max_pairs)
        cite = parsed.citation
        # A request no lender of its rota can take is not promised: the patron is asked.
        lacking = self._lacking(partner.symbol, kept) if cite.complete else []
        if cite.complete and not lacking and patron and not options.always_confirm:
            day = datetime.now(UTC).date().isoformat()
            number = signing.request_number_for(partner.symbol, patron, kev, day)
            hub = {"request_id": number, "patron": patron, "email": email}
            return await self._create(request, partner, options, kept, hub)
        service = cite.kind()[0].value.lower()
        return self._form(
            request,
            partner,
            options,
            cite,
            service,
            kev,
            signing.new_request_number(),
            patron,
            email=email,
            session=_cookie(request),
            errors=_asking(words(language), lacking),
            lacking=lacking,
        )

    def _lacking(self, symbol: str, items: list[tuple[str, str]]) -> list[str]:
        """What no lender the request would go to can do without (`Directory.lacking`)."""
        with_number = [*items, (HUB_PREFIX + "request_id", "OU-CHECK")]
        try:
            parsed = parse(urlencode(with_number).encode(), self.settings.max_pairs)
            message = to_message(parsed, symbol)
        except (KevError, ValueError):
            return []  # the intake refuses it with the reason when it is sent
        return self.intake.directory.lacking(message)

    def _form(
        self,
        request: WebRequest,
        partner: Partner,
        options: OpenUrlOptions,
        cite: Citation,
        service: str,
        kev: str,
        number: str,
        patron: str,
        *,
        email: str = "",
        session: str = "",
        values: Mapping[str, str] | None = None,
        errors: list[str] | None = None,
        status: int = 200,
        lacking: list[str] | None = None,
    ) -> WebResponse:
        language = language_of(options.language)
        session = session or signing.new_session()
        expires = str(int(time.time()) + self.settings.form_ttl_s)
        signed = f"{patron}\n{email}" if patron else ""
        token = signing.form_token(session, partner.symbol, number, signed, expires, kev)
        values = values or {}
        state = pages.FormState(
            action=self._url(f"/openurl/{partner.symbol}"),
            citation=cite,
            service=service,
            hidden={
                "number": number,
                "patron_signed": signed,
                "expires": expires,
                "kev": kev,
                "csrf": token,
            },
            need_before=values.get("need_before", ""),
            pickup=values.get("pickup", ""),
            note=values.get("note", ""),
            patron_known=patron,
            patron_id=values.get("patron_id", ""),
            patron_email=values.get("patron_email", ""),
            patron_editable=options.patron_from_form,
            pickup_locations=options.pickup_locations,
            errors=errors or [],
        )
        cookie = f"{COOKIE}={session}; Path=/openurl; HttpOnly; SameSite=Lax"
        if self.settings.cookie_secure:
            cookie += "; Secure"
        missing = [] if cite.complete else ["title_or_identifier"]
        missing += [ASKED.get(field, ("title", ""))[0] for field in lacking or []]
        if not patron:
            missing.append("patron")
        data = {
            "status": "incomplete",
            "missing": missing,
            "errors": errors or [],
            "citation": cite.as_dict(),
            "form": {**state.hidden},
        }
        status = status if status != 200 or not _wants_json(request) else 422
        return self._answer(
            request,
            status,
            language,
            "form_title",
            pages.form(words(language), state),
            data,
            {"Set-Cookie": cookie, "Cache-Control": "no-store"},
        )

    async def _submit(
        self,
        request: WebRequest,
        partner: Partner,
        options: OpenUrlOptions,
        items: list[tuple[str, str]],
    ) -> WebResponse:
        language = language_of(options.language)
        text = words(language)
        values = {k: v for k, v in reversed(items)}  # the first value of each key
        session = _cookie(request)
        number = values.get("number", "")
        # Browsers send a field's line break as CRLF (HTML's form encoding), whatever the
        # page held: the signed patron's "id\nemail" comes back as "id\r\nemail".
        signed = values.get("patron_signed", "").replace("\r\n", "\n")
        expires = values.get("expires", "")
        kev = values.get("kev", "")
        cite = from_form(values)
        service = (
            values.get("service", "")
            if values.get("service") in ("loan", "copy")
            else cite.kind()[0].value.lower()
        )
        fresh = (
            bool(session)
            # "²".isdigit() is true and int("²") fails; int() of 4,300 digits raises
            and expires.isascii()
            and expires.isdigit()
            and len(expires) <= 12
            and int(expires) > time.time()
            and signing.form_ok(
                values.get("csrf", ""), session, partner.symbol, number, signed, expires, kev
            )
        )
        if not fresh and not self._authenticated(request, partner, options, items):
            # The form token is the only proof a posted form carries that the borrower's
            # authenticated link opened it: a stale or forged one gets no fresh form (a new
            # token here would let anyone order on the borrower's account).
            return await self._stale(request, partner.symbol, language)
        if not fresh:
            # Not this browser's form (CSRF) or too old, but the borrower itself posts it:
            # nothing is created; it gets the form again, without the link's patron.
            return self._form(
                request,
                partner,
                options,
                cite,
                service,
                kev,
                signing.new_request_number(),
                "",
                session=session,
                values=values,
                errors=[text["expired"]],
                status=403,
            )
        patron, _, email = signed.partition("\n")
        if not patron and options.patron_from_form:
            patron = clean_text(values.get("patron_id", ""))[:256]
            email = clean_text(values.get("patron_email", ""))[:254]
        errors = [f"{text['bad_identifier']} {reason}" for reason in cite.rejected]
        if not cite.complete:
            errors.append(text["need_item"])
        service_pair = (HUB_PREFIX + "service", service)
        lacking = (
            self._lacking(partner.symbol, [*_citation_pairs(cite), service_pair])
            if cite.complete
            else []
        )
        errors += _asking(text, lacking)
        if not patron:
            errors.append(text["need_patron"])
        need_before = values.get("need_before", "").strip()
        if need_before:
            try:
                if datetime.fromisoformat(need_before).date() < datetime.now(UTC).date():
                    raise ValueError(need_before)
                need_before = datetime.fromisoformat(need_before).date().isoformat()
            except ValueError:
                errors.append(text["bad_date"])
        if errors:
            return self._form(
                request,
                partner,
                options,
                cite,
                service,
                kev,
                number,
                signed.partition("\n")[0],
                email=signed.partition("\n")[2],
                session=session,
                values=values,
                errors=errors,
                status=400,
                lacking=lacking,
            )
        original = [
            (k, v)
            for k, v in pairs(kev.encode(), self.settings.max_pairs)
            if k in ("rfr_id", "sid")
        ]
        kept = original + _citation_pairs(cite)
        hub = {
            "request_id": number,
            "patron": patron,
            "email": email,
            "service": service,
            "need_before": need_before,
            "pickup": values.get("pickup", "")[:500],
            "note": values.get("note", "")[:4000],
        }
        return await self._create(request, partner, options, kept, hub)

    async def _create(
        self,
        request: WebRequest,
        partner: Partner,
        options: OpenUrlOptions,
        kept: list[tuple[str, str]],
        hub: dict[str, str],
    ) -> WebResponse:
        language = language_of(options.language)
        body = urlencode(kept + [(HUB_PREFIX + k, v) for k, v in hub.items() if v]).encode()
        if not self.intake.broker_up:
            return await self._refused(
                request, self.intake.unavailable(self.codec), partner.symbol, language
            )
        try:
            answer = await self.intake.take(
                self.codec, partner.symbol, body, "application/x-www-form-urlencoded"
            )
        except Refusal as refusal:
            return await self._refused(request, refusal, partner.symbol, language)
        return self._created(request, partner, language, hub["request_id"], answer)

    def _created(
        self, request: WebRequest, partner: Partner, language: str, number: str, answer: Answer
    ) -> WebResponse:
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = {}
        state = data.get("state") if isinstance(data, dict) else None
        if answer.status >= 400:
            detail = str(data.get("detail", "")) if isinstance(data, dict) else ""
            body = pages.message(words(language)["refused_title"], detail)
            return self._answer(
                request,
                answer.status,
                language,
                "refused_title",
                body,
                {"status": "refused", "detail": detail},
            )
        key = signing.status_key(partner.symbol, number)
        link = self._url(f"/openurl/{partner.symbol}/status/{number}?key={key}")
        state_text = state_words(state or "New", language)
        result = {
            "status": "accepted",
            "request_id": number,
            "state": state,
            "state_text": state_text,
            "status_url": link,
        }
        body = pages.confirmation(words(language), number, link, state_text)
        return self._answer(
            request,
            201 if _wants_json(request) else 200,
            language,
            "done_title",
            body,
            result,
            {"Cache-Control": "no-store"},
        )

    async def status(self, request: WebRequest) -> WebResponse:
        symbol, number = request.match.get("symbol", ""), request.match.get("number", "")
        found = self._partner(symbol)
        language = language_of(found[1].language) if found else "en"
        key = next((v for k, v in request.query if k == "key"), "")
        if found is None or not signing.status_ok(symbol, number, key):
            detail = "no such request"
            return self._answer(
                request,
                404,
                language,
                "refused_title",
                pages.message(words(language)["not_found"]),
                {"status": "unknown", "detail": detail},
            )
        # This worker's view of the transaction. A request just made may not be in it yet
        # (or is another worker's): the page says it cannot show the state, it is not 404.
        state = await self.intake.status(transaction_id(symbol, number))
        text = state_words(state, language) if state else words(language)["status_unknown"]
        data = {"request_id": number, "state": state, "state_text": text}
        return self._answer(
            request,
            200,
            language,
            "status_title",
            pages.status(words(language), number, text),
            data,
            {"Cache-Control": "no-store"},
        )


def _asking(text: dict[str, str], lacking: list[str]) -> list[str]:
    """The form's words asking for each lacking field (each once)."""
    asked = [text[ASKED.get(field, ("title", "need_title"))[1]] for field in lacking]
    return list(dict.fromkeys(asked))


def _citation_pairs(cite: Citation) -> list[tuple[str, str]]:
    """A citation someone typed, as 1.0 keys for the codec."""
    names = {
        "title": "rft.title",
        "atitle": "rft.atitle",
        "author": "rft.au",
        "publisher": "rft.pub",
    }
    items = [("rft.genre", cite.genre)] if cite.genre else []
    for name in FIELDS:
        value = str(getattr(cite, name))
        if not value:
            continue
        if name in ("doi", "pmid", "oclc"):
            scheme = {"doi": "info:doi/", "pmid": "info:pmid/", "oclc": "info:oclcnum/"}[name]
            items.append(("rft_id", scheme + value))
        else:
            items.append((names.get(name, f"rft.{name}"), value))
    return items


def routes(intake: Intake, limits: Limits, settings: OpenUrlSettings) -> list[WebRoute]:
    return OpenUrlWeb(intake, limits, settings).routes()


__all__ = ["STATUS", "OpenUrlWeb", "Parsed", "routes"]
