"""The read side over the operators' index and `ill.events`: `rshub find`, `show`,
`deadletters` (list, replay, ack) and `tail`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.core.topics import Topic
from hub.cli import running
from hub.ops import replay as replaying
from hub.runtime.settings import Settings


async def _tail(bootstrap: str, from_beginning: bool) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka import partition_ends

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        events = [
            TopicPartition(Topic.EVENTS, p)
            for p in sorted(consumer.partitions_for_topic(Topic.EVENTS) or ())
        ]
        consumer.assign(events)
        if from_beginning:
            await consumer.seek_to_beginning(*events)
        else:  # not seek_to_end: the embedded broker's "latest" is short of the end
            for tp, end in (await partition_ends.end_offsets(consumer, events)).items():
                consumer.seek(tp, end)
        async for record in consumer:
            if record.value is None:  # a restored broker's filler (hub.kafka.snapshots)
                continue
            change = json.loads(record.value)
            print(
                f"{change['at']}  {change['transaction_id']}  {change['kind']:<10} "
                f"{change['event']:<24} {change['from_state']} -> {change['to_state']}  "
                f"{change.get('sender') or ''} {change.get('detail') or ''}".rstrip(),
                flush=True,
            )
    finally:
        await consumer.stop()


def tail(settings: Settings, from_beginning: bool) -> int:
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(bootstrap, from_beginning))
    return 0


def duration(text: str) -> timedelta:
    """3d, 12h, 30m (argparse type)."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r}: a number followed by d, h or m") from None


# Where a transaction's row is stored, not what it says: left out of JSON output.
STORAGE_COLUMNS = ("snapshot_partition", "snapshot_offset")
# The stages a message or record is refused at (connectors.core.records.DeadLetter.stage);
# `--stage` accepts these and any other the index holds.
STAGES = ("parse", "authenticate", "address", "apply", "deliver", "intake", "relay")


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A transaction's index row as JSON readers want it: the lenders asked as a list (the
    index keeps ",A,B," to match one with LIKE), its deadlines as an object, without the
    storage bookkeeping."""
    shown = {k: v for k, v in row.items() if k not in STORAGE_COLUMNS}
    if "lenders" in shown:
        shown["lenders"] = [s for s in str(shown["lenders"] or "").split(",") if s]
    return _parsed(shown, "deadlines")


def _parsed(row: dict[str, Any], column: str) -> dict[str, Any]:
    """`column`, kept as JSON text in the index, as the JSON it holds."""
    if isinstance(row.get(column), str):
        row[column] = json.loads(row[column] or "null")
    return row


def _wrong_states(given: list[str]) -> str | None:
    """What is wrong with `--state` values (None: each is a state, case aside)."""
    from hub.domain.lifecycle import State

    states = [state.value for state in State]
    for word in given:
        if word.lower() not in {state.lower() for state in states}:
            return (
                f"--state {word!r} is not a state{running.did_you_mean(word, states)} "
                f"(states: {', '.join(states)})"
            )
    return None


def find(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import index as index_module

    try:
        stuck = index_module.stuck_after()
    except ValueError as error:
        print(f"rshub: {error}", file=sys.stderr)
        return 2
    wrong = _wrong_states(args.state or [])
    if wrong:
        print(f"rshub: {wrong}", file=sys.stderr)
        return 2
    criteria = index_module.Criteria(
        borrower=args.borrower,
        request_id=args.request_id,
        patron=args.patron,
        lender=args.lender,
        title=" ".join(args.title or []) or None,
        states=args.state or [],
        older_than=args.older_than,
        open_only=args.open,
        needs_attention=args.needs_attention,
        limit=args.limit,
    )
    now = datetime.now(UTC)
    with running.open_index(settings, running.quiet_bootstrap(settings)) as index:
        found = index.find(criteria, now, stuck)
    if not found:
        for symbol in (args.borrower, args.lender):
            unknown = symbol and running.unknown_partner(settings, symbol)
            if unknown:
                print(f"rshub: {unknown}", file=sys.stderr)
    if args.json:
        print(json.dumps([public_row(row) for row in found], indent=2))
        return 0 if found else 1
    if not found:
        print("no transaction matches", file=sys.stderr)
        return 1
    width = max(len("TRANSACTION"), *(len(row["id"]) for row in found))
    print(
        f"{'TRANSACTION':<{width}}  {'STATE':<13} {'BORROWER':<10} {'REQUEST':<16}    "
        f"{'LENDER':<10} {'AGE':>5}  TITLE"
    )
    for row in found:
        title = (row.get("title") or "")[:40]
        print(
            f"{row['id']:<{width}}  {row.get('state') or '?':<13} {row.get('borrower') or '?':<10} "
            f"{row.get('borrower_request_id') or '':<16} -> {row.get('lender') or '-':<10} "
            f"{running.age(row.get('created'), now):>5}  {title}"
        )
        if row.get("attention"):
            print(f"    needs attention: {row['attention']}")
    return 0


def _raw_lines(raw: dict[str, Any]) -> list[str]:
    """The raw bytes of a message: as text when they are text, else as hex."""
    data = str(raw.get("body") or "").encode("latin-1")
    head = f"raw ({raw.get('content_type') or '?'}, {len(data)} bytes, {raw.get('ref')}):"
    try:
        text = data.decode("utf-8")
        printable = all(c.isprintable() or c in "\r\n\t" for c in text)
    except UnicodeDecodeError:
        printable = False
    if printable:
        body = text.splitlines() or [""]
    else:
        body = [data[i : i + 32].hex(" ") for i in range(0, len(data), 32)]
    return [head, *("  " + line for line in body)]


def show(settings: Settings, transaction_id: str, as_json: bool, raw: bool) -> int:
    with running.open_index(settings, running.quiet_bootstrap(settings)) as index:
        row = index.transaction(transaction_id)
        story = index.story(transaction_id) if row else []
    if row is None:
        print(f"rshub: no transaction {transaction_id} in the index", file=sys.stderr)
        return 1
    if as_json:
        print(
            json.dumps({"transaction": public_row(row), "timeline": story}, indent=2, default=str)
        )
        return 0
    print(
        f"{row['id']}  {row.get('state') or '?'}  borrower {row.get('borrower') or '?'} "
        f"request {row.get('borrower_request_id') or '?'}  patron {row.get('patron') or '-'}  "
        f"lenders asked {row.get('lenders', '').strip(',') or '-'}"
    )
    if row.get("title"):
        print(f"  {row['title']}" + (f" / {row['author']}" if row.get("author") else ""))
    if row.get("needs_attention"):
        print(f"  needs attention: {row['needs_attention']}")
    shown: set[str] = set()
    for entry in story:
        print(f"{entry['at']}  {entry['kind']:<10} {entry['summary']}")
        if raw and entry.get("raw") and entry["raw"]["ref"] not in shown:
            shown.add(entry["raw"]["ref"])  # a refused message's bytes once, not twice
            print("\n".join("      " + line for line in _raw_lines(entry["raw"])))
    return 0


def deadletters(settings: Settings, args: argparse.Namespace) -> int:
    """`rshub deadletters [--partner SYM] [--stage S]`: refused messages and records, newest
    first; `rshub deadletters replay REF`: the refused message again, as received."""
    if args.action == "replay":
        if not args.ref:
            print("rshub: usage: rshub deadletters replay REF [--trust-sender]", file=sys.stderr)
            return 2
        return replay(settings, args.ref, args.trust_sender)
    if args.action == "ack":
        if not args.ref:
            print("rshub: usage: rshub deadletters ack REF [--note TEXT]", file=sys.stderr)
            return 2
        return acknowledge(settings, args.ref, args.note or "")
    with running.open_index(settings, running.quiet_bootstrap(settings)) as index:
        held = index.db.execute("SELECT DISTINCT stage FROM deadletters WHERE stage IS NOT NULL")
        stages = sorted({*STAGES, *(row[0] for row in held)})
        if args.stage and args.stage not in stages:
            print(
                f"rshub: --stage {args.stage!r} is not a stage"
                f"{running.did_you_mean(args.stage, stages)} (stages: {', '.join(stages)})",
                file=sys.stderr,
            )
            return 2
        letters = index.dead_letters(args.partner, args.stage, args.limit)
        for letter in letters:
            letter["replayable"] = bool(letter["audit_ref"] and index.raw(letter["audit_ref"]))
    if args.json:
        print(json.dumps([_parsed(letter, "detail") for letter in letters], indent=2))
        return 0
    if not letters:
        unknown = args.partner and running.unknown_partner(settings, args.partner)
        if unknown:
            print(f"rshub: {unknown}", file=sys.stderr)
        print("no dead letters")
        return 0
    for letter in letters:
        where = letter["transaction_id"] or "-"
        print(
            f"{letter['ref']:<22} {letter['at'][:19]}  {letter['stage'] or '?':<12} "
            f"{letter['partner'] or '-':<10} {letter['protocol'] or '-':<10} {where}"
        )
        settled = letter["replayed"] or letter["acknowledged"]
        hint = "  (replay: rshub deadletters replay REF)" if letter["replayable"] else ""
        print(f"    {letter['error']}{'' if settled else hint}")
        if letter["acknowledged"]:
            print(f"    acknowledged by {letter['acknowledged']}")
        if letter["replayed"]:
            print(f"    replayed by {letter['replayed']}")
    return 0


def acknowledge(settings: Settings, ref: str, note: str) -> int:
    """`rshub deadletters ack REF`: mark a dead letter settled (kept, marked)."""
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    with running.open_index(settings, bootstrap) as index:
        letter = index.dead_letter(ref)
    code, text = asyncio.run(replaying.acknowledge(bootstrap, ref, letter, running.who(), note))
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def replay(settings: Settings, ref: str, trust_sender: bool) -> int:
    """Feeds a dead letter's raw bytes, as its partner sent them, through the gateway again
    with the directory as it is now (after the operator fixed it)."""
    bootstrap = running.running_bootstrap(settings)
    if not bootstrap:
        return 2
    with running.open_index(settings, bootstrap) as index:
        letter = index.dead_letter(ref)
        raw = index.raw(letter["audit_ref"]) if letter and letter["audit_ref"] else None
    code, text = asyncio.run(
        replaying.replay_letter(settings, bootstrap, ref, letter, raw, trust_sender, running.who())
    )
    print(text if code == 0 else f"rshub: {text}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The options of `tail`, `find`, `show` and `deadletters`."""
    p_tail = sub.add_parser("tail", help="follow ill.events")
    p_tail.add_argument("--from-beginning", action="store_true")
    p_find = sub.add_parser(
        "find", help="find transactions in the index (all criteria given must match)"
    )
    p_find.add_argument("--borrower", metavar="SYM")
    p_find.add_argument("--request-id", metavar="ID", help="the borrower's request id")
    p_find.add_argument("--patron", metavar="ID")
    p_find.add_argument("--lender", metavar="SYM", help="a lender that was asked")
    p_find.add_argument("--title", nargs="+", metavar="WORD", help="words of title or author")
    p_find.add_argument("--state", action="append", metavar="STATE", help="repeatable")
    p_find.add_argument(
        "--older-than", type=duration, metavar="AGE", help="created before: 3d, 12h, 30m"
    )
    p_find.add_argument("--open", action="store_true", help="open transactions only")
    p_find.add_argument(
        "--needs-attention",
        action="store_true",
        help="parked or failing deliveries, dead letters, or stuck (RSHUB_STUCK_AFTER_HOURS)",
    )
    p_find.add_argument("--limit", type=int, default=50)
    p_find.add_argument("--json", action="store_true")
    p_show = sub.add_parser("show", help="the whole story of one transaction")
    p_show.add_argument("transaction", metavar="TXN")
    p_show.add_argument("--json", action="store_true")
    p_show.add_argument("--no-raw", action="store_true", help="leave out the raw messages")
    p_dead = sub.add_parser(
        "deadletters", help="refused messages with reasons; replay one (deadletters replay REF)"
    )
    p_dead.add_argument("action", nargs="?", choices=("list", "replay", "ack"), default="list")
    p_dead.add_argument("--note", metavar="TEXT", help="ack: why it is settled")
    p_dead.add_argument("ref", nargs="?", metavar="REF", help="a dead letter (from the list)")
    p_dead.add_argument("--partner", metavar="SYM")
    p_dead.add_argument("--stage", metavar="STAGE", help="parse, authenticate, address, apply")
    p_dead.add_argument("--limit", type=int, default=50)
    p_dead.add_argument("--json", action="store_true")
    p_dead.add_argument(
        "--trust-sender",
        action="store_true",
        help="replay a message refused before authentication (you know who sent it)",
    )
