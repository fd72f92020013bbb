"""The API's clients: a file named by RSHUB_API_TOKENS_FILE (default beside the console's
users, never in the repository), one client a line:

    NAME ID PARTNER SCOPES sha256$HASH

A token is `rshub_<ID>_<SECRET>`: ID (public, 12 hex digits) finds the line without trying
every hash, SECRET is 32 random bytes. Only the SHA-256 of the whole token is stored: a token
is random and long, so a slow password hash (the console's scrypt) would add nothing but time
to every call; the comparison is constant-time. PARTNER is a directory symbol (a library's
token: it sees and acts on that library's requests only) or `-` (a staff token). The file is
written by `rshub api-token add` with mode 0600 and read again when it changes, so adding or
removing a client needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.ops import private_file

# What a library's token may do with its own requests.
LIBRARY_SCOPES = ("read", "request", "act")
# Staff scopes: `read` every library's requests, and the console operators' actions
# (`manage`: cancel, close, note, message).
# (No `acknowledge`: the hub has no operator action that clears attention yet.)
STAFF_SCOPES = ("read", "redeliver", "replay", "reroute", "manage")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN = re.compile(r"^rshub_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NO_PARTNER = "-"


class TokensError(ValueError):
    """The tokens file or a client given is not acceptable; the message says what."""


@dataclass(frozen=True)
class Client:
    name: str
    id: str
    partner: str | None  # None: a staff client
    scopes: frozenset[str]
    hashed: str

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def digest(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def parse(text: str, source: str = "tokens file") -> dict[str, Client]:
    """Clients by id."""
    clients: dict[str, Client] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 5 or not NAME.match(parts[0]) or not parts[4].startswith("sha256$"):
            raise TokensError(f"{source} line {number}: expected NAME ID PARTNER SCOPES HASH")
        name, ident, partner, scopes, hashed = parts
        owner = None if partner == NO_PARTNER else partner
        clients[ident] = Client(name, ident, owner, frozenset(scopes.split(",")), hashed)
    return clients


def render(clients: dict[str, Client]) -> str:
    lines = ["# rshub API clients: NAME ID PARTNER SCOPES HASH (written by `rshub api-token`)"]
    for c in sorted(clients.values(), key=lambda c: c.name):
        scopes = ",".join(sorted(c.scopes))
        lines.append(f"{c.name} {c.id} {c.partner or NO_PARTNER} {scopes} {c.hashed}")
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, Client]:
    try:
        text = private_file.read(path)
    except OSError as error:
        raise TokensError(f"cannot read {path}: {error.strerror}") from None
    return parse(text, str(path)) if text is not None else {}


def save(path: Path, clients: dict[str, Client]) -> None:
    """Atomically, readable by its owner only."""
    private_file.write(path, render(clients))


def check_scopes(partner: str | None, scopes: list[str]) -> frozenset[str]:
    allowed = LIBRARY_SCOPES if partner else STAFF_SCOPES
    wrong = [s for s in scopes if s not in allowed]
    if wrong or not scopes:
        kind = f"a library's token (--partner {partner})" if partner else "a staff token"
        raise TokensError(f"scopes of {kind} are among {', '.join(allowed)}; not {wrong or '[]'}")
    return frozenset(scopes)


def add(path: Path, name: str, partner: str | None, scopes: list[str]) -> str:
    """Adds a client (replacing one of the same name and its token); returns its token, the
    only time it is shown."""
    if not NAME.match(name):
        raise TokensError(f"{name!r}: a name is 1-64 letters, digits or _ . @ -")
    granted = check_scopes(partner, scopes)
    clients = {i: c for i, c in load(path).items() if c.name != name}
    ident = secrets.token_hex(6)
    token = f"rshub_{ident}_{secrets.token_urlsafe(32)}"
    clients[ident] = Client(name, ident, partner, granted, digest(token))
    save(path, clients)
    return token


def remove(path: Path, name: str) -> bool:
    clients = load(path)
    kept = {i: c for i, c in clients.items() if c.name != name}
    if len(kept) == len(clients):
        return False
    save(path, kept)
    return True


# Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_DUMMY = digest("rshub_000000000000_" + "x" * 43)


class TokenFile:
    """The clients as the file says now (read again when its modification time or size
    changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = private_file.Watched(path, load)

    def clients(self) -> dict[str, Client]:
        return self._file.current()

    def authenticate(self, token: str) -> Client | None:
        found = TOKEN.match(token)
        client = self.clients().get(found.group(1)) if found else None
        expected = client.hashed if client else _DUMMY
        same = hmac.compare_digest(digest(token).encode(), expected.encode())
        return client if (client is not None and same) else None
