"""A mailbox served over IMAP, in memory, for simulated mail partners (`rshub peer BL
--mailbox`): the hub's mail listener reads it as it reads Dovecot, so trying a mail partner
needs no mail server at all.

It speaks the part of IMAP4rev1 (RFC 3501) the hub's listener uses, and only that: LOGIN,
CAPABILITY, CREATE, SELECT, UID SEARCH UID <set>, UID FETCH <uid> (RFC822.SIZE) or
(BODY.PEEK[]), UID MOVE (RFC 6851), IDLE (RFC 2177), NOOP and LOGOUT, and APPEND, with which
the simulated partner (`rshub peer send`) delivers; anything else is answered BAD. One user,
plain text (loopback only: no STARTTLS), mail kept until the process ends. It is no mail
server: nothing here is meant for more than one test or one person.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from dataclasses import dataclass, field

CAPABILITIES = "IMAP4rev1 IDLE MOVE UIDPLUS"
_SET = re.compile(r"^(\d+)(?::(\d+|\*))?$")


@dataclass
class Folder:
    mails: dict[int, bytes] = field(default_factory=dict)  # uid -> mail, in uid order
    next_uid: int = 1

    def add(self, raw: bytes) -> int:
        uid, self.next_uid = self.next_uid, self.next_uid + 1
        self.mails[uid] = raw
        return uid

    def sequence(self, uid: int) -> int:
        return list(self.mails).index(uid) + 1


@dataclass
class Mailbox:
    """One user's mailbox (INBOX and the folders the client creates) at host:port."""

    user: str
    password: str
    host: str = "127.0.0.1"
    port: int = 143
    folders: dict[str, Folder] = field(default_factory=lambda: {"INBOX": Folder()})
    # Fixed for the life of the mailbox, new for each (RFC 3501 2.3.1.1): a restarted peer's
    # empty mailbox must not be taken for the old one, whose UIDs the hub has read up to.
    # Milliseconds, within IMAP's 32-bit non-zero number.
    uidvalidity: int = field(default_factory=lambda: int(time.time() * 1000) % (2**32 - 1) + 1)
    _server: asyncio.Server | None = None
    # Set (and replaced) at each delivery: every IDLE session waits on the one it saw.
    arrival: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def endpoint(self) -> str:
        return f"imap://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """A mail arrives (as by LMTP): stored, and every IDLE session told."""
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # IMAP's line ends
        self.folders.setdefault(folder, Folder()).add(crlf)
        arrived, self.arrival = self.arrival, asyncio.Event()
        arrived.set()

    # -- one client ---------------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()


class _Session:
    def __init__(
        self, box: Mailbox, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.box, self.reader, self.writer = box, reader, writer
        self.logged_in = False
        self.selected: Folder | None = None

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            self.writer.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")

    async def run(self) -> None:
        self.send(f"* OK [CAPABILITY {CAPABILITIES}] rshub simulated mailbox ready")
        while line := await self.reader.readline():
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            try:
                tag, *words = shlex.split(text)
            except ValueError:
                self.send("* BAD unreadable command")
                continue
            if not words:
                self.send(f"{tag} BAD no command")
                continue
            if await self.command(tag, words[0].upper(), words[1:]):
                break
            await self.writer.drain()
        await self.writer.drain()

    async def command(self, tag: str, name: str, args: list[str]) -> bool:
        """Answer one command; True when the session ends."""
        if name == "CAPABILITY":
            self.send(f"* CAPABILITY {CAPABILITIES}", f"{tag} OK CAPABILITY completed")
        elif name == "NOOP":
            self.send(f"{tag} OK NOOP completed")
        elif name == "LOGOUT":
            self.send("* BYE logging out", f"{tag} OK LOGOUT completed")
            return True
        elif name == "LOGIN":
            if args[:2] == [self.box.user, self.box.password]:
                self.logged_in = True
                self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] Logged in")
            else:
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed")
        elif not self.logged_in:
            self.send(f"{tag} BAD log in first")
        elif name == "CREATE" and args:
            if args[0] in self.box.folders:
                self.send(f"{tag} NO [ALREADYEXISTS] Mailbox already exists")
            else:
                self.box.folders[args[0]] = Folder()
                self.send(f"{tag} OK CREATE completed")
        elif name == "APPEND" and args:
            await self.append(tag, args[0], args[-1])
        elif name == "SELECT" and args:
            self.select(tag, args[0])
        elif name == "IDLE":
            await self.idle(tag)
        elif name == "UID" and len(args) >= 2 and self.selected is not None:
            self.uid(tag, args[0].upper(), args[1:])
        else:
            self.send(f"{tag} BAD {name} is not served here")
        return False

    def select(self, tag: str, name: str) -> None:
        folder = self.box.folders.get(name)
        if folder is None:
            self.send(f"{tag} NO [NONEXISTENT] no such mailbox")
            return
        self.selected = folder
        self.send(
            r"* FLAGS (\Seen \Deleted)",
            f"* {len(folder.mails)} EXISTS",
            "* 0 RECENT",
            f"* OK [UIDVALIDITY {self.box.uidvalidity}] UIDs valid",
            f"* OK [UIDNEXT {folder.next_uid}] Predicted next UID",
            f"{tag} OK [READ-WRITE] SELECT completed",
        )

    def uids(self, spec: str) -> list[int]:
        """The UIDs of a set `a`, `a:b` or `a:*` present in the selected folder."""
        assert self.selected is not None
        match = _SET.match(spec)
        if match is None:
            return []
        have = list(self.selected.mails)
        low = int(match.group(1))
        high_word = match.group(2)
        if high_word is None:
            return [low] if low in self.selected.mails else []
        # RFC 3501: `*` is the largest UID in use, so `n:*` holds it even when it is below n.
        high = (have[-1] if have else 0) if high_word == "*" else int(high_word)
        low, high = min(low, high), max(low, high)
        return [uid for uid in have if low <= uid <= high]

    def uid(self, tag: str, verb: str, args: list[str]) -> None:
        folder = self.selected
        assert folder is not None
        if verb == "SEARCH":
            spec = args[1] if args[0].upper() == "UID" and len(args) > 1 else args[0]
            found = " ".join(str(uid) for uid in self.uids(spec))
            self.send(f"* SEARCH {found}".rstrip(), f"{tag} OK SEARCH completed")
        elif verb == "FETCH" and len(args) >= 2:
            what = " ".join(args[1:]).upper()
            for uid in self.uids(args[0]):
                raw, seq = folder.mails[uid], folder.sequence(uid)
                if "RFC822.SIZE" in what:
                    self.send(f"* {seq} FETCH (UID {uid} RFC822.SIZE {len(raw)})")
                if "BODY" in what:
                    self.send(f"* {seq} FETCH (UID {uid} BODY[] {{{len(raw)}}}".encode() + b"\r\n")
                    self.send(raw + b")\r\n")
            self.send(f"{tag} OK FETCH completed")
        elif verb == "MOVE" and len(args) >= 2:
            target = self.box.folders.get(args[1])
            if target is None:
                self.send(f"{tag} NO [TRYCREATE] no such mailbox")
                return
            for uid in self.uids(args[0]):
                seq = folder.sequence(uid)
                new = target.add(folder.mails.pop(uid))
                self.send(f"* OK [COPYUID {self.box.uidvalidity} {uid} {new}] moved")
                self.send(f"* {seq} EXPUNGE")
            self.send(f"{tag} OK MOVE completed")
        else:
            self.send(f"{tag} BAD UID {verb} is not served here")

    async def append(self, tag: str, folder: str, literal: str) -> None:
        """APPEND folder [flags] [date] {n}: the n bytes that follow are a mail."""
        size = re.fullmatch(r"\{(\d+)\+?\}", literal)
        if size is None or folder not in self.box.folders:
            self.send(f"{tag} NO [TRYCREATE] APPEND needs an existing folder and a literal")
            return
        if not literal.endswith("+}"):  # a synchronising literal waits for the go-ahead
            self.send("+ Ready for literal data")
            await self.writer.drain()
        raw = await self.reader.readexactly(int(size.group(1)))
        await self.reader.readline()  # the end of the command line
        await self.box.deliver(raw, folder)
        uid = self.box.folders[folder].next_uid - 1
        self.send(f"{tag} OK [APPENDUID {self.box.uidvalidity} {uid}] APPEND completed")

    async def idle(self, tag: str) -> None:
        """Wait for DONE, telling the client of each mail that arrives meanwhile."""
        self.send("+ idling")
        await self.writer.drain()
        done = asyncio.ensure_future(self.reader.readline())
        try:
            while not done.done():
                arrived = asyncio.ensure_future(self.box.arrival.wait())
                await asyncio.wait({done, arrived}, return_when=asyncio.FIRST_COMPLETED)
                if arrived.done() and self.selected is not None:
                    self.send(f"* {len(self.selected.mails)} EXISTS")
                    await self.writer.drain()
                arrived.cancel()
        finally:
            done.cancel()
        self.send(f"{tag} OK IDLE terminated")
