"""Patron e-mail (issue 29.4, docs/api.md: Patron e-mail): a borrowing library with a
`patron_notices` block in the directory has its patrons told by mail when their request
reaches one of the states it chose (shipped, arrived for pickup, overdue ...), in the
library's language, from its template or the built-in English and German ones, through the
hub's SMTP sender (the mail connectors' settings).

`PatronNotices` is a service of the worker (start/stop with the faust app). It follows
ill.events, whose lines name the borrower, and for a chosen state reads the request's
title, due date and the patron's address from the transaction (the worker's table). Each
notice goes into an outbox in `<data dir>/patron-notices.sqlite3` (mode 0600) in the same
SQLite transaction as the ill.events offsets it was read at, so a restart neither loses nor
repeats a notice (its id is the transaction's and the change's: read twice, it is inserted
once). Failures are tried again on the library's `retry_minutes`, then every
`parked_retry_minutes`; a mail the server refuses for good (5xx) is not tried again. Once
sent, the mail (address and body) is forgotten; the record that it was sent stays.

With several workers, each reads every partition and mails the transactions it holds
active in its table (the others are theirs). Never logged: the address or the body.
"""

from __future__ import annotations

import asyncio
import functools
import os
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Literal

import structlog
from prometheus_client import Counter, Gauge

from connectors.core.contract import Registry, Sender
from connectors.core.directory import Directory
from connectors.core.directory import PatronNotices as Notices
from connectors.core.topics import Topic
from hub.domain.lifecycle import State
from hub.kafka.partitioning import PARTITIONER
from hub.runtime import metrics
from hub.runtime.outbox import POLL_S, Change, Outbox, event_ends, read_change
from hub.runtime.private_db import PARKED, WAITING, PrivateDb
from hub.runtime.settings import Settings
from hub.runtime.status_links import status_path

log = structlog.get_logger(__name__)

FILE = "patron-notices.sqlite3"
MAIL_CONNECTORS = ("illiad-email", "artemail")  # whose SMTP settings the mail goes through
WAIT_FOR_TABLE_S = 120.0  # a transaction this worker holds but its table lacks (recovering)
KEEP_SENT = timedelta(days=90)
SENT, FAILED = "sent", "failed"

NOTICES = Counter(
    "rshub_patron_notices",
    "Patron e-mails, per library and outcome (sent, failed, parked, refused, no_address)",
    ["partner", "outcome"],
    registry=metrics.REGISTRY,
)
NOTICES_WAITING = Gauge(
    "rshub_patron_notices_waiting",
    "Patron e-mails not yet sent, per library and status (waiting, parked)",
    ["partner", "status"],
    registry=metrics.REGISTRY,
)

# -- the mail ------------------------------------------------------------------------------------

SUBJECTS = {
    "en": "Your interlibrary loan request: $title",
    "de": "Ihre Fernleihbestellung: $title",
}
TEMPLATES = {
    "en": (
        "Dear reader,\n\n"
        "there is news about your interlibrary loan request $request_id:\n\n"
        "Title: $title\n"
        "Status: $state\n"
        "${due_line}${link_line}\n"
        "Your library\n"
    ),
    "de": (
        "Guten Tag,\n\n"
        "zu Ihrer Fernleihbestellung $request_id gibt es Neues:\n\n"
        "Titel: $title\n"
        "Stand: $state\n"
        "${due_line}${link_line}\n"
        "Ihre Bibliothek\n"
    ),
}
LINES = {
    "en": {"due": "Due back by: {}\n", "link": "\nFollow your request: {}\n"},
    "de": {"due": "Zurückzugeben bis: {}\n", "link": "\nIhre Bestellung verfolgen: {}\n"},
}


@dataclass(frozen=True)
class Facts:
    """What a notice says, taken from the transaction."""

    request_id: str
    title: str
    state: str  # in words
    due_date: datetime | None
    status_link: str | None


def render_text(notices: Notices, facts: Facts) -> tuple[str, str]:
    """The subject and the plain-text body: the library's template, else its language's."""
    lang = notices.language if notices.language in TEMPLATES else "en"
    due = facts.due_date.date().isoformat() if facts.due_date else ""
    lines = LINES[lang]
    values = {
        "title": facts.title,
        "state": facts.state,
        "request_id": facts.request_id,
        "due_date": due,
        "status_link": facts.status_link or "",
        "due_line": lines["due"].format(due) if due else "",
        "link_line": lines["link"].format(facts.status_link) if facts.status_link else "",
    }
    subject = string.Template(notices.subject or SUBJECTS[lang]).safe_substitute(values)
    body = string.Template(notices.template or TEMPLATES[lang]).safe_substitute(values)
    return " ".join(subject.split()), body  # a subject is one line


def render_mail(
    notices: Notices, facts: Facts, to: str, sender: str, domain: str, notice_id: str
) -> bytes:
    subject, body = render_text(notices, facts)
    mail = EmailMessage()
    mail["From"] = notices.from_address or sender
    mail["To"] = to
    if notices.reply_to:
        mail["Reply-To"] = notices.reply_to
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    # One id per notice: a server (or the patron's client) sees a repeat as the same mail.
    mail["Message-ID"] = make_msgid(idstring=notice_id.replace(":", "."), domain=domain)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    mail.set_content(body)
    mail["Content-Language"] = notices.language  # after: set_content clears Content-*
    return bytes(mail)


# -- the store -----------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    id TEXT PRIMARY KEY, partner TEXT NOT NULL, transaction_id TEXT NOT NULL,
    state TEXT NOT NULL, mail BLOB, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL, last_error TEXT, created TEXT NOT NULL, sent_at TEXT);
CREATE INDEX IF NOT EXISTS notices_due ON notices (status, due);
"""


@dataclass(frozen=True)
class Notice:
    id: str
    partner: str
    transaction_id: str
    state: str
    mail: bytes
    attempts: int


class Store(PrivateDb):
    """The outbox and the position in ill.events (mode 0600: waiting mails hold addresses)."""

    OUTBOX = "notices"

    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    def start(self, ends: dict[int, int]) -> None:
        """Where a first start follows from (what happened before is not told)."""
        with self._writing() as db:
            self._start_at(db, ends)

    def forget_position(self) -> None:
        """No library wants notices: a later one is told from then on, not of the past."""
        self.db.execute("DELETE FROM offsets")

    def take(
        self,
        positions: dict[int, int],
        notices: list[tuple[str, str, str, str, bytes]],
        now: float,
    ) -> int:
        """Notices `(id, partner, transaction_id, state, mail)` into the outbox with the
        offsets after what was read, in one SQLite transaction; the number added."""
        added = 0
        with self._writing() as db:
            for ident, partner, txn, state, mail in notices:
                added += db.execute(
                    "INSERT OR IGNORE INTO notices (id, partner, transaction_id, state, mail,"
                    " status, due, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ident, partner, txn, state, mail, WAITING, now, _iso(now)),
                ).rowcount
            self._move_to(db, positions)
        return added

    def due(self, now: float, limit: int = 50) -> list[Notice]:
        rows = self.db.execute(
            "SELECT id, partner, transaction_id, state, mail, attempts FROM notices"
            " WHERE status IN (?, ?) AND due <= ? ORDER BY due LIMIT ?",
            (WAITING, PARKED, now, limit),
        ).fetchall()
        return [Notice(*row) for row in rows]

    def sent(self, ident: str, now: float) -> None:
        # The mail goes: no address or body is kept once it is sent.
        self.db.execute(
            "UPDATE notices SET status = ?, mail = NULL, attempts = attempts + 1,"
            " last_error = NULL, sent_at = ? WHERE id = ?",
            (SENT, _iso(now), ident),
        )

    def failed(self, ident: str, error: str, due: float | None, parked: bool) -> None:
        """A failed try: again at `due`, or never (None: refused for good; the mail goes)."""
        if due is None:
            self.db.execute(
                "UPDATE notices SET status = ?, mail = NULL, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (FAILED, error, ident),
            )
            return
        self.db.execute(
            "UPDATE notices SET status = ?, attempts = attempts + 1, last_error = ?, due = ?"
            " WHERE id = ?",
            (PARKED if parked else WAITING, error, due, ident),
        )

    def status(self, ident: str) -> str | None:
        row = self.db.execute("SELECT status FROM notices WHERE id = ?", (ident,)).fetchone()
        return str(row[0]) if row else None

    def prune(self, before: datetime) -> int:
        return self.db.execute(
            "DELETE FROM notices WHERE status IN (?, ?) AND created < ?",
            (SENT, FAILED, before.isoformat()),
        ).rowcount


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


# -- the transaction ---------------------------------------------------------------------------

Found = tuple[Literal["mine", "other", "wait"], dict[str, Any] | None]


class TableLookup:
    """A transaction's row from the worker's table, if this worker holds it active ("other":
    another worker mails it; "wait": this worker holds it but has no row yet, recovering)."""

    def __init__(self, app: Any, table: Any) -> None:
        self.app, self.table = app, table

    def __call__(self, transaction_id: str) -> Found:
        recovered = getattr(getattr(self.app, "tables", None), "recovery", None)
        completed = getattr(recovered, "completed", None)
        if completed is not None and not completed.is_set():
            return "wait", None  # the table is still being read back from its changelog
        owned = {self.table.changelog_topic.get_topic_name(), Topic.INBOUND}
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic in owned}
        if not active:
            return "wait", None  # not yet assigned
        count = self.table.partitions or self.app.conf.topic_partitions
        if PARTITIONER.hash(transaction_id.encode()) % count not in active:
            return "other", None
        row = self.table.get(transaction_id)
        return ("mine", dict(row)) if row else ("wait", None)


def facts_of(
    row: dict[str, Any],
    change: Change,
    notices: Notices,
    words: Callable[[str, str], str],
    has_status_page: bool,
) -> tuple[str | None, Facts]:
    """The patron's address (None: the request names none) and what the notice says
    (`has_status_page`: the request was placed through the API, whose status page it has)."""
    request = row.get("request") or {}
    biblio = request.get("bibliographic") or {}
    title = biblio.get("title") or biblio.get("title_of_component") or ""
    due = row.get("due_date")
    due_date = datetime.fromisoformat(due) if isinstance(due, str) else due
    request_id = change.request_id or str(row.get("borrower_request_id") or "")
    link = None
    if notices.status_base_url and has_status_page and request_id:
        link = notices.status_base_url.rstrip("/") + status_path(change.partner, request_id)
    facts = Facts(
        request_id=request_id,
        title=str(title),
        state=words(change.state, notices.language),
        due_date=due_date,
        status_link=link,
    )
    return request.get("patron_email") or None, facts


# -- the service ---------------------------------------------------------------------------------


class PatronNotices(Outbox[Store, Notice]):
    events = "patron_notice"
    send_failed = "patron_notice.send_failed"
    quiet = True  # a mail server's words may name the patron
    client_id = "rshub-patron-notices"
    batch = 200
    at_once = 1  # patron mail is not urgent, the server is shared
    keep = KEEP_SENT
    waiting = NOTICES_WAITING
    outcomes = NOTICES

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        bootstrap: str,
        connectors: Registry,
        connector_settings: dict[str, Any] | None,
        lookup: Callable[[str], Found],
        *,
        store_path: Path | None = None,
        poll_s: float = POLL_S,
        **kwargs: Any,
    ) -> None:
        path = store_path or settings.data_dir / FILE
        super().__init__(directory, bootstrap, Store, path, poll_s, **kwargs)
        self.lookup = lookup
        self.sender: Sender | None = None
        self.from_address, self.domain = "rshub@localhost", "rshub.invalid"
        for name in MAIL_CONNECTORS:
            connector = connectors.get(name)
            if connector is None or connector.sender is None:
                continue
            own = (connector_settings or {}).get(name) or connector.load_settings(os.environ)
            self.sender = connector.sender(settings.limits(), own, connector.codec)
            self.from_address = str(getattr(own, "from_address", self.from_address))
            self.domain = str(getattr(own, "domain", self.domain))
            break
        self.enabled = self.sender is not None  # no SMTP sender in this build: nothing to do
        api = connectors.get("api")
        pages = getattr(api.codec, "patron_pages", None) if api else None
        self.words: Callable[[str, str], str] = (
            pages.state_text if pages is not None else (lambda state, _lang: state)
        )

    async def on_start(self) -> None:
        known = {state.value for state in State}
        for symbol, notices in self._wanted().items():
            unknown = sorted(set(notices.states) - known)
            if unknown:  # the directory may not know the hub's states: said, not refused
                log.warning("patron_notice.unknown_states", partner=symbol, states=unknown)
        if self.sender is None and self._wanted():
            log.warning("patron_notice.no_smtp", reason="no mail connector in this build")

    def _wanted(self) -> dict[str, Notices]:
        return {p.symbol: p.patron_notices for p in self.directory.partners if p.patron_notices}

    async def _position(self) -> dict[int, int]:
        if not self._wanted():  # no library wants mail: read nothing (directory reloads)
            if self.consumer is not None or ("follow" not in self.stores and self.path.exists()):
                await asyncio.to_thread(self._store("follow").forget_position)
            return {}
        store = self._store("follow")
        stored = await asyncio.to_thread(store.offsets)
        if not stored:
            await asyncio.to_thread(store.start, await event_ends(self.bootstrap))
            stored = await asyncio.to_thread(store.offsets)
        return stored

    async def _take(self, store: Store, records: list[Any]) -> tuple[int, bool]:
        wanted = self._wanted()
        positions: dict[int, int] = {}
        made: list[tuple[str, str, str, str, bytes]] = []
        blocked: set[int] = set()  # partitions waiting for the table: read again later
        for record in records:
            if record.partition in blocked:
                continue
            change = read_change(record.value)
            notices = wanted.get(change.partner) if change else None
            if change is not None and notices is not None and change.state in notices.states:
                outcome = await self._notice(change, notices)
                if outcome == "wait":
                    blocked.add(record.partition)
                    continue
                if outcome is not None:
                    made.append(outcome)
            positions[record.partition] = record.offset + 1
        added = await asyncio.to_thread(store.take, positions, made, time.time())
        return added, not blocked

    async def _notice(
        self, change: Change, notices: Notices
    ) -> tuple[str, str, str, str, bytes] | Literal["wait"] | None:
        found, row = self.lookup(change.transaction_id)
        if found == "other":
            return None
        if found == "wait" or row is None:
            if (datetime.now(UTC) - change.at).total_seconds() < WAIT_FOR_TABLE_S:
                return "wait"
            log.warning(
                "patron_notice.no_transaction",
                partner=change.partner,
                transaction_id=change.transaction_id,
                state=change.state,
            )
            return None
        borrower = self.directory.partner(change.partner)
        api = borrower is not None and borrower.protocol == "api"
        address, facts = facts_of(row, change, notices, self.words, api)
        if not address:
            NOTICES.labels(change.partner, "no_address").inc()
            return None
        ident = f"{change.transaction_id}:{change.event_id}"
        mail = render_mail(notices, facts, address, self.from_address, self.domain, ident)
        return ident, change.partner, change.transaction_id, change.state, mail

    async def _send(self, store: Store, notice: Notice) -> None:
        assert self.sender is not None
        attempt = await self.sender.send(self._partner(notice.partner), notice.mail)
        tried = notice.attempts + 1
        said = log.bind(
            partner=notice.partner, transaction_id=notice.transaction_id, notice=notice.id
        )
        if attempt.ok:
            await asyncio.to_thread(store.sent, notice.id, time.time())
            NOTICES.labels(notice.partner, "sent").inc()
            said.info("patron_notice.sent", state=notice.state, attempts=tried)
            return
        # Said generally: the server's words may name the address.
        error = "refused by the mail server" if not attempt.retryable else "could not send"
        if not attempt.retryable:
            await asyncio.to_thread(store.failed, notice.id, error, None, False)
            NOTICES.labels(notice.partner, "refused").inc()
            said.warning("patron_notice.refused")
            return
        await self._again(
            notice.partner, tried, functools.partial(store.failed, notice.id, error), said
        )


def service(
    app: Any,
    table: Any,
    settings: Settings,
    directory: Directory,
    bootstrap: str,
    connectors: Registry,
    connector_settings: dict[str, Any] | None,
) -> PatronNotices:
    """The worker's patron-mail service, reading transactions from its table (agents.py)."""
    lookup = TableLookup(app, table)
    return PatronNotices(settings, directory, bootstrap, connectors, connector_settings, lookup)
