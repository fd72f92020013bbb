"""`rshub peer`: play partner libraries without writing Python.

`rshub peer SYMBOL ... --behaviour lend` runs the simulated library of each symbol, as the
directory describes it (protocol, the endpoint it listens at, its agency id, its secret read
from where the directory says), prints each message the hub sends it, and answers as told:

- lend: a request is loaned at once; a returned item is checked in; renewals granted,
  cancellations agreed;
- copy: a request is answered with a copy; unfill: with Unfilled (not on shelf);
- slow: lends after --delay seconds; hang: takes messages and never answers (the hub's
  delivery times out); down: does not listen at all;
- manual: prints only (step it with `rshub peer send`).

With every answering behaviour a library that borrows acknowledges a loan (Received) and
returns it (ShippedReturn) at once, so one `rshub peer send NORTH request --to SOUTH` is a
whole loan.

`rshub peer send SYMBOL STEP` sends one step from a library (starting from the sample
message of the step, connectors.samples, changed by the options); it needs no running peer.

The British Library (ARTEmail) is the SMTP server of the hub's ARTEmail connector and writes
its BLDSS reports into the hub's mailbox for it (connectors/artemail/simulator.py); it
answers orders only, since nothing else goes to it by mail.

The NCIP relay's parties are not libraries of the loan's lifecycle: a member is an NCIP
responder answering each relayed call inside its HTTP exchange (lend: answered; unfill: a
Problem; slow, hang, down as above), and a broker only calls, by hand: `rshub peer send
RELAIS check-out-item --to SOUTH-CIRC`, or `loan --to BORROWING --to LENDING` for the six
calls of a broker's loan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors import samples
from connectors.core.directory import Directory, DirectoryError, Partner
from connectors.core.model import Bibliographic, Event, Message, Reason, RequestFormat, ServiceType
from connectors.ncip import codec as ncip
from connectors.ncip_relay import simulator as relay
from connectors.ncip_relay import tables as relay_tables
from connectors.simulator import SIMULATED, AnyLibrary, HubAddress, library_for
from hub.runtime.settings import Settings, SettingsError

BEHAVIOURS = ("lend", "copy", "unfill", "slow", "hang", "down", "manual")
LOAN_DAYS = 28
# Command-line names of the steps: each event's (will-supply, loan-completed ...) and the
# words libraries use for some.
STEPS: dict[str, Event] = {
    **{samples.word(event): event for event in Event},
    "shipped": Event.LOANED,
    "returned": Event.SHIPPED_RETURN,
    "checked-in": Event.LOAN_COMPLETED,
    "completed": Event.LOAN_COMPLETED,
    "copy": Event.COPY_COMPLETED,
}
RELAY = "ncip-relay"


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


# A broker's steps: each relayed NCIP service by name (check-out-item ...), and `loan`, the
# six calls of a loan between two members (the order tests/test_e2e_relay.py checks).
RELAY_STEPS: dict[str, str] = {_kebab(service): service for service in relay_tables.SERVICES}
BROKER_LOAN = (
    ("LookupUser", 0),
    ("AcceptItem", 0),
    ("RequestItem", 1),
    ("CheckOutItem", 1),
    ("CheckInItem", 0),
    ("CheckInItem", 1),
)
# What a member answers under `unfill`: the lending calls get a Problem.
UNFILL_PROBLEMS = {
    "RequestItem": "Item Does Not Circulate",
    "CheckOutItem": "Item Does Not Circulate",
}


def add_arguments(peer: argparse.ArgumentParser) -> None:
    sub = peer.add_subparsers(dest="peer_action", required=True)
    run = sub.add_parser("run", help="run simulated libraries (the default: rshub peer SYM ...)")
    run.add_argument("symbols", nargs="+", metavar="SYMBOL", help="directory symbols")
    run.add_argument("--behaviour", choices=BEHAVIOURS, default="lend")
    run.add_argument("--delay", type=float, default=10.0, help="seconds a slow lender waits")
    run.add_argument("--hub", metavar="URL", help="the hub's HTTP base (default: this host)")
    run.add_argument(
        "--mailbox",
        action="store_true",
        help="a mail partner (the BL) serves the hub's mailbox for it itself, over plain IMAP "
        "at RSHUB_ARTEMAIL_IMAP_HOST:PORT (no IMAP server needed)",
    )
    send = sub.add_parser("send", help="send one step from a library: send SYM shipped --txn ID")
    send.add_argument("symbol", metavar="SYMBOL")
    steps = sorted(STEPS) + sorted({*RELAY_STEPS, "loan"})
    send.add_argument("step", nargs="?", choices=steps, metavar="STEP", help=", ".join(steps))
    send.add_argument(
        "--file",
        metavar="PATH",
        help="send this message as it is (a sample of examples/samples: its request id is "
        "replaced by --txn)",
    )
    send.add_argument("--txn", metavar="ID", help="the request id as this library knows it")
    send.add_argument(
        "--to",
        action="append",
        metavar="SYM",
        help="a request: the lender to ask (repeat for one request to each); none: the rota",
    )
    send.add_argument("--title")
    send.add_argument("--author")
    send.add_argument("--isbn")
    send.add_argument("--patron", metavar="ID")
    send.add_argument("--copy", action="store_true", help="a request: for a copy, not a loan")
    send.add_argument("--item", metavar="ID", help="the item's barcode")
    send.add_argument("--due", type=_day, metavar="YYYY-MM-DD")
    send.add_argument("--reason", type=int, metavar="CODE", help="unfilled: ISO 18626 reason")
    send.add_argument("--note")
    send.add_argument("--no", action="store_true", help="a cancel reply or renew answer: no")
    send.add_argument("--show", action="store_true", help="print the message, do not send it")
    send.add_argument("--hub", metavar="URL", help="the hub's HTTP base (default: this host)")


def normalise(argv: list[str]) -> list[str]:
    """`rshub peer SYM ...` is `rshub peer run SYM ...`."""
    if len(argv) > 1 and argv[0] == "peer" and argv[1] not in ("run", "send", "-h", "--help"):
        return ["peer", "run", *argv[1:]]
    return argv


def _day(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(hour=23, minute=59, tzinfo=UTC)


def main(settings: Settings, args: argparse.Namespace) -> int:
    from hub.runtime import app as assembly

    try:
        registry = assembly.connectors(settings)
        loaded = assembly.connector_settings(registry)
        from connectors.core import directory as directory_module

        directory = directory_module.load(settings.directory, registry.reports, registry.needs)
    except (DirectoryError, SettingsError) as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    url = args.hub or f"http://127.0.0.1:{settings.http_port}"
    host = urlsplit(url).hostname or "127.0.0.1"
    hub = HubAddress(
        url=url.rstrip("/"),
        iso10161=(host, loaded["iso10161"].port if "iso10161" in loaded else 1611),
        slnp=(host, loaded["slnp"].port if "slnp" in loaded else 9001),
        settings=loaded,
    )
    symbols = args.symbols if args.peer_action == "run" else [args.symbol]
    partners = []
    for symbol in symbols:
        partner = directory.partner(symbol)
        if partner is None:
            known = ", ".join(p.symbol for p in directory.partners)
            print(
                f"rshub: {symbol} is not in {settings.directory} (there: {known})", file=sys.stderr
            )
            return 2
        if partner.protocol not in (*SIMULATED, RELAY):
            print(
                f"rshub: {symbol} speaks {partner.protocol}; rshub peer plays "
                f"{', '.join((*SIMULATED, RELAY))}",
                file=sys.stderr,
            )
            return 2
        partners.append(partner)
    try:
        if args.peer_action == "send" and args.file:
            return asyncio.run(_send_file(partners[0], hub, args))
        if args.peer_action == "send" and args.step is None:
            raise ValueError("rshub peer send SYMBOL STEP, or SYMBOL --file PATH")
        if args.peer_action == "send" and partners[0].protocol == RELAY:
            return asyncio.run(_broker_send(directory, partners[0], hub, args))
        if args.peer_action == "send":
            return asyncio.run(_send(directory, partners[0], hub, args))
        return asyncio.run(_run(partners, hub, args.behaviour, args.delay, args.mailbox))
    except KeyboardInterrupt:
        return 0
    except ValueError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2


# -- what a library hears and says, printed --------------------------------------------------


def describe(message: Message) -> str:
    """A message in one line, for people."""
    parts = []
    bib = message.bibliographic or Bibliographic()
    if bib.title:
        parts.append(f'"{bib.title}"' + (f" by {bib.author}" if bib.author else ""))
    if bib.isbn:
        parts.append(f"ISBN {bib.isbn}")
    if message.service_type is ServiceType.COPY:
        parts.append("copy")
    for label, value in (
        ("patron", message.patron_id),
        ("item", message.item_id),
        ("due", message.due_date and message.due_date.date().isoformat()),
        ("wanted until", message.desired_due_date and message.desired_due_date.date().isoformat()),
        ("reason", message.reason and message.reason.name),
        ("answer", None if message.answer is None else ("yes" if message.answer else "no")),
        ("note", message.note),
    ):
        if value:
            parts.append(f"{label} {value}")
    return " · ".join(parts)


def _say(symbol: str, arrow: str, message: Message, verdict: str = "") -> None:
    clock = datetime.now().strftime("%H:%M:%S")
    line = f"{clock}  {symbol:<8} {arrow}  {message.event.value:<20} {message.request_id:<22}"
    tail = " ".join(p for p in (describe(message), verdict and f"[{verdict}]") if p)
    print(f"{line} {tail}".rstrip(), flush=True)


async def say(library: AnyLibrary, message: Message, to_agency: str = "RSHUB") -> bool:
    """Send `message` from `library`, print it with the hub's verdict; whether accepted."""
    try:
        status, answer = await library.send(message, to_agency)
    except (OSError, TimeoutError) as error:
        _say(library.symbol, "-> hub", message, f"NOT SENT: {error or type(error).__name__}")
        return False
    accepted = status == 200 and answer.ok
    verdict = "accepted" if accepted else f"REFUSED {status}: {'; '.join(answer.errors)}"
    _say(library.symbol, "-> hub", message, verdict)
    return accepted


# -- rshub peer run -----------------------------------------------------------------------------


class Peer:
    """One running library and what it has lent (request id -> item), answering by its
    behaviour."""

    def __init__(self, library: AnyLibrary, behaviour: str, delay_s: float) -> None:
        self.library, self.behaviour, self.delay_s = library, behaviour, delay_s
        self.lent: dict[str, str] = {}
        self.items = count(1)
        self.tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        while True:
            message = await self.library.next(timeout=None)  # type: ignore[arg-type]
            _say(self.library.symbol, "<- hub", message)
            if self.behaviour not in ("manual", "hang"):
                task = asyncio.create_task(self.answer(message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def answer(self, heard: Message) -> None:
        request_id, event = heard.request_id, heard.event
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=LOAN_DAYS)

        def reply(event: Event, **fields: Any) -> Message:
            return Message(event=event, request_id=request_id, **fields)

        if event is Event.REQUEST:
            if self.behaviour == "slow":
                await asyncio.sleep(self.delay_s)  # the behaviour itself: an answer this late
            if self.behaviour == "unfill":
                await say(self.library, reply(Event.UNFILLED, reason=Reason.from_code(10)))
                return
            item = f"{self.library.symbol}-{next(self.items)}"
            if self.library.protocol == "artemail":
                # The BL's reports name no item: the hub takes the order's reference for it.
                item = request_id
            self.lent[request_id] = item
            copy = self.behaviour == "copy" or heard.service_type is ServiceType.COPY
            if copy:
                await say(self.library, reply(Event.COPY_COMPLETED, item_id=item))
            else:
                await say(self.library, reply(Event.LOANED, item_id=item, due_date=due))
        elif event is Event.SHIPPED_RETURN:
            back = self.lent.get(request_id) or heard.item_id
            await say(self.library, reply(Event.LOAN_COMPLETED, item_id=back))
        elif event is Event.RENEW:
            until = heard.desired_due_date or due
            await say(self.library, reply(Event.RENEW_ANSWER, answer=True, due_date=until))
        elif event is Event.CANCEL:
            await say(self.library, reply(Event.CANCEL_REPLY, answer=True))
        elif event is Event.LOANED and await say(  # as the borrower: it came, and goes back
            self.library, reply(Event.RECEIVED, item_id=heard.item_id)
        ):
            await say(self.library, reply(Event.SHIPPED_RETURN, item_id=heard.item_id))


async def _run(
    partners: list[Partner], hub: HubAddress, behaviour: str, delay_s: float, mailbox: bool = False
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sign in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sign, stop.set)
    libraries = [p for p in partners if p.protocol != RELAY]
    peers = [
        Peer(library_for(p, hub, hang=behaviour == "hang", mailbox=mailbox), behaviour, delay_s)
        for p in libraries
    ]
    started: list[Peer] = []
    members: list[relay.MemberResponder] = []
    listening: list[asyncio.Task[None]] = []
    try:
        for partner in partners:
            if partner.protocol != RELAY:
                continue
            if _relay_role(partner) == "broker":
                print(
                    f"{partner.symbol} (ncip-relay broker): calls only; "
                    f"step it with rshub peer send {partner.symbol} SERVICE --to MEMBER",
                    flush=True,
                )
                continue
            member = member_peer(partner, behaviour, delay_s)
            if behaviour == "down":
                print(f"{partner.symbol} (ncip-relay): down, not listening at {member.endpoint}")
                continue
            try:
                await member.start()
            except OSError as error:
                print(
                    f"rshub: {partner.symbol} cannot listen at {member.endpoint}: {error}",
                    file=sys.stderr,
                )
                return 2
            members.append(member)
            print(
                f"{partner.symbol} (ncip-relay member, NCIP {member.version}, {member.agency}): "
                f"listening at {member.endpoint}, {behaviour}",
                flush=True,
            )
        for peer, partner in zip(peers, libraries, strict=True):
            library = peer.library
            if behaviour == "down":
                print(
                    f"{partner.symbol} ({partner.protocol}): down, "
                    f"not listening at {library.endpoint}"
                )
                continue
            try:
                await library.start()
            except OSError as error:
                print(
                    f"rshub: {partner.symbol} cannot listen at {library.endpoint}: {error}",
                    file=sys.stderr,
                )
                return 2
            started.append(peer)
            written = getattr(library, "version", "1.2")
            version = f" {written}" if written != "1.2" else ""
            print(
                f"{partner.symbol} ({partner.protocol}{version}, {partner.agency_id}): "
                f"listening at {library.endpoint}, {behaviour}",
                flush=True,
            )
            listening.append(asyncio.create_task(peer.listen()))
        print(f"ready: the hub at {hub.url}; Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        for task in listening:
            task.cancel()
        for peer in started:
            for task in list(peer.tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await peer.library.stop()
        for member in members:
            with contextlib.suppress(Exception):
                await member.stop()
    return 0


# -- the NCIP relay: members answer calls, brokers make them ---------------------------------


def _relay_role(partner: Partner) -> str:
    return str(partner.options.get("role", "member"))


def describe_call(body: bytes) -> tuple[str, str, str]:
    """An NCIP call or answer for people: its name, request id and a line of what it says."""
    try:
        parsed = ncip.parse(body)
    except Exception as error:  # what a partner sent is shown, not trusted
        return "?", "-", f"unreadable: {error}"
    parts = []
    if parsed.name.endswith("Response"):
        answer = ncip.read_response(body)
        parts.append("; ".join(f"Problem {p.type}" for p in answer.problems) or "ok")
        if answer.due_date:
            parts.append(f"due {answer.due_date.date().isoformat()}")
    else:
        parts.append(f"NCIP {'1.0' if parsed.ncip1 else '2.0'}")
        to = parsed.agency("InitiationHeader", "ToAgencyId")
        parts.append(f"to {to}" if to else "")
    for label, kinds, leaf in (
        ("user", ("UserId", "UniqueUserId"), "UserIdentifierValue"),
        ("item", ("ItemId", "UniqueItemId"), "ItemIdentifierValue"),
    ):
        value = parsed.ident(kinds, leaf)
        if value:
            parts.append(f"{label} {value}")
    request = parsed.ident(("RequestId", "UniqueRequestId"), "RequestIdentifierValue") or "-"
    return parsed.name, request, " · ".join(p for p in parts if p)


def _said(symbol: str, arrow: str, body: bytes, verdict: str = "") -> None:
    name, request, what = describe_call(body)
    clock = datetime.now().strftime("%H:%M:%S")
    tail = " ".join(p for p in (what, verdict and f"[{verdict}]") if p)
    print(f"{clock}  {symbol:<8} {arrow}  {name:<20} {request:<22} {tail}".rstrip(), flush=True)


def member_peer(partner: Partner, behaviour: str, delay_s: float) -> relay.MemberResponder:
    """A relay member's responder answering by `behaviour`, printing each call and answer."""
    member = relay.member_for(partner)
    member.heard = lambda call: _said(partner.symbol, "<- hub", call.body)
    member.answered = lambda _call, answer: _said(partner.symbol, "-> hub", answer)
    if behaviour == "unfill":
        member.problems.update(UNFILL_PROBLEMS)
    elif behaviour == "slow":
        member.delay_s = delay_s
    elif behaviour == "hang":
        member.hold = asyncio.Event()  # set when it stops
    return member


async def _broker_send(directory: Directory, partner: Partner, hub: HubAddress, a: Any) -> int:
    """One call from a broker to a member (`--to`), or the six of a loan (`loan --to
    BORROWING --to LENDING`), each printed with the answer the hub relayed."""
    if _relay_role(partner) != "broker":
        raise ValueError(f"{partner.symbol} is a relay member: the hub calls it, it calls no one")
    if a.step != "loan" and a.step not in RELAY_STEPS:
        raise ValueError(f"a broker sends NCIP calls: {', '.join(sorted(RELAY_STEPS))} or loan")
    members = []
    for symbol in a.to or []:
        member = directory.partner(symbol)
        if member is None or member.protocol != RELAY or _relay_role(member) != "member":
            raise ValueError(f"--to {symbol}: not a relay member in the directory")
        members.append(member)
    wanted = 2 if a.step == "loan" else 1
    if len(members) != wanted:
        raise ValueError(
            "loan needs --to BORROWING-MEMBER --to LENDING-MEMBER"
            if a.step == "loan"
            else f"{a.step} needs --to MEMBER (one)"
        )
    broker = relay.broker_for(partner, hub.url)
    calls = BROKER_LOAN if a.step == "loan" else ((RELAY_STEPS[a.step], 0),)
    request = a.txn or f"{partner.symbol}-{datetime.now(UTC):%H%M%S%f}"
    ok = True
    for service, which in calls:
        body = broker.call(
            service,
            relay.member_agency(members[which]),
            user=a.patron or "P100",
            item=a.item or f"{request}-ITEM",
            request=request,
            title=a.title or "Idle hours",
        )
        if a.show:
            sys.stdout.write(body.decode() + "\n")
            continue
        try:
            status, answer = await broker.post(body)
        except (OSError, TimeoutError) as error:
            _said(partner.symbol, "-> hub", body, f"NOT SENT: {error or type(error).__name__}")
            return 1
        if status != 200:
            _said(partner.symbol, "-> hub", body, f"REFUSED {status}")
            return 1
        _said(partner.symbol, "-> hub", body, "sent")
        _said(partner.symbol, "<- hub", answer)
        ok = ncip.read_response(answer).ok and ok
    return 0 if ok else 1


# -- rshub peer send ----------------------------------------------------------------------------


def message_of(args: argparse.Namespace, step: Event, symbol: str) -> Message:
    """The step's sample message changed by the options (a new request gets a fresh id)."""
    bib = None
    if step is Event.REQUEST:
        given = {"title": args.title, "author": args.author, "isbn": args.isbn}
        base = samples.BOOK.model_dump(exclude_none=True)
        bib = Bibliographic(**{**base, **{k: v for k, v in given.items() if v}})
    if args.txn is None and step is not Event.REQUEST:
        raise ValueError(f"{samples.word(step)} needs --txn (the request id this library knows)")
    request_id = args.txn or f"{symbol}-{datetime.now(UTC):%H%M%S%f}"
    changes: dict[str, Any] = {
        "bibliographic": bib,
        "patron_id": args.patron,
        "item_id": args.item,
        "due_date": args.due,
        "note": args.note,
        "reason": Reason.from_code(args.reason) if args.reason is not None else None,
    }
    if args.copy:
        changes["service_type"] = ServiceType.COPY
        changes["request_format"] = RequestFormat.NON_RETURNABLE
    message = samples.example(step, request_id, **changes)
    if args.no:
        message = message.model_copy(update={"answer": False})
    # The sample's fixed time is for files; a step sent now is dated now.
    return message.model_copy(update={"timestamp": datetime.now(UTC)})


def _sample_body(path: str, protocol: str, txn: str | None) -> bytes:
    """A message file as the library sends it: ISO 10161's hex as BER, the samples' request
    ids (the borrower's and the lender's, connectors.samples) replaced by `txn`."""
    text = Path(path).read_text(encoding="utf-8")
    if txn:
        for sample_id in (samples.LENDER_REQUEST, samples.BORROWER_REQUEST):
            text = text.replace(sample_id, txn)
    if protocol == "iso10161":
        return bytes.fromhex("".join(text.split()))
    return text.encode("utf-8")


async def _send_file(partner: Partner, hub: HubAddress, a: Any) -> int:
    """`rshub peer send SYM --file PATH`: the file's message from the library, as it is."""
    try:
        body = _sample_body(a.file, partner.protocol, a.txn)
    except (OSError, ValueError) as error:
        raise ValueError(f"--file {a.file}: {error}") from None
    if partner.protocol == RELAY:
        status, answer = await relay.broker_for(partner, hub.url).post(body)
        _said(partner.symbol, "-> hub", body, "sent" if status == 200 else f"REFUSED {status}")
        if status == 200:
            _said(partner.symbol, "<- hub", answer)
        return 0 if status == 200 and ncip.read_response(answer).ok else 1
    library = library_for(partner, hub)
    try:
        status, verdict = await library.post(body)
    except (OSError, TimeoutError) as error:
        print(f"{partner.symbol} -> hub  {a.file} [NOT SENT: {error or type(error).__name__}]")
        return 1
    accepted = status == 200 and verdict.ok
    shown = "accepted" if accepted else f"REFUSED {status}: {'; '.join(verdict.errors)}"
    print(f"{partner.symbol} -> hub  {a.file} [{shown}]", flush=True)
    return 0 if accepted else 1


async def _send(directory: Directory, partner: Partner, hub: HubAddress, a: Any) -> int:
    if a.step not in STEPS:
        raise ValueError(f"{a.step} is a relay broker's call; {partner.symbol} is a library")
    step = STEPS[a.step]
    library = library_for(partner, hub)
    lenders: list[str | None] = list(a.to or [None])
    ok = True
    for lender in lenders:
        to_agency = "RSHUB"
        if lender is not None:
            named = directory.partner(lender)
            if named is None:
                raise ValueError(f"--to {lender}: not in the directory")
            to_agency = named.agency_id
        message = message_of(a, step, partner.symbol)
        if a.show:
            body = library.encode(message, to_agency)
            sys.stdout.write(body.hex() + "\n" if partner.protocol == "iso10161" else body.decode())
            continue
        ok = await say(library, message, to_agency) and ok
    return 0 if ok else 1
