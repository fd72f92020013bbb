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
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass
from typing import Any

import aioimaplib
import structlog

from connectors.core.contract import Codec, Fault, Intake, Refusal
from connectors.mail import identity
from connectors.mail.mime import MailError, MailLimits, parse_mail
from connectors.mail.options import MailPartnerOptions, MailSettings, TlsMode

log = structlog.get_logger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_ALREADY = re.compile(rb"ALREADYEXISTS|already exists", re.IGNORECASE)


class ImapError(Exception):
    """The server refused a command the listener needs (the session is retried)."""


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
        self.limits = MailLimits(
            settings.max_mail_bytes, settings.max_parts, settings.max_depth, settings.max_text_chars
        )
        self.key = f"mail:{protocol}:{partner}:{options.mailbox_user}:{settings.inbox}"
        self.handled = 0  # mails taken or filed under Failed since start
        self.connected = False
        self.idling = False  # whether the last wait was an IDLE (tests, health)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._imap: aioimaplib.IMAP4 | None = None

    # -- life cycle -------------------------------------------------------------------------

    def bind(self) -> None:
        """Nothing to reserve: a mailbox listener connects out to its IMAP server."""

    async def start(self, intake: Intake) -> None:
        self._task = asyncio.create_task(self._run(intake), name=f"mailbox {self.key}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._imap is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._imap.logout(), 2)
            self._imap = None

    async def wait_handled(self, count: int) -> None:
        """Until `count` mails have been handled since start (tests, the bench)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.handled >= count)

    async def _run(self, intake: Intake) -> None:
        wait = self.settings.reconnect_s
        while True:
            self.connected = False
            try:
                await self._session(intake)
            except (OSError, TimeoutError, aioimaplib.AioImapException, ImapError) as error:
                log.warning("mailbox.retry", mailbox=self.key, error=str(error), wait_s=wait)
            if self.connected:  # the session got going: the next failure starts afresh
                wait = self.settings.reconnect_s
            self._imap = None
            await asyncio.sleep(wait)  # back-off before reconnecting, not synchronisation
            wait = min(wait * 2, self.settings.reconnect_max_s)

    # -- one session ------------------------------------------------------------------------

    async def _connect(self) -> aioimaplib.IMAP4:
        s = self.settings
        if s.imap_tls is TlsMode.TLS:
            imap: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                s.imap_host, s.imap_port, timeout=s.timeout_s, ssl_context=tls_context(s)
            )
        else:
            imap = aioimaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.timeout_s)
        await imap.wait_hello_from_server()
        if s.imap_tls is TlsMode.STARTTLS:
            await _starttls(imap, tls_context(s), s.timeout_s)
        _ok(await imap.login(self.options.mailbox_user or "", self.password), "LOGIN")
        return imap

    async def _session(self, intake: Intake) -> None:
        imap = self._imap = await self._connect()
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
        while True:
            uids = await self._new(imap, last)
            for uid in uids:
                await self._one(imap, intake, validity, uid)
                last = uid
            await self._wait(imap)

    async def _new(self, imap: aioimaplib.IMAP4, last: int) -> list[int]:
        response = _ok(await imap.uid_search("UID", f"{last + 1}:*", charset=None), "SEARCH")
        # `n:*` always matches the newest mail, even one at or below n.
        return [uid for uid in _uids(response.lines) if uid > last]

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
            await imap.wait_server_push(timeout=self.settings.idle_renew_s + 5)
            imap.idle_done()
            await asyncio.wait_for(idle, self.settings.timeout_s)
        else:
            self.idling = False
            await asyncio.sleep(self.settings.poll_interval_s)  # polling interval
            _ok(await imap.noop(), "NOOP")

    # -- one mail ---------------------------------------------------------------------------

    async def _one(self, imap: aioimaplib.IMAP4, intake: Intake, validity: int, uid: int) -> None:
        folder = self.settings.failed_folder
        sized = _ok(await imap.uid("fetch", str(uid), "(RFC822.SIZE)"), "FETCH")
        size = next((int(m.group(1)) for line in sized.lines if (m := _SIZE.search(line))), 0)
        if size > self.settings.max_mail_bytes:
            detail = f"mail of {size} bytes, over {self.settings.max_mail_bytes} (not read)"
            await self._refuse(intake, Fault.TOO_LARGE, detail, None)
        else:
            fetched = _ok(await imap.uid("fetch", str(uid), "(BODY.PEEK[])"), "FETCH")
            raw = next((bytes(x) for x in fetched.lines if isinstance(x, bytearray)), b"")
            if await self._take(intake, raw):
                folder = self.settings.processed_folder
        await intake.save_checkpoint(self.key, Position(validity, uid, folder).encode())
        await self._move(imap, uid, folder)
        log.info("mailbox.mail", mailbox=self.key, uid=uid, folder=folder)
        async with self._changed:
            self.handled += 1
            self._changed.notify_all()

    async def _take(self, intake: Intake, raw: bytes) -> bool:
        """Whether the hub took the mail (False: it went to the dead letters)."""
        try:
            mail = parse_mail(raw, self.limits)
        except MailError as error:
            ref = await intake.audit("in", self.protocol, self.partner, raw, "message/rfc822")
            await self._refuse(intake, error.fault, error.detail, ref)
            return False
        wrong = identity.problem(mail, self.options)
        if wrong is not None:
            ref = await intake.audit("in", self.protocol, self.partner, raw, "message/rfc822")
            await self._refuse(intake, Fault.UNAUTHENTICATED, wrong, ref, stage="authenticate")
            return False
        try:
            answer = await intake.take(
                self.codec, self.partner, raw, "message/rfc822", wait=self.settings.wait_verdict
            )
        except Refusal as refusal:
            if refusal.stage == "unavailable":
                raise ImapError(f"hub unavailable: {refusal.reason}") from None  # retry later
            await intake.refuse(refusal, self.partner, self.protocol)
            return False
        # The mail codecs' fault answers carry an error status: the transaction refused the
        # mail (a reference to no open request, a step its state does not allow). The state
        # machine wrote the dead letter; the mail is filed under Failed for a person to see.
        return answer.status < 400

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
