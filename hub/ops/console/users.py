"""The console's users: a file named by RSHUB_CONSOLE_USERS_FILE (never in the repository),
one user a line:

    NAME ROLE scrypt$N$r$p$SALT$HASH

ROLE is `operator` (may redeliver and replay dead letters) or `reader` (may look). Passwords
are hashed with scrypt (hashlib, OpenSSL's implementation) and a random salt per user; the
file is written by `rshub console-user add` with mode 0600, never holds a password, and is
read again when it changes, so adding a user needs no restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.ops import private_file

ROLES = ("operator", "reader")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10
# scrypt's cost: 2**15 * 8 * 128 bytes = 32 MiB and some tens of ms a check (OWASP's
# minimum is N=2**17 with r=8 at 128 MiB; a console with a few operators affords less memory
# per login attempt, and logins are throttled).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
HASH_BYTES = 32


class UsersError(ValueError):
    """The users file or a user given is not acceptable; the message says what."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hashed: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=MAXMEM,
        dklen=HASH_BYTES,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, hashed: str) -> bool:
    """Whether the password is the one hashed (constant-time comparison); False for a hash
    this module did not write."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        found = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


# Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = hash_password(secrets.token_urlsafe(16))


def parse(text: str, source: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not NAME.match(parts[0]) or parts[1] not in ROLES:
            raise UsersError(f"{source} line {number}: expected NAME ROLE HASH")
        users[parts[0]] = User(parts[0], parts[1], parts[2])
    return users


def render(users: dict[str, User]) -> str:
    lines = ["# rshub console users: NAME ROLE HASH (written by `rshub console-user`)"]
    lines += [f"{u.name} {u.role} {u.hashed}" for u in sorted(users.values(), key=lambda u: u.name)]
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, User]:
    """The users in the file; none if there is no file."""
    try:
        text = private_file.read(path)
    except OSError as error:
        raise UsersError(f"cannot read {path}: {error.strerror}") from None
    return parse(text, str(path)) if text is not None else {}


def save(path: Path, users: dict[str, User]) -> None:
    """Atomically, readable by its owner only."""
    private_file.write(path, render(users))


def add(path: Path, name: str, role: str, password: str) -> bool:
    """Adds the user or sets a new password and role; whether it was new."""
    if not NAME.match(name):
        raise UsersError(f"{name!r}: a name is 1-64 letters, digits or _ . @ -")
    if role not in ROLES:
        raise UsersError(f"{role!r}: the role is one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"the password must have at least {MIN_PASSWORD} characters")
    users = load(path)
    new = name not in users
    users[name] = User(name, role, hash_password(password))
    save(path, users)
    return new


def remove(path: Path, name: str) -> bool:
    users = load(path)
    if users.pop(name, None) is None:
        return False
    save(path, users)
    return True


class UserFile:
    """The users as the file says now (read again when its modification time or size
    changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = private_file.Watched(path, load)

    def users(self) -> dict[str, User]:
        return self._file.current()

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs (blocks for scrypt: call it off the loop)."""
        user = self.users().get(name)
        if user is None:
            check_password(password, _DUMMY)
            return None
        return user if check_password(password, user.hashed) else None
