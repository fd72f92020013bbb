"""A partner's mailbox, read over IMAP (aioimaplib): one `MailboxListener` per mailbox.

For each new mail, in UID order: fetch it (refused unread when too large), check it is the
partner's (`identity`), hand its bytes to `Intake.take` (audited and made durable by the hub
before it returns; with `wait_verdict` it also waits for the state machine's verdict), record
the position, then move the mail to Processed; a mail that cannot be read, is not the
partner's, or is refused (by the codec, or by the transaction it names) goes to Failed and to
the dead letters. Mail is never deleted.

Restart safety: the position kept through `Intake.save_checkpoint` is `UIDVALIDITY UID
folder`, written after the mail was taken and before it is moved. On start, mails at or below
the position still in the inbox were taken already and are only moved (to the folder recorded
for the last one, to Processed for earlier ones); mails above it are read. A crash between
take and checkpoint makes the mail be taken again, which the engine drops by its content id
(the contract's at-least-once with deduplication); no crash point skips a mail. A new
UIDVALIDITY (the mailbox was recreated) voids the position: everything in the inbox is read.

IDLE is used where the server offers it (renewed every `idle_renew_s`), polling every
`poll_interval_s` otherwise; a lost connection is retried with growing waits.

No one mail can stop the listener: a mail larger than the hub's body limit is refused unread;
any failure while a mail is handed over is logged (one line, with where it happened), and
the mail is tried again in a new session, unless it failed `max_mail_attempts` times while
the broker answered, which makes it this mail's fault: it goes to Failed with a dead letter
(stage `intake`) and the next mail is read. A session that fails for any reason is logged,
counted (`health()`) and started again; its IMAP connection is always logged out or closed
first (Dovecot refuses a user's eleventh connection from one address).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioimaplib
import structlog

from connectors.core.contract import Codec, Fault, Intake, Limits, Refusal
from connectors.mail import identity
from connectors.mail.mime import MailError, MailLimits, parse_mail
from connectors.mail.options import MailPartnerOptions, MailSettings, TlsMode

log = structlog.get_logger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_EXISTS = re.compile(rb"^\*? ?\d+ EXISTS", re.IGNORECASE)
STOP_RECHECK_S = 1.0  # how often stop() cancels a session that has not ended yet
_ALREADY = re.compile(rb"ALREADYEXISTS|already exists", re.IGNORECASE)


class ImapError(Exception):
    """The server refused a command the listener needs (the session is retried)."""


class MailRetry(Exception):
    """Handing a mail over failed; it is read again in a new session."""


def where(error: BaseException) -> str:
    """Where an exception was raised (`file:line in function`), for a one-line log."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


@dataclass(frozen=True)
class Position:
    uidvalidity: int
    uid: int
    folder: str

    def encode(self) -> str:
        return f"{self.uidvalidity} {self.uid} {self.folder}"

    @classmethod
    def decode(cls, value: str | None) -> Position | None:
        try:
            validity, uid, folder = (value or "").split(" ", 2)
            return cls(int(validity), int(uid), folder)
        except ValueError:
            return None


def _uids(lines: list[Any]) -> list[int]:
    """UIDs of a SEARCH answer (aioimaplib hands the untagged data with or without its
    `SEARCH` word; the last line is the tagged status)."""
    found: set[int] = set()
    for line in lines[:-1]:
        words = bytes(line).split()
        if words[:1] == [b"SEARCH"]:
            words = words[1:]
        if all(word.isdigit() for word in words):
            found.update(int(word) for word in words)
    return sorted(found)


def tls_context(settings: MailSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        text = b" ".join(bytes(line) for line in response.lines)[:200].decode(errors="replace")
        raise ImapError(f"{what}: {response.result} {text}")
    return response


class MailboxListener:
    """Reads one partner's mailbox and hands its mails to the hub."""

    def __init__(
        self,
        *,
        protocol: str,
        codec: Codec[Any],
        partner: str,
        options: MailPartnerOptions,
        settings: MailSettings,
        password: str,
    ) -> None:
        self.protocol, self.codec, self.partner = protocol, codec, partner
        self.options, self.settings, self.password = options, settings, password
        self.limits = self._limits(settings.max_mail_bytes or Limits().max_body_bytes)
        self.key = f"mail:{protocol}:{partner}:{options.mailbox_user}:{settings.inbox}"
        self.handled = 0  # mails taken or filed under Failed since start
        self.failures = 0  # sessions ended by an error, and mails whose handing over failed
        self.last_error = ""
        self.connected = False
        self.idling = False  # whether the last wait was an IDLE (tests, health)
        self._attempts: dict[tuple[int, int], int] = {}  # (UIDVALIDITY, UID) -> failures
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._imap: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()  # set when the current connection closes
        self._stopping = False

    def _limits(self, max_bytes: int) -> MailLimits:
        s = self.settings
        return MailLimits(max_bytes, s.max_parts, s.max_depth, s.max_text_chars)

    @property
    def max_bytes(self) -> int:
        return self.limits.max_bytes

    def health(self) -> dict[str, Any]:
        """The listener's state for an operator: `running` while its session is connected,
        `connecting` while it (re)connects or waits to, `stopped` once stopped, `dead` if
        the task ended otherwise (which no error in a mail or a session should cause)."""
        task = self._task
        if task is None or task.cancelled() or self._stopping:
            state = "stopped"
        elif task.done():
            state = "dead"
        else:
            state = "running" if self.connected else "connecting"
        return {
            "state": state,
            "handled": self.handled,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # -- life cycle -------------------------------------------------------------------------

    def bind(self) -> None:
        """Nothing to reserve: a mailbox listener connects out to its IMAP server."""

    async def start(self, intake: Intake) -> None:
        # A mail over the hub's body limit could not be audited or decoded (the codec
        # refuses it): refuse it unread here, whatever max_mail_bytes says.
        body_limit = intake.limits.max_body_bytes
        wanted = self.settings.max_mail_bytes or body_limit
        if wanted > body_limit:
            log.warning(
                "mailbox.limit_capped", mailbox=self.key, max_mail_bytes=wanted, limit=body_limit
            )
        self.limits = self._limits(min(wanted, body_limit))
        self._stopping = False
        self._task = asyncio.create_task(self._run(intake), name=f"mailbox {self.key}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A listener task ends only when stopped; anything else is said loudly."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        detail = describe(error) if error else "returned"
        where_ = where(error) if error else "?"
        log.error("mailbox.listener_ended", mailbox=self.key, error=detail, where=where_)

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        while task is not None and not task.done():
            # Cancelled again until it ends: Python 3.11's asyncio.wait_for (aioimaplib's
            # commands wait with it) swallows a cancel that meets an answer arriving at the
            # same moment, and the session would go on; `_stopping` ends its loops as well.
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_RECHECK_S)
        if task is not None and not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        await self._release()  # if the task ended before it could

    async def wait_handled(self, count: int) -> None:
        """Until `count` mails have been handled since start (tests, the bench)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.handled >= count)

    async def wait_failures(self, count: int) -> None:
        """Until `count` failures have been counted since start (tests)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.failures >= count)

    async def _run(self, intake: Intake) -> None:
        wait = self.settings.reconnect_s
        while not self._stopping:
            self.connected = False
            try:
                await self._session(intake)
            except (
                OSError,
                TimeoutError,
                aioimaplib.AioImapException,
                ImapError,
                MailRetry,
            ) as error:
                # The server, the network or the broker: expected now and then.
                await self._failed(describe(error))
                log.warning("mailbox.retry", mailbox=self.key, error=describe(error), wait_s=wait)
            except Exception as error:
                # A defect, or a failure nobody foresaw: the mailbox must still be read.
                await self._failed(describe(error))
                log.error(
                    "mailbox.session_failed",
                    mailbox=self.key,
                    error=describe(error),
                    where=where(error),
                    wait_s=wait,
                )
            finally:
                await self._release()
            if self._stopping:
                return
            if self.connected:  # the session got going: the next failure starts afresh
                wait = self.settings.reconnect_s
            self.connected = False
            await asyncio.sleep(wait)  # back-off before reconnecting, not synchronisation
            wait = min(wait * 2, self.settings.reconnect_max_s)

    async def _failed(self, error: str) -> None:
        async with self._changed:
            self.failures += 1
            self.last_error = error
            self._changed.notify_all()

    async def _release(self) -> None:
        """Log out of the session's connection, or close it if LOGOUT does not go through:
        every session leaves no connection behind, however it ended."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            if not self._lost.is_set():  # a closed connection has nobody to log out from
                try:
                    await asyncio.wait_for(imap.logout(), min(self.settings.timeout_s, 5.0))
                except Exception as error:  # a broken connection cannot log out: closed below
                    log.info("mailbox.logout_failed", mailbox=self.key, error=describe(error))
        finally:  # also when stop() cancels the LOGOUT
            transport = getattr(imap.protocol, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()

    # -- one session ------------------------------------------------------------------------

    async def _connect(self) -> aioimaplib.IMAP4:
        """A logged-in connection, held in `_imap` from the first byte (so a session whose
        greeting, STARTTLS or login fails still has its connection released)."""
        s = self.settings
        # aioimaplib's wait for the server's news (IDLE) does not end when the connection
        # closes: the session waits on this instead, beside it (a restarted mail server
        # would otherwise be read again only when IDLE is renewed, 25 minutes by default).
        lost = self._lost = asyncio.Event()

        def closed(_error: Exception | None) -> None:
            lost.set()

        if s.imap_tls is TlsMode.TLS:
            imap: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                s.imap_host, s.imap_port, timeout=s.timeout_s, ssl_context=tls_context(s)
            )
        else:
            imap = aioimaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.timeout_s)
        # Set on the protocol object (made at once, connected later): IMAP4_SSL takes no
        # `conn_lost_cb` argument in aioimaplib 2.0.
        imap.protocol.conn_lost_cb = closed
        self._imap = imap
        await imap.wait_hello_from_server()
        if s.imap_tls is TlsMode.STARTTLS:
            await _starttls(imap, tls_context(s), s.timeout_s)
        _ok(await imap.login(self.options.mailbox_user or "", self.password), "LOGIN")
        return imap

    async def _session(self, intake: Intake) -> None:
        imap = await self._connect()
        for folder in (self.settings.processed_folder, self.settings.failed_folder):
            response = await imap.create(folder)
            if response.result != "OK" and not any(
                _ALREADY.search(bytes(line)) for line in response.lines
            ):
                _ok(response, f"CREATE {folder}")
        selected = _ok(await imap.select(self.settings.inbox), "SELECT")
        validity = next(
            (int(m.group(1)) for line in selected.lines if (m := _UIDVALIDITY.search(line))), 0
        )
        position = Position.decode(await intake.load_checkpoint(self.key))
        if position is not None and position.uidvalidity != validity:
            log.warning("mailbox.uidvalidity_changed", mailbox=self.key, was=position.uidvalidity)
            position = None
        last = position.uid if position else 0
        if position is not None:
            await self._finish(imap, position)
        self.connected = True
        again = False  # the last search was one again for an arrival it heard of
        while not self._stopping:
            uids, arrived = await self._new(imap, last)
            for uid in uids:
                await self._one(imap, intake, validity, uid)
                last = uid
            # The server tells of a mail once, in the answer to whichever command it was
            # running when the mail came (a FETCH or MOVE of the mail before, this SEARCH):
            # IDLE would not tell of it again. So the listener waits only after a search that
            # found nothing and heard of no arrival (searching again once for an arrival: a
            # server that always says EXISTS cannot keep it searching).
            if uids or (arrived and not again):
                again = not uids
                continue
            again = False
            await self._wait(imap)

    async def _new(self, imap: aioimaplib.IMAP4, last: int) -> tuple[list[int], bool]:
        """The UIDs above `last`, and whether the server told of a mail arriving meanwhile.
        aioimaplib drops an untagged EXISTS that comes during a SEARCH unless a NOOP is
        waiting for its answer, and then files it there: so a NOOP goes with the SEARCH."""
        response, news = await asyncio.gather(
            imap.uid_search("UID", f"{last + 1}:*", charset=None), imap.noop()
        )
        _ok(response, "SEARCH")
        arrived = any(_EXISTS.match(bytes(line)) for line in news.lines[:-1])
        # `n:*` always matches the newest mail, even one at or below n.
        return [uid for uid in _uids(response.lines) if uid > last], arrived

    async def _finish(self, imap: aioimaplib.IMAP4, position: Position) -> None:
        """Move mails taken before a restart that are still in the inbox."""
        for uid in await self._below(imap, position.uid):
            folder = position.folder if uid == position.uid else self.settings.processed_folder
            await self._move(imap, uid, folder)

    async def _below(self, imap: aioimaplib.IMAP4, uid: int) -> list[int]:
        response = _ok(await imap.uid_search("UID", f"1:{uid}", charset=None), "SEARCH")
        return [found for found in _uids(response.lines) if found <= uid]

    async def _wait(self, imap: aioimaplib.IMAP4) -> None:
        if self.settings.use_idle and imap.has_capability("IDLE"):
            self.idling = True
            idle = await imap.idle_start(timeout=self.settings.idle_renew_s)
            async with self._changed:
                self._changed.notify_all()
            push = asyncio.ensure_future(
                imap.wait_server_push(timeout=self.settings.idle_renew_s + 5)
            )
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                if not push.done():
                    push.cancel()
            if self._lost.is_set():
                raise ConnectionError("the mail server closed the connection during IDLE")
            push.result()  # a timeout of the wait itself, as before
            imap.idle_done()
            await asyncio.wait_for(idle, self.settings.timeout_s)
        else:
            self.idling = False
            await asyncio.sleep(self.settings.poll_interval_s)  # polling interval
            _ok(await imap.noop(), "NOOP")

    # -- one mail ---------------------------------------------------------------------------

    async def _one(self, imap: aioimaplib.IMAP4, intake: Intake, validity: int, uid: int) -> None:
        sized = _ok(await imap.uid("fetch", str(uid), "(RFC822.SIZE)"), "FETCH")
        size = next((int(m.group(1)) for line in sized.lines if (m := _SIZE.search(line))), 0)
        raw: bytes | None = None
        if size <= self.max_bytes:
            fetched = _ok(await imap.uid("fetch", str(uid), "(BODY.PEEK[])"), "FETCH")
            raw = next((bytes(x) for x in fetched.lines if isinstance(x, bytearray)), b"")
        try:
            refused = await self._handle(intake, raw, size)
        except Exception as error:
            refused = await self._unhandled(intake, validity, uid, error)
        folder = self.settings.processed_folder if refused is None else self.settings.failed_folder
        await intake.save_checkpoint(self.key, Position(validity, uid, folder).encode())
        await self._move(imap, uid, folder)
        self._attempts.pop((validity, uid), None)
        if refused is None:
            log.info("mailbox.mail", mailbox=self.key, uid=uid, folder=folder)
        else:
            stage, reason = refused
            log.warning(
                "mailbox.refused", mailbox=self.key, uid=uid, folder=folder, stage=stage,
                reason=reason, size=size,
            )  # fmt: skip
        async with self._changed:
            self.handled += 1
            self._changed.notify_all()

    async def _unhandled(
        self, intake: Intake, validity: int, uid: int, error: Exception
    ) -> tuple[str, str]:
        """A mail whose handing over failed: raise MailRetry to read it again in a new
        session, or, once it failed `max_mail_attempts` times while the broker answered
        (so the mail, not the broker, is the cause), its refusal for Failed."""
        text = describe(error)
        if not intake.broker_up:  # nothing could be stored; nobody's fault but the broker's
            raise MailRetry(f"uid {uid}: broker unavailable ({text})") from None
        key = (validity, uid)
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fields = {"mailbox": self.key, "uid": uid, "attempt": attempt, "error": text}
        if attempt < self.settings.max_mail_attempts:
            log.warning("mailbox.mail_failed", **fields, where=where(error), will_retry=True)
            raise MailRetry(f"uid {uid}: {text}") from None
        await self._failed(text)
        log.error("mailbox.mail_failed", **fields, where=where(error), will_retry=False)
        detail = f"mail could not be handed over after {attempt} attempts: {text}"
        try:
            # A mail gets no answer: the fault only words the dead letter (the contract has
            # no fault for "the hub could not handle it"; the stage says so).
            await self._refuse(intake, Fault.SYNTAX, detail, None, stage="intake")
        except Exception as failed:  # the mail is kept in Failed; the log says why
            log.error("mailbox.deadletter_failed", mailbox=self.key, uid=uid,
                      error=describe(failed))  # fmt: skip
        return "intake", detail

    async def _handle(self, intake: Intake, raw: bytes | None, size: int) -> tuple[str, str] | None:
        """None when the hub took the mail, else the refusal's stage and reason (it went to
        the dead letters). `raw` None: too large, not read."""
        if raw is None or len(raw) > self.max_bytes:
            # Not audited either: the bytes would not fit the broker (the mail is kept in
            # Failed for a person to look at).
            length = size if raw is None else len(raw)
            detail = f"mail of {length} bytes, over {self.max_bytes} (not read)"
            await self._refuse(intake, Fault.TOO_LARGE, detail, None)
            return "parse", detail
        try:
            mail = parse_mail(raw, self.limits)
        except MailError as error:
            ref = await self._audit_refused(intake, raw)
            await self._refuse(intake, error.fault, error.detail, ref)
            return "parse", error.detail
        wrong = identity.problem(mail, self.options)
        if wrong is not None:
            ref = await self._audit_refused(intake, raw)
            await self._refuse(intake, Fault.UNAUTHENTICATED, wrong, ref, stage="authenticate")
            return "authenticate", wrong
        try:
            answer = await intake.take(
                self.codec, self.partner, raw, "message/rfc822", wait=self.settings.wait_verdict
            )
        except Refusal as refusal:
            if refusal.stage == "unavailable":
                # The broker, or this mail's records on their way to it: `_unhandled`
                # tells which by whether the broker answers.
                raise MailRetry(f"hub unavailable: {refusal.reason}") from None
            await intake.refuse(refusal, self.partner, self.protocol)
            return refusal.stage, refusal.reason
        # The mail codecs' fault answers carry an error status: the transaction refused the
        # mail (a reference to no open request, a step its state does not allow). The state
        # machine wrote the dead letter; the mail is filed under Failed for a person to see.
        if answer.status >= 400:
            return "state", answer.body[:200].decode("utf-8", "replace")
        return None

    async def _audit_refused(self, intake: Intake, raw: bytes) -> str | None:
        """The refused mail's bytes in the audit, if the broker takes them (the mail itself
        stays in Failed, so the refusal does not depend on it)."""
        try:
            return await intake.audit_refused(
                self.protocol, self.partner, raw, "message/rfc822", self.key
            )
        except Exception as error:
            log.warning("mailbox.audit_failed", mailbox=self.key, error=describe(error))
            return None

    async def _refuse(
        self, intake: Intake, fault: Fault, detail: str, ref: str | None, stage: str = "parse"
    ) -> None:
        refusal = Refusal(detail, self.codec.fault(fault, detail), stage=stage, audit_ref=ref)
        await intake.refuse(refusal, self.partner, self.protocol)

    async def _move(self, imap: aioimaplib.IMAP4, uid: int, folder: str) -> None:
        if imap.has_capability("MOVE"):
            _ok(await imap.uid("move", str(uid), folder), "MOVE")
            return
        _ok(await imap.uid("copy", str(uid), folder), "COPY")
        _ok(await imap.uid("store", str(uid), "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
        if imap.has_capability("UIDPLUS"):
            _ok(await imap.uid("expunge", str(uid)), "EXPUNGE")
        else:
            _ok(await imap.expunge(), "EXPUNGE")


async def _starttls(imap: aioimaplib.IMAP4, context: ssl.SSLContext, timeout: float) -> None:
    """IMAP STARTTLS (RFC 3501 6.2.1), which aioimaplib lists but has no method for: send the
    command, then upgrade the connection's transport in place and ask for capabilities again
    (a server may offer more after TLS; what it said before must be forgotten)."""
    protocol = imap.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError("server offers no STARTTLS")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    _ok(await asyncio.wait_for(protocol.execute(command), timeout), "STARTTLS")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=imap.host
    )
    if transport is None:
        raise ImapError("STARTTLS: the connection closed")
    protocol.transport = transport
    await asyncio.wait_for(protocol.capability(), timeout)
