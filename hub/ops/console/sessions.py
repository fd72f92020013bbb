"""Console sessions and CSRF tokens, kept in this worker's memory (login throttling is the
shared `connectors.core.throttle.LoginThrottle`).

A session is a random id in an HttpOnly, SameSite=Strict cookie; the server keeps who it is,
the role, a CSRF token and when it was last used. Every form that changes something carries
the session's CSRF token, and the server compares it in constant time (the SameSite cookie
alone would do in current browsers; the token also covers older ones). The login form, which
has no session yet, uses a double-submit token: a random value both in a cookie of its own and
in the form. A new session id is issued at login (no fixation), and logout forgets it. A
restart of the worker logs everybody out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SESSION_COOKIE = "rshub_console"
LOGIN_COOKIE = "rshub_console_login"
MAX_SESSIONS = 10_000  # the oldest is dropped beyond this (a memory bound, not a policy)


def token() -> str:
    return secrets.token_urlsafe(32)


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; never equal when either is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    user: str
    role: str
    csrf: str = field(default_factory=token)
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    # What the last actions said, and whether each was done (False: refused, failed).
    flash: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class Sessions:
    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self.by_id: dict[str, Session] = {}

    def open(self, user: str, role: str) -> tuple[str, Session]:
        now = self.clock()
        self._expire(now)
        while len(self.by_id) >= MAX_SESSIONS:
            del self.by_id[next(iter(self.by_id))]
        sid = token()
        session = Session(user, role, created=now, seen=now)
        self.by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self.by_id.get(sid)
        now = self.clock()
        if session is None:
            return None
        if now - session.seen > self.idle_s:
            del self.by_id[sid]
            return None
        session.seen = now
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self.by_id.pop(sid, None)

    def close_user(self, user: str) -> None:
        for sid in [s for s, session in self.by_id.items() if session.user == user]:
            del self.by_id[sid]

    def _expire(self, now: float) -> None:
        for sid in [s for s, session in self.by_id.items() if now - session.seen > self.idle_s]:
            del self.by_id[sid]
