"""The console's pages: templates (a table of `string.Template`s) and the functions that fill
them. Everything put in a page is escaped (hub/ops/console/html.py); the only script is the
static console.js (the Content-Security-Policy forbids inline script)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from string import Template
from typing import Any

from connectors.core.directory import Partner
from hub.domain.lifecycle import Hub, State, accepts
from hub.ops.console import pretty
from hub.ops.console.html import Html, fill, h, join, link, table, tag, url, void
from hub.ops.console.html import row as table_row
from hub.ops.console.sessions import Session
from hub.ops.console.views import PartnerFigures
from hub.ops.routing import describe

TEMPLATES = {
    "layout": Template(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · rshub console</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
<body data-page="$page" data-txn="$txn">
<header>
<strong class="brand">rshub</strong> <span class="consortium">$consortium</span>
<nav>$nav</nav>
<span class="who">$who</span>
$logout
</header>
$notes
$flash
<main>
<h1>$title</h1>
$content
</main>
<footer><span id="live-status">$live</span></footer>
</body>
</html>
"""
    ),
    "login": Template(
        """<form method="post" action="/login" class="login">
<input type="hidden" name="csrf" value="$csrf">
<input type="hidden" name="next" value="$next">
<p><label for="name">Name</label>
<input id="name" name="name" autocomplete="username" required autofocus></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit" id="login">Log in</button></p>
$message
</form>
"""
    ),
    "search": Template(
        """<form method="get" action="/" class="search" id="search">
<label for="q-title">Title or author</label> <input id="q-title" name="title" value="$title">
<label for="q-borrower">Borrower</label>
<input id="q-borrower" name="borrower" value="$borrower" size="8">
<label for="q-request">Request id</label>
<input id="q-request" name="request_id" value="$request_id" size="12">
<label for="q-patron">Patron</label> <input id="q-patron" name="patron" value="$patron" size="10">
<label for="q-lender">Lender</label> <input id="q-lender" name="lender" value="$lender" size="8">
<label for="q-state">State</label> <select id="q-state" name="state">$states</select>
<label for="q-from">Created from</label>
<input id="q-from" name="from" type="date" value="$created_from">
<label for="q-to">to</label> <input id="q-to" name="to" type="date" value="$created_to">
<input type="hidden" name="sort" value="$sort"><input type="hidden" name="dir" value="$dir">
<label><input type="checkbox" name="open" value="1"$open> open only</label>
<label><input type="checkbox" name="attention" value="1"$attention> needs attention</label>
<button type="submit" id="find">Find</button>
</form>
"""
    ),
    "action": Template(
        """<form method="post" action="$action" class="action">
<input type="hidden" name="csrf" value="$csrf">
$fields<button type="submit"$button_id>$label</button>
</form>"""
    ),
}

NAV = (
    ("/", "Requests"),
    ("/partners", "Partners"),
    ("/deadletters", "Dead letters"),
    ("/stats", "Statistics"),
)


def layout(
    title: str,
    content: Html,
    session: Session | None,
    page: str,
    *,
    consortium: str = "",
    notes: Iterable[str] = (),
    txn: str = "",
) -> Html:
    if session is not None:
        nav = join(link(href, text) for href, text in NAV)
        who = f"{session.user} ({session.role})"
        logout = action("/logout", session, "Log out", button_id="logout")
        flash = join(
            tag("p", message, class_="flash" if done else "flash refused")
            for message, done in session.flash
        )
        session.flash.clear()
        live = "live: connecting"
    else:
        nav, who, logout, flash, live = Html(""), "", Html(""), Html(""), ""
    shown_notes = join(tag("p", note, class_="note") for note in notes)
    return fill_template(
        "layout",
        title=title,
        page=page,
        txn=txn,
        consortium=consortium,
        nav=nav,
        who=who,
        logout=logout,
        notes=shown_notes,
        flash=flash,
        content=content,
        live=live,
    )


def fill_template(name: str, **values: Any) -> Html:
    return fill(TEMPLATES[name], **values)


def action(
    path: str,
    session: Session,
    label: str,
    fields: dict[str, str] | None = None,
    button_id: str | None = None,
    extra: Html | None = None,
) -> Html:
    """A POST form carrying the session's CSRF token."""
    hidden = join(void("input", type="hidden", name=k, value=v) for k, v in (fields or {}).items())
    return fill_template(
        "action",
        action=path,
        csrf=session.csrf,
        fields=Html(hidden + (extra or "")),
        label=label,
        button_id=Html(f' id="{h(button_id)}"') if button_id else Html(""),
    )


def login_form(csrf: str, next_path: str, message: str = "") -> Html:
    shown = tag("p", message, class_="error", id="login-error") if message else Html("")
    return fill_template("login", csrf=csrf, next=next_path, message=shown)


def age(since: str | None, now: datetime) -> str:
    if not since:
        return "-"
    seconds = (now - datetime.fromisoformat(since)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def when(value: str | None, zone: tzinfo) -> str:
    """A stored time (ISO, UTC) as people read it where the console is used: in its zone
    (RSHUB_CONSOLE_TIMEZONE), to the second, with the zone's abbreviation."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class Listing:
    """One page of a list: its rows, how many match in all, where the page starts and its
    size, and the order it is in."""

    rows: list[dict[str, Any]]
    total: int
    offset: int
    size: int
    sort: str
    descending: bool


# The list's columns: heading, and the order (a key of hub.ops.index.SORTS) it sorts by.
REQUEST_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("Request", "id"),
    ("State", "state"),
    ("Borrower", "borrower"),
    ("Request id", "request_id"),
    ("Patron", "patron"),
    ("Lender", "lender"),
    ("Created", "created"),
    ("Last progress", "progressed"),
    ("Title", "title"),
    ("Needs attention", None),
)


def _heading(label: str, sort: str | None, query: dict[str, str], listing: Listing) -> Html:
    if sort is None:
        return tag("th", label)
    current = listing.sort == sort
    # A click on the column sorted by turns the order round; on another, newest or Z first
    # for times, A first for names.
    descending = (not listing.descending) if current else sort in ("created", "progressed")
    target = url("/", **{**query, "sort": sort, "dir": "desc" if descending else "asc", "page": ""})
    arrow = (" ▼" if listing.descending else " ▲") if current else ""
    return tag(
        "th",
        link(target, label + arrow, id=f"sort-{sort}"),
        aria_sort=("descending" if listing.descending else "ascending") if current else None,
    )


def _pager(
    query: dict[str, str], listing: Listing, path: str = "/", things: str = "requests"
) -> Html:
    pages = max(1, -(-listing.total // listing.size))
    number = listing.offset // listing.size + 1
    first = listing.offset + 1 if listing.rows else 0
    last = listing.offset + len(listing.rows)
    parts: list[Html] = [
        tag(
            "span",
            f"{first} to {last} of {listing.total} {things} · page {number} of {pages}",
            id="paging",
        )
    ]
    if number > 1:
        before = url(path, **{**query, "page": str(number - 1)})
        parts.append(link(before, "← previous", id="page-prev"))
    if number < pages:
        after = url(path, **{**query, "page": str(number + 1)})
        parts.append(link(after, "next →", id="page-next"))
    return tag("p", join(parts, " "), class_="pager")


def requests_page(
    query: dict[str, str],
    counts: dict[str, int],
    states: list[str],
    listing: Listing,
    now: datetime,
    zone: tzinfo = UTC,
    errors: Iterable[str] = (),
) -> Html:
    chosen = query.get("state", "")
    options = join(
        tag("option", label, value=value, selected=value == chosen)
        for value, label in [("", "any"), *((s, s) for s in states)]
    )
    form = fill_template(
        "search",
        title=query.get("title", ""),
        borrower=query.get("borrower", ""),
        request_id=query.get("request_id", ""),
        patron=query.get("patron", ""),
        lender=query.get("lender", ""),
        states=options,
        created_from=query.get("from", ""),
        created_to=query.get("to", ""),
        sort=listing.sort,
        dir="desc" if listing.descending else "asc",
        open=Html(" checked") if query.get("open") else Html(""),
        attention=Html(" checked") if query.get("attention") else Html(""),
    )
    by_state = tag(
        "ul",
        join(
            tag("li", join([link(url("/", state=s, open="1"), s), f" {n}"]))
            for s, n in counts.items()
        )
        or tag("li", "no open requests"),
        class_="states",
        id="open-by-state",
    )
    rows = join(
        table_row(
            [
                link(f"/requests/{r['id']}", r["id"]),
                tag("span", r.get("state") or "?", class_="state"),
                r.get("borrower") or "?",
                r.get("borrower_request_id") or "",
                _patron(r),
                r.get("lender") or "-",
                tag(
                    "span", when(r.get("created"), zone), title=f"{age(r.get('created'), now)} ago"
                ),
                when(r.get("progressed"), zone),
                r.get("title") or "",
                tag("span", r.get("attention") or "", class_="attention"),
            ],
            data_txn=r["id"],
        )
        for r in listing.rows
    )
    shown = {k: v for k, v in query.items() if k != "page"}
    head = tag("tr", join(_heading(label, key, shown, listing) for label, key in REQUEST_COLUMNS))
    results = (
        join(
            [
                _pager(query, listing),
                tag("table", join([tag("thead", head), tag("tbody", rows)]), id="requests"),
            ]
        )
        if listing.rows
        else tag("p", f"No request matches ({listing.total} in all).", id="no-match")
    )
    problems = join(tag("p", e, class_="error") for e in errors)
    return join(
        [
            tag("h2", "Open requests by state"),
            by_state,
            tag("h2", "Find"),
            form,
            problems,
            results,
            tag("h2", "Live"),
            tag("ol", "", id="live-log"),
        ]
    )


KIND_LABELS = {
    "in": "message in",
    "out": "message out",
    "raw out": "bytes sent",
    "state": "state change",
    "refused": "refused",
    "deadletter": "dead letter",
    "routing": "routing",
    "delivery": "delivery",
    "decided": "engine",
    "staff": "staff",
    "holdings": "holdings",
}


def _raw_block(raw: dict[str, Any]) -> Html:
    data = pretty.raw_bytes(raw)
    shown_as, text = pretty.pretty(data, raw.get("content_type"))
    head = (
        f"raw {raw.get('direction') or ''} {raw.get('protocol') or ''} "
        f"({raw.get('content_type') or '?'}, {len(data)} bytes, {shown_as}) {raw.get('ref')}"
    )
    return tag("details", join([tag("summary", head), tag("pre", text, class_=f"raw {shown_as}")]))


def _body_block(body: Any) -> Html:
    if body is None:
        return Html("")
    return tag(
        "details",
        join([tag("summary", "record"), tag("pre", pretty.canonical(body), class_="record")]),
    )


def request_page(
    row: dict[str, Any],
    story: list[dict[str, Any]],
    routing: list[dict[str, Any]],
    attention: str | None,
    session: Session,
    now: datetime,
    staff: StaffChoices | None = None,
    zone: tzinfo = UTC,
) -> Html:
    txn = row["id"]
    facts = [
        ("State", tag("span", row.get("state") or "?", id="state")),
        ("Borrower", row.get("borrower") or "?"),
        ("Borrower's request id", row.get("borrower_request_id") or "?"),
        ("Patron", _patron(row) or "-"),
        ("Title", row.get("title") or "-"),
        ("Author", row.get("author") or "-"),
        ("Lenders asked", (row.get("lenders") or "").strip(",") or "-"),
        ("Created", f"{when(row.get('created'), zone)} ({age(row.get('created'), now)} ago)"),
        ("Last progress", when(row.get("progressed"), zone)),
        ("Deliveries waiting", f"{row.get('waiting') or 0} ({row.get('parked') or 0} parked)"),
        ("Needs attention", tag("span", attention or "no", class_="attention")),
    ]
    summary = tag("dl", join(join([tag("dt", k), tag("dd", v)]) for k, v in facts), id="facts")
    parts = [summary]
    if session.operator:
        parts.append(
            action(
                f"/requests/{txn}/redeliver",
                session,
                "Redeliver waiting steps now",
                button_id="redeliver",
            )
        )
        if staff is not None:
            parts.append(staff_actions(row, session, staff))
    parts.append(tag("h2", "Routing"))
    if routing:
        explained = "\n\n".join("\n".join(describe(d)) for d in routing)
        parts.append(tag("pre", explained, id="routing", class_="routing"))
    else:
        parts.append(tag("p", "No routing decision yet.", id="routing"))
    parts.append(tag("h2", "Timeline"))
    shown: set[str] = set()
    rows = []
    for entry in story:
        kind = str(entry.get("kind") or "")
        details = []
        raw = entry.get("raw")
        if raw and raw.get("ref") not in shown:
            shown.add(raw["ref"])  # a refused message's bytes once, not on each entry
            details.append(_raw_block(raw))
        if kind != "raw out":
            details.append(_body_block(entry.get("body")))
        rows.append(
            table_row(
                [
                    when(entry.get("at"), zone),
                    KIND_LABELS.get(kind, kind),
                    entry.get("summary"),
                    join(details),
                ],
                class_="kind-" + kind.replace(" ", "-"),
            )
        )
    head = tag("tr", join(tag("th", c) for c in ("At", "What", "Summary", "Messages")))
    parts.append(tag("table", join([tag("thead", head), tag("tbody", join(rows))]), id="timeline"))
    return join(parts)


@dataclass(frozen=True)
class StaffChoices:
    """What the request page offers an operator: the lenders staff may name, and the
    parties whose protocol takes a message from staff (side -> symbol)."""

    lenders: list[str]
    messageable: dict[str, str]


def _select(name: str, id_: str, options: Iterable[tuple[str, str]], chosen: str = "") -> Html:
    return tag(
        "select",
        join(
            tag("option", label, value=value, selected=value == chosen) for value, label in options
        ),
        name=name,
        id=id_,
    )


def _text(name: str, id_: str, placeholder: str, required: bool = True) -> Html:
    return void(
        "input",
        name=name,
        id=id_,
        placeholder=placeholder,
        maxlength="2000",
        size="40",
        required=required,
    )


def staff_actions(row: dict[str, Any], session: Session, staff: StaffChoices) -> Html:
    """The operator's forms for this request, those its state allows (the lifecycle table
    decides: the state machine would refuse the others, and says why if asked anyway)."""
    txn = row["id"]
    try:
        state = State(row.get("state") or "")
    except ValueError:
        state = State.NEW
    current = row.get("lender") or ""
    path = f"/requests/{txn}"
    forms: list[Html] = []
    if accepts(state, Hub.ROUTE_LENDER):
        others = [s for s in staff.lenders if s != row.get("borrower")]
        forms.append(
            action(
                f"{path}/route",
                session,
                "Ask this lender",
                {"how": "lender"},
                button_id="route-lender",
                extra=_select("lender", "route-lender-to", ((s, s) for s in others)),
            )
        )
        forms.append(
            action(
                f"{path}/route",
                session,
                "Never ask this lender",
                {"how": "skip"},
                button_id="route-skip",
                extra=_select("lender", "route-skip-who", ((s, s) for s in others), current),
            )
        )
    if accepts(state, Hub.ROUTE_NEXT):
        label = f"Ask the next lender (take it back from {current})"
        forms.append(action(f"{path}/route", session, label, {"how": "next"}, "route-next"))
    if accepts(state, Hub.ROUTE_RESTART):
        label = "Search holdings again (restart the rota)"
        forms.append(action(f"{path}/route", session, label, {"how": "restart"}, "route-restart"))
    if accepts(state, Hub.STAFF_CANCEL):
        reason = _text("reason", "cancel-reason", "why (the borrower is told)", required=False)
        forms.append(
            action(f"{path}/cancel", session, "Cancel the request", None, "cancel", reason)
        )
    if accepts(state, Hub.STAFF_CLOSE):
        reason = _text("reason", "close-reason", "why, e.g. returned outside the system")
        forms.append(action(f"{path}/close", session, "Close the loan", None, "close", reason))
    if accepts(state, Hub.STAFF_MESSAGE) and staff.messageable:
        to = _select(
            "to",
            "message-to",
            ((side, f"the {side}, {symbol}") for side, symbol in staff.messageable.items()),
        )
        text = _text("text", "message-text", "the message")
        forms.append(action(f"{path}/message", session, "Send", None, "message", Html(to + text)))
    if accepts(state, Hub.STAFF_NOTE):
        text = _text("text", "note-text", "a note for the timeline (no partner sees it)")
        forms.append(action(f"{path}/note", session, "Add note", None, "note", text))
    return tag("div", join(forms), class_="staff-actions", id="staff-actions")


def _patron(row: dict[str, Any]) -> str:
    """The patron as staff know them: the id and, where the borrower gave it, the name."""
    name, patron = row.get("patron_name"), row.get("patron") or ""
    return f"{patron} ({name})" if name and patron else name or patron


def partners_page(
    partners: list[Partner],
    figures: dict[str, PartnerFigures],
    load: dict[str, int],
    waiting: dict[str, list[dict[str, Any]]],
    session: Session,
    now: datetime,
    zone: tzinfo = UTC,
) -> Html:
    rows = []
    for partner in partners:
        f = figures.get(partner.symbol) or PartnerFigures()
        steps = waiting.get(partner.symbol, [])
        parked = sum(1 for s in steps if s["status"] == "parked")
        limit = partner.thresholds.max_open_incoming or partner.thresholds.overload
        held = load.get(partner.symbol, 0)
        health = tag("span", f.health, class_=f"health {f.health}")
        # Tries of the last 24 h (each counted once, by what came of it) apart from the steps
        # waiting now (the last column): one word for each, so the two never seem to disagree.
        tried = (
            f"in 24 h: {f.sent} sent, {f.retrying} failed and retried, {f.failed} failed and parked"
        )
        failure = (
            tag(
                "div",
                f"last failure {when(f.last_failure_at, zone)}: {f.last_failure}",
                class_="failure",
            )
            if f.last_failure
            else Html("")
        )
        redeliver = (
            action(f"/partners/{partner.symbol}/redeliver", session, "Redeliver")
            if session.operator and steps
            else Html("")
        )
        # Who to call is shown where it is needed: next to a partner whose deliveries fail.
        contact = _contact(partner) if f.health in ("failing", "degraded") or steps else Html("")
        rows.append(
            table_row(
                [
                    tag("strong", partner.symbol),
                    partner.name,
                    partner.protocol,
                    f"{held}" + (f" / {limit}" if limit else "") if partner.lends else "-",
                    f"{f.open_as_borrower} as borrower, {f.open_as_lender} as lender",
                    join(
                        [
                            tag(
                                "div",
                                f"heard {age(f.last_in, now)} ago" if f.last_in else "never heard",
                            ),
                            tag(
                                "div",
                                f"sent {age(f.last_out, now)} ago" if f.last_out else "never sent",
                            ),
                        ]
                    ),
                    join([health, tag("div", tried), failure, contact]),
                    join([f"{len(steps) - parked} waiting to retry, {parked} parked", redeliver]),
                ],
                data_partner=partner.symbol,
            )
        )
    head = tag(
        "tr",
        join(
            tag("th", c)
            for c in (
                "Partner",
                "Name",
                "Protocol",
                "Load (open loans held / limit)",
                "Open requests",
                "Last contact",
                "Delivery health",
                "Deliveries waiting",
            )
        ),
    )
    return tag("table", join([tag("thead", head), tag("tbody", join(rows))]), id="partners")


def _contact(partner: Partner) -> Html:
    """The partner's contact from the directory (contact_name, contact_email,
    contact_phone), or a note that the directory gives none."""
    parts: list[Html] = []
    if partner.contact_name:
        parts.append(h(partner.contact_name))
    if partner.contact_email:
        parts.append(link(f"mailto:{partner.contact_email}", partner.contact_email))
    if partner.contact_phone:
        parts.append(link(f"tel:{partner.contact_phone}", partner.contact_phone))
    said = join(parts, ", ") if parts else Html("no contact in the directory")
    return tag("div", join(["contact: ", said]), class_="contact")


def deadletters_page(
    listing: Listing,
    query: dict[str, str],
    session: Session,
    zone: tzinfo = UTC,
    stages: Iterable[str] = (),
    partners: Iterable[str] = (),
) -> Html:
    """`stages`, `partners`: the values the dead letters have, to filter by."""
    letters = listing.rows
    form = tag(
        "form",
        join(
            [
                tag("label", "Partner", for_="d-partner"),
                _select(
                    "partner",
                    "d-partner",
                    [("", "any"), *((p, p) for p in partners)],
                    query.get("partner", ""),
                ),
                tag("label", "Stage", for_="d-stage"),
                _select(
                    "stage",
                    "d-stage",
                    [("", "any"), *((s, s) for s in stages)],
                    query.get("stage", ""),
                ),
                tag("button", "Filter", type="submit", id="d-filter"),
            ]
        ),
        method="get",
        action="/deadletters",
        class_="search",
    )
    rows = []
    for letter in letters:
        replay: Html = Html("")
        if session.operator and letter.get("replayable"):
            trust = (
                Html(
                    '<label><input type="checkbox" name="trust_sender" value="1"> '
                    f"I know {h(letter.get('partner') or '?')} sent it</label>"
                )
                if letter.get("stage") == "authenticate"
                else Html("")
            )
            replay = action(
                "/deadletters/replay", session, "Replay", {"ref": letter["ref"]}, extra=trust
            )
        settled = [
            f"{what} by {letter[what]}" for what in ("acknowledged", "replayed") if letter.get(what)
        ]
        acknowledge: Html = Html("")
        if session.operator and not letter.get("acknowledged"):
            note = void("input", name="note", placeholder="why it is settled", maxlength="500")
            acknowledge = action(
                "/deadletters/ack", session, "Acknowledge", {"ref": letter["ref"]}, extra=note
            )
        where = letter.get("transaction_id")
        rows.append(
            [
                letter["ref"],
                when(letter.get("at"), zone),
                letter.get("stage") or "?",
                letter.get("partner") or "-",
                letter.get("protocol") or "-",
                link(f"/requests/{where}", where) if where else "-",
                tag("span", letter.get("error") or "", class_="reason"),
                tag("span", "; ".join(settled), class_="settled") if settled else "",
                join([replay, acknowledge]),
            ]
        )
    listed = (
        table(
            ("Ref", "At", "Stage", "Partner", "Protocol", "Request", "Reason", "Settled", ""),
            rows,
            id="deadletters",
        )
        if rows
        else tag("p", "No dead letters.", id="deadletters")
    )
    shown = {k: v for k, v in query.items() if k != "page"}
    pager = _pager(shown, listing, "/deadletters", "dead letters") if rows else Html("")
    return join([form, pager, listed])
