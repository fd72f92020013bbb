"""Staff actions on a request, one code path for the console, the JSON API and the command
line: reroute it (ask a given lender, skip one, ask the next, search the catalogues again),
cancel it, close a loan staff know is finished, note something on its timeline, send a party
a message, send its waiting steps again.

Each is a command on ill.control that the state machine decides on (`StaffCommand`,
`RouteCommand`, `Redeliver`); the verdict is read back from ill.replies. Where staff need to
know what became of a delivery (a redelivery, a message to a partner), the function waits for
the delivery's result on ill.events too, and reports it: "sent" means the partner took it.

Every function takes a `Link` (where the hub is, how long to wait) and returns an `Outcome`:
code 0 done, 1 no answer (the hub is not running?), 2 refused (or the delivery failed), and
what to tell the person who asked. Nothing here prints or parses arguments: that is the
CLI's part; nothing here renders HTML: the console's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from connectors.core.directory import Directory
from connectors.core.model import Event
from connectors.core.records import (
    Redeliver,
    RouteAction,
    RouteCommand,
    StaffAction,
    StaffCommand,
    VerdictOutcome,
)
from connectors.core.topics import Topic
from hub.kafka.followers import Verdicts, _Follower
from hub.kafka.producer import KafkaIO

# How long a delivery's result is waited for after the hub applied the command, at least:
# an outbound try includes its quick in-call retries and the partner's HTTP timeout.
DELIVERY_WAIT_S = 30.0
REDELIVER_AT_ONCE = 8  # a partner's requests sent again at once (redeliver_partner)
RESENT = re.compile(r"(\d+) deliveries sent again")


class Outcome(NamedTuple):
    """What came of a staff action: `code` 0 done, 1 no answer, 2 refused or failed; `text`
    says so for people. A tuple, so `code, text = await ...` reads as the commands' did."""

    code: int
    text: str

    @property
    def done(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Link:
    """Where the hub is and how long to wait for it. `carries`: per protocol, the steps its
    connector can send (`Codec.events_out`), to say before sending that a partner's protocol
    has no message for staff; empty: not checked (the delivery's result says it then)."""

    bootstrap: str
    wait_s: float = 10.0
    delivery_wait_s: float = DELIVERY_WAIT_S
    directory: Directory | None = None
    carries: Mapping[str, frozenset[Event]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Any, directory: Directory | None, bootstrap: str) -> Link:
        """The link of a configured hub: its reply timeout, its connectors' capabilities."""
        from hub.runtime import app as assembly

        registry = assembly.connectors(settings)
        return cls(
            bootstrap=bootstrap,
            wait_s=settings.reply_timeout_s,
            delivery_wait_s=max(DELIVERY_WAIT_S, settings.reply_timeout_s),
            directory=directory,
            carries={c.name: c.codec.events_out for c in registry},
        )

    def can_message(self, symbol: str | None, to: str = "lender") -> bool:
        """Whether staff can send `symbol`, the request's `to` (borrower or lender), a
        message in its protocol: a lender gets it as the borrower's notification, the
        borrower as the lender's. Unknown: yes, and the delivery's result will tell."""
        if self.directory is None or not self.carries or not symbol:
            return True
        partner = self.directory.partner(symbol)
        if partner is None or partner.protocol not in self.carries:
            return True
        return NOTE_TO[to] in self.carries[partner.protocol]


# The notification a message from staff travels as, by the side it goes to.
NOTE_TO = {"borrower": Event.LENDER_NOTE, "lender": Event.BORROWER_NOTE}


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


# -- routing -------------------------------------------------------------------------------


async def route(
    link: Link, transaction_id: str, action: RouteAction, lender: str | None, by: str
) -> Outcome:
    """`rshub route TXN --lender SYM | --skip SYM | --next | --restart`."""
    order = RouteCommand(
        command_id=_id("route"),
        transaction_id=transaction_id,
        action=action,
        lender=lender,
        by=by,
    )
    return await send(link, order)


async def ask_lender(link: Link, transaction_id: str, lender: str, by: str) -> Outcome:
    """Send the request to `lender` now (the lender holding it gets a Cancel)."""
    return await route(link, transaction_id, RouteAction.LENDER, lender, by)


async def skip_lender(link: Link, transaction_id: str, lender: str, by: str) -> Outcome:
    """Never ask `lender` for this request; if it holds it, take it back, ask the next."""
    return await route(link, transaction_id, RouteAction.SKIP, lender, by)


async def next_lender(link: Link, transaction_id: str, by: str) -> Outcome:
    """Take the request back from the lender holding it and ask the next of the rota (the
    lender may be asked again in a later round; skip it to bar it)."""
    return await route(link, transaction_id, RouteAction.NEXT, None, by)


async def restart(link: Link, transaction_id: str, by: str) -> Outcome:
    """Search the catalogues again and rebuild the rota; every lender may be asked again."""
    return await route(link, transaction_id, RouteAction.RESTART, None, by)


# -- the request ---------------------------------------------------------------------------


async def cancel(link: Link, transaction_id: str, reason: str, by: str) -> Outcome:
    """Cancel the request while it looks for a lender: the lender holding it gets one Cancel
    in its protocol, the borrower hears it is cancelled."""
    return await _staff(link, transaction_id, StaffAction.CANCEL, reason, None, by)


async def close(link: Link, transaction_id: str, reason: str, by: str) -> Outcome:
    """Close a loan staff know is finished (returned outside the system, say): LoanCompleted,
    with the reason on the timeline. No partner is told."""
    return await _staff(link, transaction_id, StaffAction.CLOSE, reason, None, by)


async def note(link: Link, transaction_id: str, text: str, by: str) -> Outcome:
    """A note on the request's timeline; no partner hears of it."""
    return await _staff(link, transaction_id, StaffAction.NOTE, text, None, by)


async def message(
    link: Link, transaction_id: str, to: str, text: str, by: str, recipient: str | None = None
) -> Outcome:
    """Send the borrower or the lender (`to`) a message, as a notification in its protocol;
    waits for the delivery and says whether the partner took it. `recipient`: the partner's
    symbol when the caller knows it, to refuse at once when its protocol has no message."""
    if to not in ("borrower", "lender"):
        return Outcome(2, f"a message goes to the borrower or the lender, not {to!r}")
    if not link.can_message(recipient, to):
        assert link.directory is not None and recipient is not None
        partner = link.directory.partner(recipient)
        protocol = partner.protocol if partner else "?"
        return Outcome(2, f"{recipient}'s protocol ({protocol}) has no message for staff")
    return await _staff(link, transaction_id, StaffAction.MESSAGE, text, to, by, delivered=True)


async def _staff(
    link: Link,
    transaction_id: str,
    action: StaffAction,
    text: str,
    to: str | None,
    by: str,
    delivered: bool = False,
) -> Outcome:
    order = StaffCommand(
        command_id=_id(f"staff-{action.value}"),
        transaction_id=transaction_id,
        action=action,
        text=text.strip()[:2000],
        to=to,  # the model refuses any other than borrower and lender
        by=by,
    )
    if not delivered:
        return await send(link, order)
    watch = _Lines(link.bootstrap, transaction_id)
    await watch.start()
    try:
        said = await send(link, order)
        if not said.done:
            return said
        ours = f"{order.ref}:"
        results = await watch.deliveries(lambda line: line["event_id"].startswith(ours), 1, link)
    finally:
        await watch.stop()
    return _reported(said, results, link)


# -- deliveries ----------------------------------------------------------------------------


async def redeliver(
    link: Link, transaction_id: str, partner: str | None, by: str, wait: bool = True
) -> Outcome:
    """Send the request's waiting steps again now (to `partner`, or to all); with `wait`,
    report after each was tried: sent, or failed and why."""
    order = Redeliver(
        command_id=_id("redeliver"), transaction_id=transaction_id, partner=partner, by=by
    )
    if not wait:
        return await send(link, order)
    watch = _Lines(link.bootstrap, transaction_id)
    await watch.start()
    try:
        said = await send(link, order)
        if not said.done:
            return said
        # The engine's own line says how many it sent; their results follow it (one key,
        # one partition: in order).
        ours = f"{order.ref}:"
        line = await watch.first(lambda line: line["event_id"].startswith(ours), link.wait_s)
        match = RESENT.search(line["detail"] if line else "")
        count = int(match.group(1)) if match else 0
        if count == 0:
            return Outcome(0, f"{transaction_id}: nothing was sent again")
        after = watch.position(line)
        results = await watch.deliveries(lambda entry: watch.position(entry) > after, count, link)
    finally:
        await watch.stop()
    return _reported(said, results, link, count)


async def redeliver_partner(
    link: Link, partner: str, transaction_ids: list[str], by: str
) -> Outcome:
    """Send every step waiting for `partner` again now, request by request, and report
    what came of each (the requests are those `hub.ops.deliveries.waiting` lists for it)."""
    if not transaction_ids:
        return Outcome(0, f"nothing waits for {partner}")
    # Each redelivery holds its own Kafka clients while it waits for its result: a few at a
    # time, so a partner back after a day's outage does not open thousands in the hub.
    gate = asyncio.Semaphore(REDELIVER_AT_ONCE)

    async def one(txn: str) -> Outcome:
        async with gate:
            return await redeliver(link, txn, partner, by)

    outcomes = await asyncio.gather(*(one(txn) for txn in dict.fromkeys(transaction_ids)))
    failed = [o for o in outcomes if not o.done]
    text = "; ".join(o.text for o in outcomes)
    return Outcome(2 if failed else 0, text)


def _reported(said: Outcome, results: list[dict[str, Any]], link: Link, count: int = 1) -> Outcome:
    if not results:
        return Outcome(
            1,
            f"{said.text}; no delivery result within {link.delivery_wait_s:g} s "
            "(it is still being tried: see the timeline)",
        )
    parts, failed = [], False
    for line in results:
        event, _, outcome = str(line.get("event") or "").partition(":")
        to = line.get("sender") or "?"
        if outcome == "sent":
            parts.append(f"{event} to {to}: sent")
            continue
        failed = True
        if outcome == "not_applicable":
            parts.append(f"{event} to {to}: its protocol has no form for it, nothing was sent")
        else:
            parts.append(f"{event} to {to}: {outcome or 'failed'}: {line.get('detail') or ''}")
    if len(results) < count:
        failed = True
        parts.append(f"{count - len(results)} not tried within {link.delivery_wait_s:g} s")
    return Outcome(2 if failed else 0, "; ".join(parts))


# -- talking to the state machine ------------------------------------------------------------


async def send(link: Link, order: RouteCommand | Redeliver | StaffCommand) -> Outcome:
    """Send a staff command to ill.control and wait for the state machine's verdict."""
    verdicts = Verdicts(link.bootstrap)
    await verdicts.start()
    kafka = KafkaIO(link.bootstrap)
    try:
        await kafka.start()  # inside: a broker that fails it must not leave `verdicts` open
        answer = verdicts.expect(order.ref)
        await kafka.send(Topic.CONTROL, order.transaction_id, order.model_dump_json().encode())
        try:
            verdict = await asyncio.wait_for(answer, link.wait_s)
        except TimeoutError:
            return Outcome(1, f"no answer from the hub within {link.wait_s:g} s (is it running?)")
    finally:
        await kafka.stop()
        await verdicts.stop()
    if verdict.outcome is VerdictOutcome.REFUSED:
        return Outcome(2, f"refused: {verdict.error}")
    return Outcome(0, f"done: {order.transaction_id} is now {verdict.state}")


Wanted = Callable[[dict[str, Any]], bool]  # picks lines of ill.events


class _Lines(_Follower):
    """The lines the state machine writes on ill.events for one transaction from now on:
    started before a command is sent, so nothing it causes is missed."""

    topic = Topic.EVENTS
    from_beginning = False
    spacing_s = 0.0  # someone is waiting for the answer

    def __init__(self, bootstrap_servers: str, transaction_id: str) -> None:
        super().__init__(bootstrap_servers)
        self.transaction_id = transaction_id
        self.lines: list[dict[str, Any]] = []
        self.news = asyncio.Event()  # set by each line read; a waiter clears it and looks

    def handle(self, key: str, value: bytes | None) -> None:
        if key != self.transaction_id or value is None:
            return
        self.lines.append(json.loads(value))
        self.news.set()

    def position(self, line: dict[str, Any] | None) -> int:
        return -1 if line is None else next(i for i, x in enumerate(self.lines) if x is line)

    async def _until(self, enough: Callable[[], bool], timeout_s: float) -> None:
        async def wait() -> None:
            # Lines are read on this event loop: none comes between the look and the clear.
            while not enough():
                self.news.clear()
                await self.news.wait()

        with contextlib.suppress(TimeoutError):  # what came in time is the answer
            await asyncio.wait_for(wait(), timeout_s)

    async def first(self, wanted: Wanted, timeout_s: float) -> dict[str, Any] | None:
        def found() -> dict[str, Any] | None:
            return next((line for line in self.lines if wanted(line)), None)

        await self._until(lambda: found() is not None, timeout_s)
        return found()

    async def deliveries(self, wanted: Wanted, count: int, link: Link) -> list[dict[str, Any]]:
        """Up to `count` delivery results among the lines `wanted` picks, waiting at most the
        link's delivery wait for them."""

        def found() -> list[dict[str, Any]]:
            return [x for x in self.lines if x.get("kind") == "delivery" and wanted(x)][:count]

        await self._until(lambda: len(found()) >= count, link.delivery_wait_s)
        return found()


@dataclass(frozen=True)
class Staff:
    """The actions with their link bound, for a caller that keeps one (the console). Each
    method is the function of the same name."""

    link: Link

    def can_message(self, symbol: str | None, to: str = "lender") -> bool:
        return self.link.can_message(symbol, to)

    async def route(
        self, transaction_id: str, action: RouteAction, lender: str | None, by: str
    ) -> Outcome:
        return await route(self.link, transaction_id, action, lender, by)

    async def cancel(self, transaction_id: str, reason: str, by: str) -> Outcome:
        return await cancel(self.link, transaction_id, reason, by)

    async def close(self, transaction_id: str, reason: str, by: str) -> Outcome:
        return await close(self.link, transaction_id, reason, by)

    async def note(self, transaction_id: str, text: str, by: str) -> Outcome:
        return await note(self.link, transaction_id, text, by)

    async def message(
        self, transaction_id: str, to: str, text: str, by: str, recipient: str | None = None
    ) -> Outcome:
        return await message(self.link, transaction_id, to, text, by, recipient)

    async def redeliver(self, transaction_id: str, partner: str | None, by: str) -> Outcome:
        return await redeliver(self.link, transaction_id, partner, by)

    async def redeliver_partner(self, partner: str, transaction_ids: list[str], by: str) -> Outcome:
        return await redeliver_partner(self.link, partner, transaction_ids, by)
