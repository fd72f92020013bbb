"""The login throttle every channel shares (connectors.core.throttle), on its own clock."""

from __future__ import annotations

from connectors.core.throttle import PER_NAME, PER_SOURCE, WINDOW_S, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, source: str, name: str) -> bool:
    """One wrong guess; whether it was checked at all."""
    attempt = throttle.begin(source, name)
    attempt.end(False)
    return attempt.allowed


def test_a_source_gets_a_few_checks_per_window_then_none() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    assert [fail(throttle, "10.0.0.1", "olive") for _ in range(8)] == [True] * PER_SOURCE + [
        False
    ] * 3
    assert not throttle.begin("10.0.0.1", "someone else").allowed
    assert throttle.begin("10.0.0.2", "olive").allowed  # another address: not locked out
    clock.now += WINDOW_S + 1
    assert throttle.begin("10.0.0.1", "olive").allowed


def test_checks_under_way_count_before_their_verdict() -> None:
    throttle = LoginThrottle(clock=Clock())
    begun = [throttle.begin("10.0.0.1", "olive") for _ in range(20)]
    assert sum(a.allowed for a in begun) == PER_SOURCE
    for attempt in begun:
        attempt.end(None)  # no verdict (the users file could not be read): nothing counted
    assert throttle.begin("10.0.0.1", "olive").allowed


def test_one_name_from_many_addresses_is_limited_but_not_where_it_logged_in() -> None:
    throttle = LoginThrottle(clock=Clock())
    home = throttle.begin("10.9.9.9", "olive")
    home.end(True)
    sources = [f"10.0.{n // 200}.{n % 200}" for n in range(PER_NAME)]
    assert all(fail(throttle, source, "olive") for source in sources)
    assert not throttle.begin("10.5.5.5", "olive").allowed  # a new address: name limited
    assert throttle.begin("10.5.5.5", "rita").allowed  # other names are not
    assert throttle.begin("10.9.9.9", "olive").allowed  # where olive logged in before


def test_a_storm_is_reported_at_its_first_and_each_tenfold() -> None:
    throttle = LoginThrottle(clock=Clock())
    reported = []
    for _ in range(150):
        attempt = throttle.begin("10.0.0.1", "olive")
        attempt.end(False)
        if attempt.report:
            reported.append(attempt.burst)
    assert reported == [1, 10, 100]


def test_memory_is_bounded_and_aged_out_entries_go() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(3000):
        fail(throttle, f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", f"name{n}")
    clock.now += WINDOW_S + 1
    for _ in range(2048):
        throttle.begin("10.200.0.1", "x").end(True)
    assert len(throttle.sources) <= 1 and len(throttle.names) <= 1
