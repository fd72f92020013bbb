"""Login guessing, limited the same way on every channel that checks a name and a secret
(SLNP's SLNPServerInit, the console's login form, any API to come).

Per source address: the failed logins of the last `window_s` plus the checks under way may
not exceed `per_source`; beyond that the source is refused, without a check, until its oldest
failure ages out. A check counts from the moment it begins, so a hundred concurrent guesses
from one address get `per_source` checks, not a hundred, and reconnecting changes nothing.

Per name: the same over all sources, with the larger `per_name`, so that guessing one name
from many addresses is limited too. It does not lock the real user out: one address alone
cannot reach it (`per_source` < `per_name`), and an address that has logged in as that name
within `trusted_s` is not held to it. An attacker at address A locks only A.

A storm is a few lines, not one per guess: failures and refusals are counted per source, and
`Attempt.report` is true for the first of a burst and then each tenfold (10th, 100th, ...),
so the caller logs and dead-letters those with the count.

State is in memory, per port and worker, bounded (the oldest entries go first).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PER_SOURCE = 5
PER_NAME = 20
WINDOW_S = 300.0
TRUSTED_S = 30 * 86400.0
MAX_TRACKED = 100_000  # sources, names and trusted pairs each; a memory bound, not a policy
SWEEP_EVERY = 1024  # attempts between two sweeps of aged-out entries
NAME_CHARS = 128  # a name is kept to this length (anyone may send any name)


@dataclass
class _Tally:
    failures: deque[float] = field(default_factory=deque)
    pending: int = 0
    burst: int = 0  # failures and refusals since this tally was last empty

    def load(self, now: float, window_s: float) -> int:
        while self.failures and now - self.failures[0] > window_s:
            self.failures.popleft()
        if not self.failures and not self.pending:
            self.burst = 0
        return len(self.failures) + self.pending


@dataclass
class Attempt:
    """One login: `allowed` (check the secret, then call `end`) or refused now."""

    throttle: LoginThrottle
    source: str
    name: str
    allowed: bool
    burst: int = 0
    ended: bool = False

    @property
    def report(self) -> bool:
        """Whether to log and dead-letter this failure or refusal (the first of a burst,
        then each tenfold); the others are only counted in `burst`."""
        return self.burst > 0 and _power_of_ten(self.burst)

    def end(self, ok: bool | None) -> None:
        """The check's verdict: True logged in, False a wrong name or secret, None no
        verdict (the check itself failed; nothing is counted against anyone)."""
        if self.ended or not self.allowed:
            return
        self.ended = True
        self.throttle._end(self, ok)


def _power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1


class LoginThrottle:
    def __init__(
        self,
        *,
        per_source: int = PER_SOURCE,
        per_name: int = PER_NAME,
        window_s: float = WINDOW_S,
        trusted_s: float = TRUSTED_S,
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`delay_s`: how long the caller holds a failed or refused login before answering
        (with the per-source connection cap, it slows a reconnecting guesser further)."""
        self.per_source, self.per_name = per_source, per_name
        self.window_s, self.trusted_s, self.delay_s = window_s, trusted_s, delay_s
        self.clock = clock
        self.sources: dict[str, _Tally] = {}
        self.names: dict[str, _Tally] = {}
        self.trusted: dict[tuple[str, str], float] = {}
        self._begun = 0

    def begin(self, source: str, name: str) -> Attempt:
        """An attempt to log in as `name` from `source`, counted from now."""
        now = self.clock()
        name = name[:NAME_CHARS]
        self._sweep(now)
        by_source = _tally(self.sources, source)
        by_name = self.names.get(name)
        trusted = now - self.trusted.get((name, source), -self.trusted_s - 1) <= self.trusted_s
        if by_source.load(now, self.window_s) >= self.per_source or (
            not trusted
            and by_name is not None
            and by_name.load(now, self.window_s) >= self.per_name
        ):
            by_source.burst += 1
            return Attempt(self, source, name, False, by_source.burst)
        by_source.pending += 1
        (by_name or _tally(self.names, name)).pending += 1
        return Attempt(self, source, name, True)

    def blocked(self, source: str) -> bool:
        """Whether a login from `source` would be refused now whatever the name."""
        tally = self.sources.get(source)
        return tally is not None and tally.load(self.clock(), self.window_s) >= self.per_source

    def _end(self, attempt: Attempt, ok: bool | None) -> None:
        now = self.clock()
        by_source = _tally(self.sources, attempt.source)
        by_name = _tally(self.names, attempt.name)
        # (max: an entry dropped by the memory bound meanwhile comes back at nought)
        by_source.pending = max(0, by_source.pending - 1)
        by_name.pending = max(0, by_name.pending - 1)
        if ok:
            self.trusted.pop((attempt.name, attempt.source), None)
            self.trusted[attempt.name, attempt.source] = now
            _bound(self.trusted)
        elif ok is False:
            by_source.failures.append(now)
            by_name.failures.append(now)
            by_source.burst += 1
            attempt.burst = by_source.burst
        for tallies, key in ((self.sources, attempt.source), (self.names, attempt.name)):
            if not tallies[key].load(now, self.window_s):
                del tallies[key]

    def _sweep(self, now: float) -> None:
        """Forgets, now and then, the sources and names whose failures have all aged out."""
        self._begun += 1
        if self._begun % SWEEP_EVERY:
            return
        for tallies in (self.sources, self.names):
            for key in [k for k, tally in tallies.items() if not tally.load(now, self.window_s)]:
                del tallies[key]


def _tally(tallies: dict[str, _Tally], key: str) -> _Tally:
    found = tallies.get(key)
    if found is None:
        found = tallies[key] = _Tally()
        _bound(tallies)
    return found


def _bound(entries: dict[str, _Tally] | dict[tuple[str, str], float]) -> None:
    """Drops the oldest entries beyond MAX_TRACKED (dicts keep insertion order)."""
    while len(entries) > MAX_TRACKED:
        del entries[next(iter(entries))]  # type: ignore[arg-type]
