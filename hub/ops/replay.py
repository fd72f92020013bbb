"""Settling a dead letter, for `rshub deadletters replay|ack` and the console alike:
replaying one (its raw bytes, as its partner sent them, through the gateway again with the
directory as it is now) and acknowledging one (marked on ill.deadletter, never deleted)."""

from __future__ import annotations

from typing import Any, Literal

from connectors.core.contract import Registry
from connectors.core.directory import Directory, DirectoryError
from hub.runtime.settings import Settings, SettingsError


async def mark(
    bootstrap: str,
    letter: dict[str, Any],
    what: Literal["acknowledged", "replayed"],
    by: str,
    note: str = "",
) -> None:
    """Mark a dead letter on ill.deadletter (the index shows the mark; the request it is
    about no longer needs attention for it)."""
    from connectors.core.records import DeadLetterMark
    from connectors.core.topics import Topic
    from hub.kafka.producer import KafkaIO

    record = DeadLetterMark(ref=letter["ref"], mark=what, by=by, note=note[:500])
    key = letter.get("transaction_id") or letter.get("partner") or "-"
    io = KafkaIO(bootstrap)
    await io.start()
    try:
        await io.send_record(Topic.DEADLETTER, key, record)
    finally:
        await io.stop()


async def acknowledge(
    bootstrap: str, ref: str, letter: dict[str, Any] | None, by: str, note: str
) -> tuple[int, str]:
    """`rshub deadletters ack REF` (and the console's Acknowledge): (exit code, what to say)."""
    if letter is None:
        return 1, f"no dead letter {ref} (see rshub deadletters)"
    if letter.get("acknowledged"):
        return 0, f"{ref} was already acknowledged by {letter['acknowledged']}"
    await mark(bootstrap, letter, "acknowledged", by, note)
    return 0, f"acknowledged {ref}" + (f": {note}" if note else "")


async def replay_letter(
    settings: Settings,
    bootstrap: str,
    ref: str,
    letter: dict[str, Any] | None,
    raw: dict[str, Any] | None,
    trust_sender: bool,
    by: str = "cli",
) -> tuple[int, str]:
    """`rshub deadletters replay` (and the console's Replay): the checks, then the replay;
    (exit code, what to say). A letter replayed is marked so, whatever came of it (refused
    again, the refusal is a dead letter of its own)."""
    from connectors.core import directory as directory_module
    from hub.runtime import app as assembly

    if letter is None:
        return 1, f"no dead letter {ref} (see rshub deadletters)"
    if raw is None:
        return 2, f"{ref} has no raw message to replay ({letter['stage']})"
    if letter["stage"] == "authenticate" and not trust_sender:
        return 2, (
            f"{ref} was refused before its sender was authenticated: nothing says "
            f"it came from {letter['partner']}; replay with --trust-sender if you know it did"
        )
    try:
        registry = assembly.connectors(settings)
        directory = directory_module.load(settings.directory, registry.names)
    except (DirectoryError, SettingsError) as error:
        return 2, str(error)
    partner = directory.partner(letter["partner"] or "")
    if partner is None:
        return 2, f"{letter['partner']} is still not a partner in {settings.directory}"
    connector = registry.get(partner.protocol)
    if connector is None or connector.name != (raw["protocol"] or connector.name):
        return 2, (
            f"{partner.symbol} speaks {partner.protocol} in the directory; the message "
            f"is {raw['protocol']}"
        )
    body = str(raw["body"]).encode("latin-1")
    if raw.get("size") is not None:
        return 2, (
            f"only the first {len(body)} of its {raw['size']} bytes were kept (it was refused "
            f"before authentication or as too large); ask {partner.symbol} to send it again"
        )
    code, said = await _replay(
        bootstrap, settings, directory, registry, connector, partner, raw, body
    )
    if code in (0, 2):
        await mark(bootstrap, letter, "replayed", by, said.split("\n")[0][:200])
    return code, said


async def _replay(
    bootstrap: str,
    settings: Settings,
    directory: Directory,
    registry: Registry,
    connector: Any,
    partner: Any,
    raw: dict[str, Any],
    body: bytes,
) -> tuple[int, str]:
    from connectors.core.contract import Refusal
    from connectors.core.records import VerdictOutcome
    from hub.kafka.producer import KafkaIO
    from hub.runtime import app as assembly
    from hub.runtime.gateway import Gateway

    io = KafkaIO(bootstrap)
    await io.start()
    gateway = Gateway(
        settings,
        directory,
        io,
        registry,
        settings.limits(),
        connector_settings=assembly.connector_settings(registry),
    )
    try:
        answer, verdict = await gateway.judged(
            connector.codec, partner.symbol, body, raw["content_type"]
        )
    except Refusal as refusal:
        await gateway.refuse(refusal, partner.symbol, connector.name)
        return 2, f"refused again ({refusal.stage}): {refusal.reason}"
    finally:
        await io.stop()
    reply = answer.body.decode("utf-8", "replace")
    if verdict is not None and verdict.outcome is VerdictOutcome.REFUSED:
        # The state machine wrote the new dead letter; the partner's answer is a fault.
        return 2, f"refused again (apply): {verdict.error}"
    if verdict is None:
        return 1, (
            f"replayed {raw['ref']} as from {partner.symbol}, but the hub gave no verdict in "
            f"time (is it running?); its answer:\n{reply}"
        )
    return 0, f"replayed {raw['ref']} as from {partner.symbol}; its answer:\n{reply}"
